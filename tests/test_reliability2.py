"""Issue 29, round two: non-finite steps, signals, other runs' checkpoints, prompt control tokens, the
judge client, refusal state, files and one-line errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optax
import pytest
from flax import nnx

REPO = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    env = dict(os.environ, JAX_PLATFORMS="cpu", WANDB_MODE="offline", WANDB_SILENT="true")
    env.pop("XLA_FLAGS", None)
    return env


# ----------------------------------------------------------------------------- 3. other runs' checkpoints


def test_restore_leaves_another_runs_save_in_progress_alone(tmp_path):
    from toolrl.policy.checkpoint import Checkpointer

    model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
    writer = Checkpointer(tmp_path / "checkpoints", save_every=1, keep=5)
    writer.save(1, nnx.state(model, nnx.Param), nnx.state(optimizer), {"step": 1})
    # The training run is writing step 2 right now.
    in_progress = tmp_path / "checkpoints" / "2.orbax-checkpoint-tmp"
    (in_progress / "params").mkdir(parents=True)
    (in_progress / "params" / "part").write_text("being written")
    reader = Checkpointer(tmp_path / "checkpoints", 1, 1)  # what Policy.restore_params opens
    _, _, meta, step = reader.restore(None, nnx.state(model, nnx.Param))
    reader.close()
    assert (step, meta["step"]) == (1, 1)
    assert (in_progress / "params" / "part").read_text() == "being written"
    # Reading a directory that does not exist creates nothing.
    with pytest.raises(FileNotFoundError):
        Checkpointer(tmp_path / "absent", 1, 1).restore(None, nnx.state(model, nnx.Param))
    assert not (tmp_path / "absent").exists()
    writer.close()

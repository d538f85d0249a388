"""What a process other than process 0 runs instead of the run's writers, and the signal all processes agree on.

A multi-process run (`jax.distributed`, one process per host or GPU) trains as one: every update and every
save is a collective all processes join. Metrics, W&B and evaluation reports are written once, by process
0 (docs/design.md, "Runtime architecture"); the other processes get the do-nothing writers here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import jax
import numpy as np
import optax
from jax.experimental import multihost_utils

# One compiled program. Eager, each leaf's reduction is a program of its own, and on CPU several
# processes' gloo collectives of such back-to-back programs deadlock (two processes, 4 devices each).
global_norm = jax.jit(optax.global_norm)


class NoMetrics:
    """The metrics log of a process other than 0: records are written by process 0 only."""

    def __init__(self, path: Path):
        self.path = path

    def truncate_after(self, step: int) -> int:
        del step
        return 0

    def write(self, record: Mapping[str, Any]) -> None:
        del record

    def close(self) -> None:
        pass


class NoWandb:
    """The W&B run of a process other than 0 (not even $WANDB_MODE starts one there)."""

    location = "disabled"

    def log(self, *args: Any, **kwargs: Any) -> None:
        del args, kwargs

    def finish(self) -> None:
        pass


def agreed_signal(signum: int | None) -> int | None:
    """The stop signal of the job: a signal received by any process stops every process after the same
    step (each update and each save is a collective that all processes must join). One process: its own."""
    if jax.process_count() == 1:
        return signum
    received = multihost_utils.process_allgather(np.int32(signum or 0))
    return int(np.max(received)) or None

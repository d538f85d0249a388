"""Checkpoints: params / opt / meta items, model-only restore, and a damaged latest checkpoint falls
back to the previous one (with a warning naming it) instead of killing the resume."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import jax
import numpy as np
import optax
import pytest
from flax import nnx

from toolrl.policy.checkpoint import Checkpointer, load_params, save_params


def make(seed: int = 0):
    model = nnx.Linear(2, 3, rngs=nnx.Rngs(seed))
    optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
    return model, optimizer


def params_of(model):
    return nnx.state(model, nnx.Param)


def kernel(state) -> np.ndarray:
    return np.asarray(jax.device_get(state["kernel"].value if hasattr(state["kernel"], "value") else state["kernel"]))


@pytest.fixture
def run(tmp_path):
    """A checkpointer with steps 1, 2, 3; the model's kernel is filled with the step number."""
    model, optimizer = make()
    ckpt = Checkpointer(tmp_path / "checkpoints", save_every=1, keep=5)
    for step in (1, 2, 3):
        model.kernel.value = model.kernel.value * 0 + step
        assert ckpt.save(step, params_of(model), nnx.state(optimizer), {"step": step, "phase": "grpo"})
    yield ckpt, tmp_path / "checkpoints"
    ckpt.close()


def test_items_and_model_only_restore(run):
    ckpt, _ = run
    model, optimizer = make(seed=1)
    params, opt, meta, step = ckpt.restore(None, params_of(model), nnx.state(optimizer))
    assert step == 3 and meta == {"step": 3, "phase": "grpo"} and opt is not None
    assert np.all(kernel(params) == 3)
    params, opt, meta, step = ckpt.restore(2, params_of(model))  # another run's model, no optimizer
    assert step == 2 and opt is None and np.all(kernel(params) == 2)


def _corrupt(step_dir: Path, how: str) -> None:
    if how == "delete_param_data":
        for path in (step_dir / "params").rglob("*"):
            if path.is_file() and path.parent.name == "d":
                path.unlink()
    elif how == "truncate_param_data":
        for path in (step_dir / "params").rglob("*"):
            if path.is_file() and path.parent.name == "d":
                path.write_bytes(path.read_bytes()[:7])
    elif how == "garbage_meta":
        (step_dir / "meta" / "metadata").write_text('{"step": 3, "pha')
    elif how == "delete_param_metadata":
        (step_dir / "params" / "_METADATA").unlink()
    elif how == "delete_item":
        import shutil

        shutil.rmtree(step_dir / "params")


@pytest.mark.parametrize("how", ["delete_param_data", "truncate_param_data", "garbage_meta", "delete_param_metadata",
                                 "delete_item"])
def test_damaged_latest_falls_back_to_previous(run, how):
    ckpt, directory = run
    _corrupt(directory / "3", how)
    model, optimizer = make(seed=1)
    with pytest.warns(RuntimeWarning, match=rf"{directory / '3'}"):
        params, opt, meta, step = ckpt.restore(None, params_of(model), nnx.state(optimizer))
    assert step == 2 and meta["step"] == 2 and np.all(kernel(params) == 2)
    # The resumed run reaches step 3 again: the save must happen (the damaged one is moved aside, kept).
    model.kernel.value = model.kernel.value * 0 + 33
    with pytest.warns(RuntimeWarning, match="moved the unreadable checkpoint .*3 aside"):
        assert ckpt.save(3, params_of(model), nnx.state(optimizer), {"step": 3, "phase": "grpo"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        params, _, meta, step = ckpt.restore(None, params_of(model))
    assert step == 3 and np.all(kernel(params) == 33)
    assert [p.name for p in directory.iterdir() if p.name.startswith("3.unreadable")]


def test_damaged_optimizer_item_with_a_target_built_from_meta(run):
    """The trainer builds its optimizer from the checkpoint's phase: a step whose `opt` item is
    damaged must be skipped too, not only one whose params are."""
    ckpt, directory = run
    for path in (directory / "3" / "opt").rglob("*"):
        if path.is_file() and path.parent.name == "d":
            path.unlink()
    model, optimizer = make(seed=1)
    phases = []

    def opt_target(meta):
        phases.append((meta["step"], meta["phase"]))
        return nnx.state(optimizer)

    with pytest.warns(RuntimeWarning, match=rf"{directory / '3'}"):
        params, opt, meta, step = ckpt.restore(None, params_of(model), opt_target)
    assert step == 2 and opt is not None and phases == [(3, "grpo"), (2, "grpo")]


def test_nothing_readable_names_the_directory(run):
    ckpt, directory = run
    for step in (1, 2, 3):
        _corrupt(directory / str(step), "delete_item")
    model, _ = make()
    with pytest.warns(RuntimeWarning):
        with pytest.raises(FileNotFoundError, match=rf"no readable checkpoint in {directory}"):
            ckpt.restore(None, params_of(model))
    empty = Checkpointer(directory.parent / "empty", 1, 1)
    with pytest.raises(FileNotFoundError, match=rf"no checkpoint in {directory.parent / 'empty'}"):
        empty.restore(None, params_of(model))


def test_explicit_step_that_is_damaged_raises_naming_it(run):
    ckpt, directory = run
    _corrupt(directory / "2", "delete_item")
    model, _ = make()
    with pytest.raises(FileNotFoundError, match=rf"{directory / '2'}"):
        ckpt.restore(2, params_of(model))


def test_reference_params_round_trip(tmp_path):
    model, _ = make()
    save_params(tmp_path / "reference", params_of(model))
    other, _ = make(seed=5)
    restored = load_params(tmp_path / "reference", params_of(other))
    assert np.array_equal(kernel(restored), kernel(params_of(model)))

"""Orbax checkpoints of a training run: parameters, optimizer state and the loop's position.

A checkpoint at step s holds the state *after* s updates: the model parameters, the optimizer state
(moments and its step count), and a JSON record with the step, the phase ("sft" / "grpo"), the data
position (prompts consumed so far) and the run's RNG seed. Everything random in the loop is derived
from (seed, step), so restoring these reproduces the rest of the run exactly.

Orbax writes each step to a temporary directory and renames it when complete, so a run killed
mid-save leaves the previous checkpoint intact; `latest_step` only sees finished ones.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from flax import nnx


class Checkpointer:
    """Saves every `save_every` steps (and on demand), keeps the `keep` most recent.

    Args:
      directory: where step directories go (created).
      save_every: interval in steps for `maybe_save`.
      keep: how many checkpoints to keep.
    """

    def __init__(self, directory: str | os.PathLike, save_every: int, keep: int):
        self.directory = Path(directory).absolute()
        self.save_every = save_every
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep,
            create=True,
            # Synchronous saves: a checkpoint is on disk when `save` returns, so the metrics log
            # never runs ahead of what a resumed run can restore by more than the save interval.
            enable_async_checkpointing=False,
            cleanup_tmp_directories=True,
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "meta"))

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state: nnx.State, meta: dict[str, Any], force: bool = True) -> bool:
        """Writes (state, meta) at `step`. state: any nnx.State / pytree of arrays."""
        if self.manager.latest_step() == step:
            return False
        saved = self.manager.save(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
            force=force,
        )
        self.manager.wait_until_finished()
        return bool(saved)

    def maybe_save(self, step: int, state: nnx.State, meta: dict[str, Any]) -> bool:
        """Saves when `step` is a multiple of `save_every`."""
        if step % self.save_every:
            return False
        return self.save(step, state, meta)

    def restore(self, step: int, target: nnx.State) -> tuple[nnx.State, dict[str, Any]]:
        """Restores `step` into the structure, shapes, dtypes and shardings of `target`."""
        abstract = jax.tree.map(_abstract, target)
        restored = self.manager.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore())
        )
        return restored["state"], dict(restored["meta"])

    def restore_meta(self, step: int) -> dict[str, Any]:
        return dict(self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"])

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def _abstract(x: Any) -> Any:
    if isinstance(x, jax.Array):
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
    return x


def save_params(directory: str | os.PathLike, state: nnx.State) -> None:
    """One-off save of a parameter tree (the frozen GRPO reference) to `directory`."""
    path = Path(directory).absolute()
    with ocp.StandardCheckpointer() as ckpt:
        ckpt.save(path, state, force=True)
        ckpt.wait_until_finished()


def load_params(directory: str | os.PathLike, target: nnx.State) -> nnx.State:
    """Loads a tree saved by `save_params` into the layout of `target`."""
    with ocp.StandardCheckpointer() as ckpt:
        return ckpt.restore(Path(directory).absolute(), jax.tree.map(_abstract, target))

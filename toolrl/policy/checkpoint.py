"""Orbax checkpoints of a training run: parameters, optimizer state and the loop's position.

The one checkpoint module: the trainer saves and resumes through `Checkpointer`, and
`toolrl.policy.runtime.Policy.restore_params` loads a run's parameters (item `params` only) through it.

A checkpoint at step s holds the state *after* s updates: the model parameters, the optimizer state
(moments and its step count), and a JSON record with the step, the phase ("sft" / "grpo"), the data
position (prompts consumed so far) and the run's RNG seed. Everything random in the loop is derived
from (seed, step), so restoring these reproduces the rest of the run exactly.

Orbax writes each step to a temporary directory and renames it when complete, so a run killed
mid-save leaves the previous checkpoint intact; `latest_step` only sees finished ones.
"""

from __future__ import annotations

import os
import warnings
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
        self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=("params", "opt", "meta"))

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, params: nnx.State, opt: nnx.State | None, meta: dict[str, Any], force: bool = True) -> bool:
        """Writes the model parameters, the optimizer state (optional) and `meta` at `step`."""
        if self.manager.latest_step() == step:
            return False
        items = {"params": ocp.args.StandardSave(params), "meta": ocp.args.JsonSave(meta)}
        if opt is not None:
            items["opt"] = ocp.args.StandardSave(opt)
        saved = self.manager.save(step, args=ocp.args.Composite(**items), force=force)
        self.manager.wait_until_finished()
        return bool(saved)

    def maybe_save(self, step: int, params: nnx.State, opt: nnx.State | None, meta: dict[str, Any]) -> bool:
        """Saves when `step` is a multiple of `save_every`."""
        if step % self.save_every:
            return False
        return self.save(step, params, opt, meta)

    def _restore_step(self, step: int, params_target: nnx.State, opt_target: nnx.State | None) -> tuple[Any, Any, dict]:
        items = {"params": ocp.args.StandardRestore(jax.tree.map(_abstract, params_target)),
                 "meta": ocp.args.JsonRestore()}
        if opt_target is not None:
            items["opt"] = ocp.args.StandardRestore(jax.tree.map(_abstract, opt_target))
        restored = self.manager.restore(step, args=ocp.args.Composite(**items))
        return restored["params"], restored["opt"] if opt_target is not None else None, dict(restored["meta"])

    def restore(self, step: int | None, params_target: nnx.State,
                opt_target: nnx.State | None = None) -> tuple[nnx.State, nnx.State | None, dict[str, Any], int]:
        """Restores into the structure, shapes, dtypes and shardings of the targets.

        Args:
          step: the step to restore; None = the latest readable one. When the latest checkpoint cannot
            be read, the previous ones are tried in turn, with a warning naming the damaged directory.
          params_target: the model's nnx.Param state.
          opt_target: the optimizer state, or None to restore the parameters only (another run's model).

        Returns:
          (params, opt or None, meta, step). Raises FileNotFoundError when nothing is readable.
        """
        steps = [step] if step is not None else sorted(self.manager.all_steps(), reverse=True)
        if not steps:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        failures = []
        for s in steps:
            try:
                params, opt, meta = self._restore_step(s, params_target, opt_target)
            except Exception as err:  # orbax / tensorstore raise many types for damaged files
                failures.append(f"{self.directory / str(s)}: {type(err).__name__}: {str(err)[:200]}")
                if step is not None:
                    break
                warnings.warn(f"checkpoint {self.directory / str(s)} is unreadable ({type(err).__name__}); "
                              "trying the previous one", RuntimeWarning, stacklevel=2)
                continue
            return params, opt, meta, s
        raise FileNotFoundError("no readable checkpoint: " + "; ".join(failures))

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

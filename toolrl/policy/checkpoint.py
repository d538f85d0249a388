"""Orbax checkpoints of a training run: parameters, optimizer state and the loop's position.

The one checkpoint module: the trainer saves and resumes through `Checkpointer`, and
`toolrl.policy.runtime.Policy.restore_params` loads a run's parameters (item `params` only) through it.

A checkpoint at step s holds the state *after* s updates: the model parameters, the optimizer state
(moments and its step count), and a JSON record with the step, the phase ("sft" / "grpo"), the data
position (prompts consumed so far) and the run's RNG seed. Everything random in the loop is derived
from (seed, step), so restoring these reproduces the rest of the run exactly.

Orbax writes each step to a temporary directory and renames it when complete, so a run killed
mid-save leaves the previous checkpoint intact; `latest_step` only sees finished ones.

Reading never writes: until the first `save`, the directory is opened read-only (no directory created,
no ``N.orbax-checkpoint-tmp`` of a run still saving cleaned up), so loading another run's model
(`Policy.from_run`, ``model.init_checkpoint``, ``--config.mode=eval``) while it trains cannot destroy
its save in progress. The first `save` reopens the directory for writing (the trainer, which holds the
run's workdir lock, saves there; only then are a killed save's temporary directories removed).

API (items ``params`` = the model's nnx.Param state, ``opt`` = the optimizer state, optional, and
``meta`` = JSON)::

    ckpt = Checkpointer(directory, save_every, keep)
    ckpt.save(step, params, opt, meta, force=True) -> bool        # opt may be None
    ckpt.maybe_save(step, params, opt, meta) -> bool              # when step % save_every == 0
    ckpt.restore(step, params_target, opt_target=None) -> (params, opt | None, meta, step)
        # opt_target: a state, None (model only), or meta -> state (built per step tried)
    ckpt.restore_meta(step=None) -> (meta, step)                  # the JSON item only
    ckpt.latest_step() -> int | None;  ckpt.close()
    save_params(directory, params);  load_params(directory, target)   # the frozen KL reference

Damaged checkpoints: ``restore(None, ...)`` (and ``restore_meta(None)``) try the steps newest first;
an unreadable one (deleted or truncated files, garbage metadata) is skipped with a RuntimeWarning
naming its directory, and FileNotFoundError naming the checkpoint directory is raised when none is
readable (or when an explicitly requested step is unreadable). The process that skipped a damaged
step moves it aside to ``<step>.unreadable-<UTC time>`` (kept for inspection, invisible to orbax)
before it saves that step or an earlier one again, so the resumed run's new checkpoints are written
instead of being refused as "already saved".
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path
from collections.abc import Callable
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging as absl_logging
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
        self.keep = keep
        self.writable = False
        self.manager = self._open(writable=False)
        self._unreadable: set[int] = set()  # steps this process found damaged (moved aside before a save)

    def _open(self, writable: bool) -> ocp.CheckpointManager:
        """A manager of the directory: read-only (restores; touches nothing) or for saving."""
        if writable:
            options = ocp.CheckpointManagerOptions(
                max_to_keep=self.keep,
                create=True,
                # Synchronous saves: a checkpoint is on disk when `save` returns, so the metrics log
                # never runs ahead of what a resumed run can restore by more than the save interval.
                enable_async_checkpointing=False,
                # Only the writer (the run that owns the directory) removes a killed save's leftovers.
                cleanup_tmp_directories=True,
            )
        else:
            options = ocp.CheckpointManagerOptions(read_only=True, create=False, cleanup_tmp_directories=False,
                                                   save_interval_steps=0, enable_async_checkpointing=False)
        verbosity = absl_logging.get_verbosity()
        absl_logging.set_verbosity(absl_logging.ERROR)  # orbax logs a warning for each option read_only adjusts
        try:
            return ocp.CheckpointManager(self.directory, options=options, item_names=("params", "opt", "meta"))
        finally:
            absl_logging.set_verbosity(verbosity)

    def _make_writable(self) -> None:
        if not self.writable:
            self.manager.close()
            self.manager = self._open(writable=True)
            self.writable = True

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, params: nnx.State, opt: nnx.State | None, meta: dict[str, Any], force: bool = True) -> bool:
        """Writes the model parameters, the optimizer state (optional) and `meta` at `step`."""
        self._make_writable()
        self._set_aside_unreadable(step)
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

    def _set_aside_unreadable(self, step: int) -> None:
        """Moves damaged steps >= `step` (found by this process) out of orbax's sight, keeping them."""
        blocking = sorted(s for s in self._unreadable if s >= step)
        if not blocking:
            return
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        for s in blocking:
            source = self.directory / str(s)
            if source.exists():
                target = self.directory / f"{s}.unreadable-{stamp}"
                os.replace(source, target)
                warnings.warn(f"moved the unreadable checkpoint {source} aside to {target}", RuntimeWarning, stacklevel=3)
            self._unreadable.discard(s)
        self.manager.reload()

    def _restore_step(self, step: int, params_target: nnx.State, opt_target: Any) -> tuple[Any, Any, dict]:
        if callable(opt_target):  # the optimizer's structure depends on the checkpoint (e.g. its phase)
            meta = dict(self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"])
            opt_target = opt_target(meta)
        items = {"params": ocp.args.StandardRestore(jax.tree.map(_abstract, params_target)),
                 "meta": ocp.args.JsonRestore()}
        if opt_target is not None:
            items["opt"] = ocp.args.StandardRestore(jax.tree.map(_abstract, opt_target))
        restored = self.manager.restore(step, args=ocp.args.Composite(**items))
        return restored["params"], restored["opt"] if opt_target is not None else None, dict(restored["meta"])

    def restore(self, step: int | None, params_target: nnx.State,
                opt_target: nnx.State | Callable[[dict[str, Any]], nnx.State | None] | None = None,
                ) -> tuple[nnx.State, nnx.State | None, dict[str, Any], int]:
        """Restores into the structure, shapes, dtypes and shardings of the targets.

        Args:
          step: the step to restore; None = the latest readable one. When the latest checkpoint cannot
            be read, the previous ones are tried in turn, with a warning naming the damaged directory.
          params_target: the model's nnx.Param state.
          opt_target: the optimizer state, or None to restore the parameters only (another run's model),
            or a function meta -> optimizer state (or None), called for each step tried, for optimizers
            whose structure depends on the checkpoint (the trainer's phase): then a step whose `opt`
            item is damaged is skipped like any other damaged step.

        Returns:
          (params, opt or None, meta, step). Raises FileNotFoundError when nothing is readable.
        """
        return self._first_readable(step, lambda s: self._restore_step(s, params_target, opt_target))

    def restore_meta(self, step: int | None = None) -> tuple[dict[str, Any], int]:
        """(meta, step) of `step` (None = the latest readable), reading the JSON item only."""
        def read(s: int) -> dict[str, Any]:
            return dict(self.manager.restore(s, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"])

        return self._first_readable(step, read)

    def _first_readable(self, step: int | None, read: Any) -> Any:
        steps = [step] if step is not None else sorted(self.manager.all_steps(), reverse=True)
        if not steps:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        failures = []
        for s in steps:
            try:
                result = read(s)
            except Exception as err:  # orbax / tensorstore raise many types for damaged files
                failures.append(f"{self.directory / str(s)}: {type(err).__name__}: {str(err)[:200]}")
                self._unreadable.add(s)
                if step is not None:
                    break
                warnings.warn(f"checkpoint {self.directory / str(s)} is unreadable ({type(err).__name__}: "
                              f"{str(err)[:200]}); trying the previous one", RuntimeWarning, stacklevel=3)
                continue
            return (*result, s) if isinstance(result, tuple) else (result, s)
        raise FileNotFoundError(f"no readable checkpoint in {self.directory}: " + "; ".join(failures))

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

"""The training loop: SFT warm start then GRPO, with checkpoints, metrics, evaluation and a progress bar.

The loop only runs the algorithm (tasks -> Policy.generate -> environment -> reward -> advantages ->
loss -> optimizer -> checkpoint / metrics); the model at run time is the `Policy`, the math is in
`grpo.py` and `steps.py`, the rollouts in `rollout.py`.

Global step numbering: steps 1..sft.num_steps are SFT updates, the next train.num_steps are GRPO
updates. A checkpoint at step s holds the state after s updates plus the loop's position; the
metrics record of step s is written before that checkpoint, and on resume records beyond the
restored step are dropped, so the log has each step exactly once.

All randomness of step s is `fold_in(PRNGKey(seed), s)` and the data of step s is a fixed slice of
the seeded `TaskStream`, so a resumed run repeats exactly what the killed run would have done.

Non-finite values: the loss and gradient norm of every update and the rewards of every GRPO batch are
checked before the update is applied, and the parameters before every save. A non-finite one raises
`NonFiniteError` (one line naming the step and the first non-finite quantity; nothing of that step is
applied or saved, so the last good checkpoint stays the latest); with ``train.skip_nonfinite`` the
step is skipped instead (no update; its data is consumed) and counted in ``train/skipped_nonfinite``.

Signals: during `Trainer.run`, SIGTERM (a scheduler's notice) or SIGINT finishes the current step,
saves it and raises `TrainingInterrupted`; a second signal abandons the current step at once (saving
the last completed step when no update of the abandoned one was applied yet).
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable, Generic, Mapping, Sequence, TypeVar

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh

from toolrl.cli import UserError
from toolrl.data.golden import GoldenSample, filter_by_calls, load_samples, select_ids
from toolrl.eval.protocol import TurnTask, build_turn_tasks
from toolrl.policy.checkpoint import Checkpointer, load_params, save_params
from toolrl.policy.runtime import Policy, SamplingSettings
from toolrl.rewards.registry import RewardOutput, score_episodes, score_turns
from toolrl.rewards.types import ErrorCode, RewardWeights
from toolrl.rl import grpo, steps
from toolrl.rl.fit import FitReport, fit_report, require_fit
from toolrl.rl.metrics import MetricsLog, WandbRun
from toolrl.rl.rollout import (RolloutBatch, episode_budget, golden_episode, rollout_episodes, rollout_turns,
                               turn_budget)

T = TypeVar("T")
log = logging.getLogger(__name__)

ERROR_NAMES = {int(c): c.name.lower() for c in ErrorCode if int(c) >= 0}
N_ERROR_CODES = max(ERROR_NAMES) + 1

# A reward function for tests and custom objectives: rollout batch -> RewardOutput.
RewardFn = Callable[[RolloutBatch], RewardOutput]


class NonFiniteError(RuntimeError):
    """A step's loss, gradient norm, rewards or parameters are not finite; nothing of it was applied or saved."""


class TrainingInterrupted(RuntimeError):
    """The run stopped on a signal (SIGTERM / SIGINT); `signum` is the signal, `saved` the step saved (or None)."""

    def __init__(self, message: str, signum: int, saved: int | None):
        super().__init__(message)
        self.signum = signum
        self.saved = saved


class CheckpointSaveError(UserError):
    """A checkpoint could not be written (no space, read-only or not permitted); the message says which step."""


# Errors of the storage, not of the program: a save that meets one is reported in one line.
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})
_STORAGE_TEXTS = tuple(os.strerror(e) for e in sorted(STORAGE_ERRNOS))


def storage_problem(error: BaseException) -> str | None:
    """The storage problem behind `error` (its strerror), also when a library wrapped the OSError; else None."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in STORAGE_ERRNOS:
            return os.strerror(error.errno)
        text = str(error)
        for message in _STORAGE_TEXTS:
            if message in text:
                return message
        error = error.__cause__ or error.__context__
    return None


class _SkipStep(Exception):
    """Raised inside a step with train.skip_nonfinite: the step's update is dropped."""


class _Abandon(BaseException):
    """Raised by the signal handler on a second signal: leave the current step at once."""


def first_nonfinite(values: Mapping[str, Any]) -> str | None:
    """``"name = value"`` of the first entry (in order) with a non-finite element, or None."""
    for name, value in values.items():
        array = np.asarray(value, dtype=np.float64)
        bad = ~np.isfinite(array)
        if bad.any():
            return f"{name} = {array[bad].ravel()[0]}" + (f" ({int(bad.sum())} of {array.size})" if array.size > 1 else "")
    return None


def _checked_first(metrics: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """The step metrics in check order: loss, grad_norm, then the rest (named with `prefix`)."""
    order = [k for k in ("loss", "grad_norm") if k in metrics] + [k for k in metrics if k not in ("loss", "grad_norm")]
    return {prefix + k: metrics[k] for k in order}


class _StopSignals:
    """SIGTERM / SIGINT handlers for the training loop (main thread only; elsewhere a no-op).

    The first signal sets `signum` (the loop finishes its step, saves and stops); a second one raises
    `_Abandon` unless `hold` is set (the final save in progress)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.signum: int | None = None
        self.hold = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        del frame
        if self.signum is None:
            self.signum = signum
            log.warning("%s received: finishing the current step, then saving and stopping (send it again "
                        "to abandon the step)", signal.Signals(signum).name)
            return
        if not self.hold:
            raise _Abandon()

    def __enter__(self) -> "_StopSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


class TaskStream(Generic[T]):
    """An infinite, reproducible order over tasks; position = number of tasks served so far.

    Epoch e = position // n is a permutation seeded by (seed, e); the state is one integer."""

    def __init__(self, tasks: Sequence[T], seed: int, shuffle: bool = True):
        if not tasks:
            raise ValueError("no tasks to serve")
        self.tasks = list(tasks)
        self.seed = seed
        self.shuffle = shuffle
        self._epoch: tuple[int, np.ndarray] | None = None

    def index(self, position: int) -> int:
        n = len(self.tasks)
        epoch = position // n
        if self._epoch is None or self._epoch[0] != epoch:
            order = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)
            self._epoch = (epoch, order)
        return int(self._epoch[1][position % n])

    def take(self, position: int, count: int) -> list[T]:
        return [self.tasks[self.index(p)] for p in range(position, position + count)]


# ----------------------------------------------------------------------------- data


@dataclasses.dataclass
class TrainingData:
    """The tasks of a run, filtered by the fit report.

    Attributes:
      rl: GRPO tasks that fit: samples (episode mode) or (sample, scored turn) pairs (turn mode).
      sft: samples whose whole golden episode fits max_seq_len (SFT trains on it uncut).
      rl_fit, sft_fit: the reports.
    """

    rl: list[Any]
    sft: list[GoldenSample]
    rl_fit: FitReport
    sft_fit: FitReport

    def samples(self) -> list[GoldenSample]:
        """Every sample the run trains on (SFT episodes and GRPO tasks), once each, in first-seen order."""
        seen: dict[str, GoldenSample] = {}
        for task in [*self.sft, *self.rl]:
            sample = task[0] if isinstance(task, tuple) else task
            seen.setdefault(sample.sample_id, sample)
        return list(seen.values())


def build_missing_data(data: ml_collections.ConfigDict) -> None:
    """``data.build_missing``: builds the natural data in ``data.synth_dir`` when it is absent or an older
    version of it (toolrl.data.natural); a dataset stamped for anything else is left for `require_stamp`
    to refuse, never overwritten."""
    from toolrl.data import natural
    from toolrl.data.provenance import ProvenanceError, dataset_exists, read_stamp
    from toolrl.rl.config import ConfigError

    if data.synth_stamp != natural.NATURAL_STAMP:
        raise ConfigError(f"data.build_missing builds only the natural data: data.synth_stamp must be "
                          f"{natural.NATURAL_STAMP!r}, not {data.synth_stamp!r}")
    if not data.synth_dir:
        raise ConfigError("data.build_missing needs data.synth_dir (where to build the natural data)")
    if natural.is_current(data.synth_dir):
        return
    stamp = read_stamp(data.synth_dir) if dataset_exists(data.synth_dir) else None
    if dataset_exists(data.synth_dir) and not str((stamp or {}).get("id", "")).startswith("study:natural"):
        return  # someone else's dataset: require_stamp refuses it in one line
    if jax.process_count() > 1:  # several hosts writing one directory would clash
        raise ProvenanceError(f"no natural data in {data.synth_dir}; build it once before a multi-host run with "
                              "`python -m experiments.study_data`")
    print(f"data: building the decontaminated natural-query data in {data.synth_dir} (once, ~1 min)", flush=True)
    natural.build_natural_data(data.synth_dir, data_dir=data.data_dir or None,
                               builder="toolrl.main (data.build_missing)")


def load_training_samples(config: ml_collections.ConfigDict) -> list[GoldenSample]:
    """The training samples: every source of ``data.train_file`` (comma-separated), by id and size filters,
    without the samples that call a golden call of ``data.decontaminate`` (logged)."""
    d = config.data
    from toolrl.data.provenance import require_stamp

    if d.get("build_missing", False) and any(s.strip().startswith("synthetic:") for s in d.train_file.split(",")):
        build_missing_data(d)
    require_stamp(d)
    sources = [s.strip() for s in d.train_file.split(",") if s.strip()]
    samples = [s for source in sources
               for s in load_samples(source, d.data_dir or None, None, d.max_distractors, d.synth_dir or None)]
    if d.decontaminate:
        from toolrl.data.contamination import drop_overlapping, sample_keys

        test = load_samples(d.decontaminate, d.data_dir or None, synth_dir=d.synth_dir or None)
        samples, dropped = drop_overlapping(samples, sample_keys(test))
        log.info("decontamination: dropped %d of %d training samples calling a golden call of %s",
                 dropped, dropped + len(samples), d.decontaminate)
    try:
        samples = select_ids(samples, d.sample_ids)
    except ValueError as err:  # an unknown id: the user's mistake, one line naming the field
        from toolrl.rl.config import ConfigError

        raise ConfigError(f"data.sample_ids: {err} in data.train_file={d.train_file!r}") from err
    samples = filter_by_calls(samples, d.max_steps_per_sample)
    if d.max_samples:
        if d.get("subset", "first") == "balanced":
            from toolrl.eval.selection import balanced_subset

            samples = balanced_subset(samples, d.max_samples, config.seed)
        else:
            samples = samples[: d.max_samples]
    if not samples:
        raise ValueError(f"no training samples in data.train_file={d.train_file!r} "
                         f"(data.max_steps_per_sample={d.max_steps_per_sample}, data.max_samples={d.max_samples}, "
                         f"data.decontaminate={d.decontaminate!r})")
    return samples


def prepare_data(config: ml_collections.ConfigDict, policy: Policy, samples: Sequence[GoldenSample],
                 render: Callable[[Any], str], check: bool = True) -> TrainingData:
    """Fit reports for the GRPO tasks and the SFT episodes; raises ConfigError below data.min_fit."""
    r, view = config.rollout, config.data.tool_view
    budgets = dict(max_new_tokens=r.max_new_tokens, max_seq_len=r.max_seq_len)
    tasks: list[Any] = []
    if r.mode == "turn":
        tasks = [(s, t) for s in samples for t in build_turn_tasks(s) if t.complete]
        rl = fit_report("scored turns", tasks, lambda st: turn_budget(st[1], policy, view, render),
                        max_turns=r.max_turns, **budgets)
    else:
        rl = fit_report("episodes", list(samples), lambda s: episode_budget(s, policy, view, render, False),
                        max_turns=r.max_turns, **budgets)
    # SFT episodes: the whole golden episode (with its final answer) within max_seq_len.
    sft = fit_report("SFT episodes", list(samples), lambda s: episode_budget(s, policy, view, render, True),
                     max_turns=10**9, max_new_tokens=10**9, max_seq_len=r.max_seq_len, rollout_rule=False)
    if not config.data.drop_unfit:
        return TrainingData(list(tasks if r.mode == "turn" else samples), list(samples), rl, sft)
    if check:
        if config.mode == "grpo" and config.train.num_steps:
            require_fit(rl, config.data.min_fit)
        if config.sft.num_steps:
            require_fit(sft, config.data.min_fit)
    return TrainingData(rl.kept, sft.kept, rl, sft)


# ----------------------------------------------------------------------------- packing


def bucket(length: int, multiple: int) -> int:
    """A padded width for `length`: the next of 2^k and 1.5 * 2^k, rounded up to a multiple of
    `multiple`. Above 128 tokens at most a third of a row is padding, and a run compiles a handful of widths (an
    update program per width: compiling SmolLM2's step costs tens of seconds on a CPU)."""
    size = max(int(multiple), 1)
    while size < length:
        size = size * 3 // 2 if size & (size - 1) == 0 and size >= 4 else 1 << size.bit_length()
    return -(-size // multiple) * multiple


def pack_rows(rows: Sequence[tuple[list[int], list[int]]], pad_id: int, width: int) -> tuple[np.ndarray, ...]:
    """Right-pads (ids, flags) rows to `width`: tokens [B, W] int32, attention [B, W], loss [B, W] bool."""
    tokens = np.full((len(rows), width), pad_id, np.int32)
    attn = np.zeros((len(rows), width), bool)
    loss = np.zeros((len(rows), width), bool)
    for i, (ids, flags) in enumerate(rows):
        if len(ids) > width:
            raise ValueError(f"row {i} has {len(ids)} tokens, more than the width {width}")
        tokens[i, :len(ids)] = ids
        attn[i, :len(ids)] = True
        loss[i, :len(flags)] = np.asarray(flags, bool)
    return tokens, attn, loss


def row_buckets(batch: int, unit: int) -> list[int]:
    """Row counts an update batch is padded to: a few fractions of the batch, multiples of `unit`."""
    return sorted({max(unit, bucket(max(batch // d, 1), unit)) for d in (8, 4, 2, 1)})


@dataclasses.dataclass
class RunInfo:
    """Where a run's artifacts are, and what it measured."""

    workdir: Path
    checkpoints: Path
    metrics: Path
    wandb: str
    final_step: int
    evaluations: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    rewards: list[float] = dataclasses.field(default_factory=list)
    fit: Any = None


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class Trainer:
    """Owns the optimizer, the data streams and the run's side effects (files, W&B, the bar).

    Args:
      config: the validated ConfigDict.
      policy: the run-time policy (model placed on `mesh`).
      env: the tool environment (episode mode).
      data: the fitted tasks (`prepare_data`).
      mesh: device mesh or None.
      reward_fn: overrides the registry reward (tests).
      evaluation: a `toolrl.eval.evaluator.Evaluation` run every eval.every steps (None: no evaluation).
      train_evaluation: an `Evaluation` of the run's own training tasks (eval.train_turns), run beside it
        and logged as eval_train/* (None: none).
      matcher: the evaluator's call matcher (turn mode); default built from config.eval.
    """

    def __init__(self, config: ml_collections.ConfigDict, policy: Policy, env: Any, data: TrainingData,
                 mesh: Mesh | None, reward_fn: RewardFn | None = None, evaluation: Any = None, matcher: Any = None,
                 train_evaluation: Any = None):
        self.config = config
        self.policy = policy
        self.model = policy.model
        self.env = env
        self.data = data
        self.mesh = mesh
        self.evaluation = evaluation
        self.train_evaluation = train_evaluation
        self.render = env.render
        self.rl_stream = TaskStream(data.rl, config.seed) if data.rl else None
        self.sft_stream = TaskStream(data.sft, config.seed) if data.sft else None
        self.reward_fn = reward_fn or self._registry_reward
        self.workdir = Path(config.workdir).absolute()
        self.sft_steps = int(config.sft.num_steps) if config.mode in ("grpo", "sft") else 0
        self.total_steps = self.sft_steps + (int(config.train.num_steps) if config.mode == "grpo" else 0)
        r = config.rollout
        batch = r.prompts_per_step * r.group_size
        self.loss_config = grpo.LossConfig(
            epsilon_low=config.grpo.epsilon_low, epsilon_high=config.grpo.epsilon_high, beta=config.grpo.beta,
            aggregation=config.grpo.aggregation, constant_tokens=batch * r.max_turns * r.max_new_tokens)
        if r.top_k or r.top_p < 1.0:
            log.warning("rollout.top_k=%s / rollout.top_p=%s truncate the sampling distribution; the trainer's "
                        "log-probs are those of the untruncated tempered policy, so the importance ratio is "
                        "approximate", r.top_k, r.top_p)
        self.sampling = SamplingSettings(max_new_tokens=r.max_new_tokens, temperature=r.temperature, top_k=r.top_k,
                                         top_p=r.top_p, pad_multiple=r.pad_multiple)
        shards = 1 if mesh is None else int(mesh.shape["data"] * mesh.shape["fsdp"])
        self.row_buckets = row_buckets(batch, config.grpo.micro_batches * shards)
        self.matcher = matcher
        if r.mode == "turn" and matcher is None:
            from toolrl.env.cache import open_default_cache
            from toolrl.eval.evaluator import make_matcher

            data_dir = config.data.data_dir or None
            lookup = (open_default_cache(data_dir, config.eval.cache_path or None).lookup
                      if config.eval.response_equivalence else None)
            self.matcher = make_matcher(data_dir, lookup)
        self.checkpointer = Checkpointer(self.workdir / "checkpoints", config.train.save_every, config.train.keep)
        self.metrics = MetricsLog(self.workdir / "metrics.jsonl")
        self.step = 0
        self.phase = ""
        self.skip_nonfinite = bool(config.train.get("skip_nonfinite", False))
        self.skipped_nonfinite = 0  # steps skipped for a non-finite value (train.skip_nonfinite)
        self._applied = False  # an update of the step in progress was applied (self.step not yet advanced)
        self.optimizer: nnx.Optimizer | None = None
        self.ref_state: Any = None
        self._compiled: dict[Any, Any] = {}
        self._bar_text = ""
        self._stop = _StopSignals()

    # ------------------------------------------------------------------ state

    def _phase_of(self, step: int) -> str:
        """Phase of the update that produces step + 1."""
        return "sft" if step < self.sft_steps else "grpo"

    def _make_optimizer(self, phase: str) -> None:
        c = self.config
        lr = c.sft.learning_rate if phase == "sft" else c.optim.learning_rate
        with jax.set_mesh(self.mesh) if self.mesh is not None else _Null():
            self.optimizer = steps.make_optimizer(self.model, lr, c.optim.warmup_steps, c.optim.weight_decay,
                                                  c.optim.b1, c.optim.b2, c.optim.grad_clip)
        if self.mesh is not None:
            from toolrl.models.sharding import shard_state

            nnx.update(self.optimizer, shard_state(nnx.state(self.optimizer), self.mesh))
        self.phase = phase
        self._compiled.clear()

    def _meta(self) -> dict[str, Any]:
        return {"step": self.step, "phase": self.phase, "seed": int(self.config.seed),
                "sft_position": self._sft_position(self.step), "grpo_position": self._grpo_position(self.step),
                "skipped_nonfinite": self.skipped_nonfinite}

    def _sft_position(self, step: int) -> int:
        return min(step, self.sft_steps) * int(self.config.sft.batch_size)

    def _grpo_position(self, step: int) -> int:
        return max(step - self.sft_steps, 0) * int(self.config.rollout.prompts_per_step)

    def _nonfinite(self, values: Mapping[str, Any], phase: str) -> None:
        """Raises (or skips the step, with train.skip_nonfinite) when a value is not finite."""
        bad = first_nonfinite(values)
        if bad is None:
            return
        if self.skip_nonfinite:
            raise _SkipStep(bad)
        raise NonFiniteError(f"step {self.step + 1} ({phase}): non-finite {bad}; the update was not applied and "
                             f"nothing was saved ({self._latest_text()}); lower the learning rate or fix the "
                             f"reward, or pass --config.train.skip_nonfinite=True to skip such steps")

    def _donatable(self, state: Any) -> Any:
        """The state to pass to a step function, which donates (deletes) its input buffers.

        With train.skip_nonfinite: a copy, so the model survives a skipped step (memory for a second copy
        of the parameters and optimizer state). Otherwise the model's own buffers: from here on this step
        cannot be abandoned with a save."""
        if self.skip_nonfinite:
            return jax.tree.map(jnp.copy, state)
        self._applied = True
        return state

    def _latest_text(self) -> str:
        latest = self.checkpointer.latest_step()
        return (f"latest checkpoint: step {latest} in {self.checkpointer.directory}" if latest is not None
                else "no checkpoint yet")

    def _save(self, force: bool) -> None:
        params, opt = nnx.state(self.model, nnx.Param), nnx.state(self.optimizer)
        if force or self.step % self.checkpointer.save_every == 0:
            norm = float(optax.global_norm(params))  # one reduction: cheap next to a save
            if not np.isfinite(norm):
                raise NonFiniteError(f"step {self.step}: non-finite parameters (global norm {norm}) after the "
                                     f"update; not saved ({self._latest_text()}); lower the learning rate")
        try:
            if force:
                self.checkpointer.save(self.step, params, opt, self._meta())
            else:
                self.checkpointer.maybe_save(self.step, params, opt, self._meta())
        except Exception as err:
            problem = storage_problem(err)
            if problem is None:
                raise
            raise CheckpointSaveError(f"step {self.step}: could not save the checkpoint in {self.checkpointer.directory} "
                                      f"({problem}); {self._latest_text()}; free space or make the workdir "
                                      f"writable, then rerun the same command to resume") from err

    def restore_or_init(self) -> int:
        """Restores the latest checkpoint of the workdir (or starts at step 0); returns the step."""
        if self.checkpointer.latest_step() is None:
            if self.config.model.init_checkpoint:
                self.policy.restore_params(self.config.model.init_checkpoint)
            self._make_optimizer(self._phase_of(0))
            self.metrics.truncate_after(0)
            self._maybe_reference()
            return 0
        def optimizer_for(meta: dict[str, Any]) -> Any:  # the optimizer of the checkpoint's phase
            self._make_optimizer(meta["phase"])
            return nnx.state(self.optimizer)

        params, opt, meta, _ = self.checkpointer.restore(None, nnx.state(self.model, nnx.Param), optimizer_for)
        nnx.update(self.model, params)
        nnx.update(self.optimizer, opt)
        self.step = int(meta["step"])
        self.skipped_nonfinite = int(meta.get("skipped_nonfinite", 0))
        if meta["sft_position"] != self._sft_position(self.step) or meta["grpo_position"] != self._grpo_position(self.step):
            raise ValueError(f"checkpoint at step {self.step}: data position {meta} does not match this config's batch sizes")
        if self._phase_of(self.step) != self.phase:  # saved at the end of SFT: GRPO starts fresh
            self._make_optimizer(self._phase_of(self.step))
        self.metrics.truncate_after(self.step)
        self._maybe_reference()
        return self.step

    def _maybe_reference(self) -> None:
        """The frozen KL reference = the policy when GRPO starts (after SFT), saved once to disk."""
        if self.config.mode != "grpo" or self.config.grpo.beta == 0.0 or self.step < self.sft_steps:
            return
        path = self.workdir / "reference"
        params = nnx.state(self.model, nnx.Param)
        if self.step == self.sft_steps and not path.exists():
            save_params(path, params)
        self.ref_state = load_params(path, params) if path.exists() else jax.tree.map(jnp.copy, params)

    def _get(self, name: Any, build: Callable[[], Any]) -> Any:
        if name not in self._compiled:
            self._compiled[name] = build()
        return self._compiled[name]

    # ------------------------------------------------------------------ reward

    def _registry_reward(self, batch: RolloutBatch) -> RewardOutput:
        c = self.config.reward
        weights = RewardWeights(atomic=c.atomic_weight, orchestration=c.orchestration_weight)
        score = score_turns if self.config.rollout.mode == "turn" else score_episodes
        kwargs = {"paper_compat": c.paper_compat} if c.family == "paper" and c.paper_compat != "ours" else {}
        return score(c.family, c.mode, batch.inputs, weights=weights, **kwargs)

    # ------------------------------------------------------------------ steps

    def sft_step(self) -> dict[str, Any]:
        """One SFT update on whole golden episodes; returns its metrics."""
        c = self.config
        t0 = time.perf_counter()
        samples = self.sft_stream.take(self._sft_position(self.step), c.sft.batch_size)
        rows = [golden_episode(s, self.policy, c.data.tool_view, self.render) for s in samples]
        width = min(bucket(max(len(ids) for ids, _ in rows), c.rollout.pad_multiple), self._widest_width())
        tokens, attn, loss_mask = pack_rows(rows, self.policy.chat.pad_id, width)
        batch = steps.to_device_batch({"tokens": tokens, "attention_mask": attn, "loss_mask": loss_mask}, self.mesh)
        graphdef, state = nnx.split((self.model, self.optimizer))
        fn = self._get(("sft", width), lambda: steps.make_sft_step(graphdef, self.mesh, state))
        new_state, m = fn(self._donatable(state), batch)
        m = {k: float(np.asarray(v)) for k, v in m.items()}
        self._nonfinite(_checked_first(m, "sft/"), "sft")
        self._applied = True
        nnx.update((self.model, self.optimizer), new_state)
        dt = time.perf_counter() - t0
        return {"sft/" + k: v for k, v in m.items()} | {
            "time/step_s": dt, "time/tokens_per_s": float(attn.sum()) / dt, "time/width": width,
            "data/tasks": ",".join(s.sample_id for s in samples)}

    def _rollout(self, key: jax.Array) -> tuple[RolloutBatch, list[Any]]:
        c = self.config
        r = c.rollout
        tasks = self.rl_stream.take(self._grpo_position(self.step), r.prompts_per_step)
        if r.mode == "turn":
            batch = rollout_turns(tasks, r.group_size, self.policy, self.matcher, key, self.sampling,
                                  max_rounds=r.max_turns, max_seq_len=r.max_seq_len, tool_view=c.data.tool_view,
                                  render=self.render)
        else:
            batch = rollout_episodes(tasks, r.group_size, self.policy, self.env, key, self.sampling,
                                     max_turns=r.max_turns, max_seq_len=r.max_seq_len, tool_view=c.data.tool_view)
        return batch, tasks

    def grpo_step(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """One GRPO step: rollout, reward, advantages, update(s) on the rows that carry signal."""
        c = self.config
        g = c.rollout.group_size
        key = jax.random.fold_in(jax.random.PRNGKey(c.seed), self.step)
        t0 = time.perf_counter()
        batch, tasks = self._rollout(key)
        t1 = time.perf_counter()
        scored = self.reward_fn(batch)
        reward = np.asarray(scored.reward, np.float32)
        self._nonfinite({"reward": reward}, "grpo")
        advantages, degenerate = grpo.group_advantages(jnp.asarray(reward), g, scale_by_std=c.grpo.scale_by_std)
        advantages, degenerate = np.asarray(advantages), np.asarray(degenerate)
        has_tokens = np.asarray([any(flags) for _, flags in batch.rows])
        live = has_tokens.copy()
        if c.grpo.mask_degenerate:
            live &= ~degenerate
        if c.grpo.mask_truncated:
            live &= ~batch.truncated
        t2 = time.perf_counter()
        metrics = self._update([batch.rows[i] for i in np.flatnonzero(live)], advantages[live])
        t3 = time.perf_counter()
        codes = np.asarray(scored.error_codes).ravel()
        counts = np.bincount(codes[(codes >= 0) & (codes < N_ERROR_CODES)], minlength=N_ERROR_CODES)
        summary = grpo.degenerate_summary(jnp.asarray(degenerate), g)
        train_tokens = sum(len(ids) for ids, _ in batch.rows)
        scalars: dict[str, Any] = {
            "reward/mean": float(reward.mean()), "reward/std": float(reward.std()),
            "reward/max": float(reward.max()), "reward/min": float(reward.min()),
            **{f"reward/{k}": float(np.asarray(v).mean()) for k, v in scored.levels.items()},
            **{f"errors/{ERROR_NAMES.get(i, i)}": int(n) for i, n in enumerate(counts)},
            **{f"grpo/{k}": v for k, v in metrics.items()},
            "grpo/advantage_abs_mean": float(np.abs(advantages).mean()),
            "grpo/degenerate_groups": int(summary["degenerate_groups"]),
            "grpo/degenerate_fraction": float(summary["degenerate_fraction"]),
            "grpo/live_rows": int(live.sum()),
            "grpo/skipped_update": int(not live.any()),
            "rollout/turns_mean": float(batch.n_turns.mean()),
            "rollout/truncated_fraction": float(batch.truncated.mean()),
            "rollout/generated_tokens": int(batch.generated_tokens),
            "rollout/calls_mean": float(np.mean([len(x.calls) for x in batch.inputs])),
            "time/rollout_s": t1 - t0, "time/generate_s": batch.generate_seconds, "time/reward_s": t2 - t1,
            "time/update_s": t3 - t2, "time/step_s": t3 - t0,
            "time/generate_tokens_per_s": batch.generated_tokens / max(batch.generate_seconds, 1e-9),
            "time/policy_tokens": int(sum(sum(f) for _, f in batch.rows)),
            "time/train_tokens": train_tokens,
            "data/tasks": ",".join(_task_id(t) for t in tasks),
            # Per prompt, in data/tasks' order: a prompt's reward across steps is a learning curve that
            # the step mean (a new draw of prompts each step) is not.
            "data/group_rewards": ",".join(f"{x:.4f}" for x in reward.reshape(-1, g).mean(axis=1)),
        }
        histograms = {"hist/advantages": advantages, "hist/rewards": reward,
                      "hist/error_codes": np.repeat(np.arange(N_ERROR_CODES), counts)}
        return scalars, histograms

    def _update(self, rows: list[tuple[list[int], list[int]]], advantages: np.ndarray) -> dict[str, float]:
        """GRPO update(s) on the live rows; skipped if none.

        grpo.loss_positions_only / grpo.shared_prefix take the packed path (`_update_packed`: the LM
        head only at loss positions, a group's shared prompt run once); both off, the plain path
        (`_update_plain`). All compute the same loss and gradient."""
        if not rows:
            return {"loss": 0.0, "grad_norm": 0.0, "tokens": 0.0}
        g = self.config.grpo
        shared = bool(g.get("shared_prefix", False))
        if shared or bool(g.get("loss_positions_only", True)):
            return self._update_packed(rows, advantages, shared)
        return self._update_plain(rows, advantages)

    def _plain_shape(self, rows: list[tuple[list[int], list[int]]]) -> tuple[int, int]:
        """(rows, width) of the plain layout: a row bucket and a width bucket."""
        c = self.config
        n_rows = next(b for b in self.row_buckets if b >= len(rows))
        # Rows never exceed max_seq_len: cap the bucket there, not at its next bucket.
        width = min(bucket(max(len(ids) for ids, _ in rows), c.rollout.pad_multiple), self._widest_width())
        return n_rows, width

    def _widest_width(self) -> int:
        """The widest plain update width of this run: max_seq_len rounded up to a multiple of 8."""
        return -(-self.config.rollout.max_seq_len // 8) * 8

    def _packed_batch(self, rows: list[tuple[list[int], list[int]]], advantages: np.ndarray,
                      shared: bool) -> tuple[dict[str, np.ndarray], bool, int]:
        """The packed host batch (`steps.pack_plain` / `steps.pack_shared`), whether it is the shared
        layout (used only when its trunk work is below the plain layout's), and its micro-batch count."""
        c = self.config
        pad_id = self.policy.chat.pad_id
        k = bucket(max(max(len(steps.loss_positions(f)) for _, f in rows), 1), 16)
        _, width = self._plain_shape(rows)
        micro = int(c.grpo.micro_batches)
        shards = 1 if self.mesh is None else int(self.mesh.shape["data"] * self.mesh.shape["fsdp"])
        # Rows per micro-batch as configured (memory); the row count on a ladder of that unit, so a
        # batch with few live rows runs fewer chunks instead of padding rows (each costs a whole row).
        unit = shards * max(1, (c.rollout.prompts_per_step * c.rollout.group_size) // (micro * shards))
        n_rows = bucket(len(rows), unit)
        if shared:
            linear, quadratic = steps.trunk_costs(self.policy.model_config)
            # A packed row may take the memory of a micro-batch of plain rows at the widest width
            # the run allows (its attention scores grow with the square of the width); a step whose
            # rows are short may therefore pack its groups wider than its own plain width.
            max_len = max(width, int(self._widest_width() * (unit // shards) ** 0.5))
            groups = steps.plan_groups(rows, int(c.rollout.group_size), linear, quadratic, max_len)
            s_rows = -(-len(groups) // shards) * shards  # a padding row would cost a whole packed row
            s_width = bucket(max(steps.packed_length(rows, g) for g in groups), c.rollout.pad_multiple)
            slots = max(len(g) for g in groups)
            if slots > 1 and (s_rows * steps.row_cost(s_width, linear, quadratic)
                              < n_rows * steps.row_cost(width, linear, quadratic)):
                per_shard = s_rows // shards
                s_micro = max(d for d in range(1, min(micro, per_shard) + 1) if per_shard % d == 0)
                return (steps.pack_shared(rows, advantages, pad_id, groups, s_rows, s_width, slots, k), True,
                        s_micro)
        return steps.pack_plain(rows, advantages, pad_id, n_rows, width, k), False, n_rows // unit

    def _update_packed(self, rows: list[tuple[list[int], list[int]]], advantages: np.ndarray,
                       shared: bool) -> dict[str, float]:
        """The packed update: same loss and gradient as `_update_plain`, less work (see steps.py)."""
        c = self.config
        host, shared, micro = self._packed_batch(rows, advantages, shared)
        r, s, k = host["gather"].shape
        width = host["tokens"].shape[1]
        device = steps.to_device_batch(host, self.mesh)
        use_old = c.grpo.num_iterations > 1
        temperature = float(c.rollout.temperature)
        loss_config = self.loss_config
        if loss_config.aggregation == "constant" and loss_config.constant_tokens == 0:
            n_rows, plain_width = self._plain_shape(rows)  # the plain path's batch x T
            loss_config = dataclasses.replace(loss_config, constant_tokens=n_rows * (plain_width - 1))
        graphdef, state = nnx.split((self.model, self.optimizer))
        shape = (shared, r, width, s, k)
        if use_old or self.ref_state is not None:
            mgraph, mstate = nnx.split(self.model)
            logp_fn = self._get(("packed_logp",) + shape, lambda: steps.make_packed_logprob_fn(
                mgraph, self.mesh, mstate, temperature, shared))
            inputs = {n: device[n] for n in steps.packed_keys(shared, ())}
            if use_old:
                device["old_logp"] = logp_fn(mstate, inputs)
            if self.ref_state is not None:
                device["ref_logp"] = logp_fn(nnx.merge_state(mstate, self.ref_state), inputs)
        fn = self._get(("packed_grpo", micro) + shape, lambda: steps.make_packed_grpo_step(
            graphdef, loss_config, self.mesh, state, use_old, micro, temperature, shared))
        metrics: dict[str, float] = {}
        state = self._donatable(state)
        for _ in range(c.grpo.num_iterations):
            state, m = fn(state, device)
            metrics = {name: float(np.asarray(v)) for name, v in m.items()}
            self._nonfinite(_checked_first(metrics, "grpo/"), "grpo")
        self._applied = True
        nnx.update((self.model, self.optimizer), state)
        metrics.update(width=float(width), rows=float(r), loss_positions=float(k), shared_prefix=float(shared),
                       packed_tokens=float(r * width))
        return metrics

    def _update_plain(self, rows: list[tuple[list[int], list[int]]], advantages: np.ndarray) -> dict[str, float]:
        """The plain update: rows padded to a row bucket and a width bucket, logits at every position."""
        c = self.config
        n_rows, width = self._plain_shape(rows)
        pad = n_rows - len(rows)
        tokens, attn, loss_mask = pack_rows(rows + [([self.policy.chat.pad_id], [0])] * pad, self.policy.chat.pad_id, width)
        valid = np.arange(n_rows) < len(rows)
        host = {"tokens": tokens, "attention_mask": attn, "loss_mask": loss_mask,
                "advantages": np.concatenate([advantages, np.zeros(pad, np.float32)]).astype(np.float32), "valid": valid}
        device = steps.to_device_batch(host, self.mesh)
        use_old = c.grpo.num_iterations > 1
        temperature = float(c.rollout.temperature)
        graphdef, state = nnx.split((self.model, self.optimizer))
        if use_old or self.ref_state is not None:
            mgraph, mstate = nnx.split(self.model)
            logp_fn = self._get(("logp", width, n_rows),
                                lambda: steps.make_logprob_fn(mgraph, self.mesh, mstate, temperature))
            if use_old:
                device["old_logp"] = logp_fn(mstate, device["tokens"], device["attention_mask"])
            if self.ref_state is not None:
                device["ref_logp"] = logp_fn(nnx.merge_state(mstate, self.ref_state), device["tokens"],
                                             device["attention_mask"])
        fn = self._get(("grpo", width, n_rows), lambda: steps.make_grpo_step(
            graphdef, self.loss_config, self.mesh, state, use_old, c.grpo.micro_batches, temperature))
        metrics: dict[str, float] = {}
        state = self._donatable(state)
        for _ in range(c.grpo.num_iterations):
            state, m = fn(state, device)
            metrics = {k: float(np.asarray(v)) for k, v in m.items()}
            self._nonfinite(_checked_first(metrics, "grpo/"), "grpo")
        self._applied = True
        nnx.update((self.model, self.optimizer), state)
        metrics.update(width=float(width), rows=float(n_rows))
        return metrics

    def _interrupted(self, signum: int, saved: int | None, abandoned: bool = False) -> TrainingInterrupted:
        name = signal.Signals(signum).name
        what = f"abandoned step {self.step + 1}" if abandoned else f"after step {self.step}"
        where = (f"saved step {saved} in {self.checkpointer.directory}; rerun the same command to resume"
                 if saved is not None else f"not saved ({self._latest_text()}); rerun the same command to resume")
        return TrainingInterrupted(f"stopped by {name} {what}: {where}", signum, saved)

    def _train_step(self, info: RunInfo, wandb_run: WandbRun, every: int, end: int) -> None:
        """One step of the loop: the update (or a skipped one), evaluation, metrics, checkpoint."""
        c = self.config
        phase = self._phase_of(self.step)
        if phase != self.phase:
            self._make_optimizer(phase)
            self._maybe_reference()
        self._applied = False
        try:
            if phase == "sft":
                scalars, hists = self.sft_step(), {}
                text = f"nll {scalars['sft/nll']:.3f}"
            else:
                scalars, hists = self.grpo_step()
                info.rewards.append(scalars["reward/mean"])
                text = f"reward {scalars['reward/mean']:.3f} live {scalars['grpo/live_rows']}"
        except _SkipStep as skip:
            self.skipped_nonfinite += 1
            log.warning("step %d (%s): non-finite %s; step skipped (train.skip_nonfinite)", self.step + 1, phase, skip)
            scalars, hists = {"train/nonfinite": str(skip)}, {}
            text = f"skipped: non-finite {skip}"
        if self.skip_nonfinite:
            scalars["train/skipped_nonfinite"] = self.skipped_nonfinite
        self.step += 1
        self._applied = False
        if every and (self.step % every == 0 or self.step == self.total_steps):
            scalars.update(self.evaluate())
            info.evaluations.append({"step": self.step, "phase": phase,
                                     **{k: v for k, v in scalars.items() if k.startswith(("eval/", "eval_train/"))}})
            text += f" eval turn acc {scalars['eval/turn_accuracy']:.2f}"
        if self.step % c.train.log_every == 0 or self.step == end or "eval/turn_accuracy" in scalars:
            self.metrics.write({"step": self.step, "phase": phase, **scalars})
            wandb_run.log(self.step, scalars, hists)
        self._stop.hold = True  # a save is not abandoned half-way
        try:
            self._save(force=self._phase_of(self.step) != phase or self.step == self.total_steps)
        finally:
            self._stop.hold = False
        if self.step == self.sft_steps and c.mode == "grpo":
            self._maybe_reference()
        self._bar_text = text

    # ------------------------------------------------------------------ evaluation

    def evaluate(self) -> dict[str, Any]:
        """Held-out turns through the evaluator (eval.*), and the run's own training turns when
        eval.train_turns asks (eval_train/*); scalars for the metrics log, a report file per set."""
        out = {}
        for prefix, evaluation, name in (("eval", self.evaluation, "step"),
                                         ("eval_train", self.train_evaluation, "train_step")):
            if evaluation is None:
                continue
            report = evaluation.run(self.policy)
            m = report.overall("complete") if report.overall("complete").turns else report.overall("all")
            out.update({f"{prefix}/turn_accuracy": m.turn_accuracy, f"{prefix}/call_accuracy": m.call_accuracy,
                        f"{prefix}/success_rate": m.success_rate, f"{prefix}/turns": m.turns})
            report.save_json(self.workdir / "eval" / f"{name}_{self.step:06d}.json")
        return out

    # ------------------------------------------------------------------ the loop

    def run(self, progress: bool = True, stop_after: int | None = None) -> RunInfo:
        """Trains to the configured total step count (or `stop_after` more steps); returns RunInfo."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        c = self.config
        start = self.restore_or_init()
        wandb_run = WandbRun(self.workdir, c.to_dict(), c.wandb.project, c.wandb.entity,
                             c.wandb.run_name or self.workdir.name, c.wandb.mode)
        end = self.total_steps if stop_after is None else min(self.total_steps, start + stop_after)
        info = RunInfo(self.workdir, self.checkpointer.directory, self.metrics.path, wandb_run.location, start)
        every = int(c.eval.every) if self.evaluation is not None else 0
        if every and start == 0 and c.eval.at_start:
            record = {"step": 0, "phase": "start", **self.evaluate()}
            self.metrics.write(record)
            wandb_run.log(0, {k: v for k, v in record.items() if k.startswith(("eval/", "eval_train/"))})
            info.evaluations.append(record)
        columns = [TextColumn("[bold]{task.fields[phase]}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn()]
        stop = self._stop = _StopSignals()
        try:
            with stop, Progress(*columns, disable=not progress, transient=False) as bar:
                task_id = bar.add_task("train", total=self.total_steps, completed=start, phase=self._phase_of(start),
                                       info="")
                while self.step < end and stop.signum is None:
                    self._train_step(info, wandb_run, every, end)
                    bar.update(task_id, completed=self.step, phase=self._phase_of(self.step - 1),
                               info=self._bar_text)
                if stop.signum is not None:
                    stop.hold = True
                    self._save(force=True)
                    raise self._interrupted(stop.signum, self.step)
        except _Abandon:
            saved = None
            if not self._applied:  # no update of the abandoned step was applied: the state is that of self.step
                stop.hold = True
                self._save(force=True)
                saved = self.step
            raise self._interrupted(stop.signum or signal.SIGTERM, saved, abandoned=True) from None
        finally:
            self.metrics.close()
            self.checkpointer.close()
            wandb_run.finish()
        info.final_step = self.step
        return info


def _task_id(task: Any) -> str:
    if isinstance(task, tuple):
        sample, turn = task
        return f"{sample.sample_id}@{turn.turn}"
    return task.sample_id

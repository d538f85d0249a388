"""The training loop: SFT warm start then GRPO, with checkpoints, metrics, evaluation and a progress bar.

The loop only runs the algorithm (tasks -> the rollout game -> reward -> advantages -> update ->
checkpoint / metrics) and owns the optimizer, checkpoints and metrics. The model at run time is the
`Policy` (generation, log-probs, parameters) with its KL `Reference`; the game played is the
registered one `rollout.game` names (`toolrl.games`: its tasks, rollout and reward input); the math is
in `grpo.py` and `steps.py`, the update's layouts and paths in `update.py`, the run's tasks in
`run_data.py`, what stops a step in `guards.py`. The names other modules import from here
(`load_training_samples`, `prepare_data`, `pack_rows`, `bucket`, `NonFiniteError`, ...) stay importable.

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

import contextlib
import dataclasses
import logging
import signal
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from toolrl import games
from toolrl.eval.evaluator import config_matcher
from toolrl.policy.checkpoint import Checkpointer
from toolrl.policy.reference import Reference
from toolrl.policy.runtime import Policy, SamplingSettings
from toolrl.rewards.registry import RewardOutput
from toolrl.rewards.types import ErrorCode, RewardWeights
from toolrl.rl import grpo, steps
from toolrl.rl.guards import (STORAGE_ERRNOS, Abandon, CheckpointSaveError, NonFiniteError,  # noqa: F401
                              SkipStep, StopSignals, TrainingInterrupted, checked_first, first_nonfinite,
                              storage_problem)
from toolrl.rl.metrics import MetricsLog, WandbRun, eval_scalars
from toolrl.rl.processes import NoMetrics, NoWandb, agreed_signal, global_norm
from toolrl.rl.progress import StepRecords
from toolrl.rl.rollout import RolloutBatch, golden_episode
# Re-exported: other modules and the tests import these names from the trainer.
from toolrl.rl.run_data import (TaskStream, TrainingData, build_missing_data, load_training_samples,  # noqa: F401
                                prepare_data)
from toolrl.rl.update import GrpoUpdate, bucket, pack_rows, row_buckets  # noqa: F401

log = logging.getLogger(__name__)

ERROR_NAMES = {int(c): c.name.lower() for c in ErrorCode if int(c) >= 0}
N_ERROR_CODES = max(ERROR_NAMES) + 1

# A reward function for tests and custom objectives: rollout batch -> RewardOutput.
RewardFn = Callable[[RolloutBatch], RewardOutput]


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




class Trainer(GrpoUpdate):
    """Owns the loop, the optimizer, the data streams and the run's side effects (checkpoints, metrics,
    W&B, the bar); the update itself is `GrpoUpdate` (update.py), the model's passes the `Policy`'s.

    Args:
      config: the validated ConfigDict.
      policy: the run-time policy (model placed on `mesh`).
      env: the tool environment (the episode game's judge; its view renders responses in prompts).
      data: the fitted tasks (`prepare_data`).
      mesh: device mesh or None.
      reward_fn: overrides the registry reward (tests).
      evaluation: a `toolrl.eval.evaluator.Evaluation` run every eval.every steps (None: no evaluation).
      train_evaluation: an `Evaluation` of the run's own training tasks (eval.train_turns), run beside it
        and logged as eval_train/* (None: none).
      matcher: the evaluator's call matcher (a game that needs one, e.g. turn); default built from config.eval.
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
        self.game = games.rollout_game(config)
        self.matcher = matcher
        if self.game.needs_matcher and matcher is None:  # the evaluator's matcher, without its LLM judge
            self.matcher = config_matcher(config)
        self.checkpointer = Checkpointer(self.workdir / "checkpoints", config.train.save_every, config.train.keep)
        # Several processes (a multi-host job) run the same loop; process 0 alone writes the run's records
        # (metrics, W&B, evaluation reports), every process joins the checkpoint saves (orbax's collectives).
        self.writes_records = jax.process_index() == 0
        self.metrics = MetricsLog(self.workdir / "metrics.jsonl") if self.writes_records else NoMetrics(
            self.workdir / "metrics.jsonl")
        self.step = 0
        self.phase = ""
        self.skip_nonfinite = bool(config.train.get("skip_nonfinite", False))
        self.skipped_nonfinite = 0  # steps skipped for a non-finite value (train.skip_nonfinite)
        self._applied = False  # an update of the step in progress was applied (self.step not yet advanced)
        self.optimizer: nnx.Optimizer | None = None
        self.reference: Reference | None = None  # the frozen KL reference (grpo.beta > 0, from GRPO's start)
        self._compiled: dict[Any, Any] = {}
        self._bar_text = ""
        self._stop = StopSignals()

    # ------------------------------------------------------------------ state

    def _phase_of(self, step: int) -> str:
        """Phase of the update that produces step + 1."""
        return "sft" if step < self.sft_steps else "grpo"

    def _make_optimizer(self, phase: str) -> None:
        c = self.config
        lr = c.sft.learning_rate if phase == "sft" else c.optim.learning_rate
        with jax.set_mesh(self.mesh) if self.mesh is not None else contextlib.nullcontext():
            from toolrl.models.lora import has_lora

            self.optimizer = steps.make_optimizer(self.model, lr, c.optim.warmup_steps, c.optim.weight_decay,
                                                  c.optim.b1, c.optim.b2, c.optim.grad_clip,
                                                  wrt=nnx.LoRAParam if has_lora(self.model) else nnx.Param)
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
            raise SkipStep(bad)
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
            norm = float(global_norm(params))  # one reduction: cheap next to a save
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
        """Restores the latest checkpoint of the workdir (or starts at step 0); returns the step.

        A fresh run starts from the policy's parameters as loaded (`Policy.from_config` restores
        ``model.init_checkpoint``, the one place it is restored)."""
        if self.checkpointer.latest_step() is None:
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
        self.reference = Reference.frozen_at(self.policy, self.workdir / "reference", save=self.step == self.sft_steps)

    def _get(self, name: Any, build: Callable[[], Any]) -> Any:
        if name not in self._compiled:
            self._compiled[name] = build()
        return self._compiled[name]

    # ------------------------------------------------------------------ reward

    def _registry_reward(self, batch: RolloutBatch) -> RewardOutput:
        c = self.config.reward
        weights = RewardWeights(atomic=c.atomic_weight, orchestration=c.orchestration_weight)
        kwargs = {"paper_compat": c.paper_compat} if c.family == "paper" and c.paper_compat != "ours" else {}
        return self.game.score_rewards(c.family, c.mode, batch.inputs, weights=weights, **kwargs)

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
        self._nonfinite(checked_first(m, "sft/"), "sft")
        self._applied = True
        nnx.update((self.model, self.optimizer), new_state)
        dt = time.perf_counter() - t0
        return {"sft/" + k: v for k, v in m.items()} | {
            "time/step_s": dt, "time/tokens_per_s": float(attn.sum()) / dt, "time/width": width,
            "data/tasks": ",".join(s.sample_id for s in samples)}

    def _rollout(self, key: jax.Array) -> tuple[RolloutBatch, list[Any]]:
        """The step's tasks played by the rollout game (`Game.rollout`)."""
        c = self.config
        r = c.rollout
        tasks = self.rl_stream.take(self._grpo_position(self.step), r.prompts_per_step)
        context = games.RolloutContext(self.policy, self.sampling, max_turns=r.max_turns, max_seq_len=r.max_seq_len,
                                       tool_view=c.data.tool_view, render=self.render, env=self.env,
                                       matcher=self.matcher)
        return self.game.rollout(tasks, r.group_size, context, key), tasks

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
        kept = np.flatnonzero(live)
        metrics = self._update([batch.rows[i] for i in kept], advantages[live],
                               None if batch.logprobs is None else [batch.logprobs[i] for i in kept])
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
            "data/tasks": ",".join(self.game.task_id(t) for t in tasks),
            # Per prompt, in data/tasks' order: a prompt's reward across steps is a learning curve that
            # the step mean (a new draw of prompts each step) is not.
            "data/group_rewards": ",".join(f"{x:.4f}" for x in reward.reshape(-1, g).mean(axis=1)),
        }
        histograms = {"hist/advantages": advantages, "hist/rewards": reward,
                      "hist/error_codes": np.repeat(np.arange(N_ERROR_CODES), counts),
                      # W&B's completions table: what each rollout said and what it earned
                      "table/completions": [(self.game.task_id(tasks[i // g]), float(reward[i]), "\n".join(texts))
                                            for i, texts in enumerate(batch.texts)]}
        return scalars, histograms

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
        except SkipStep as skip:
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
            wandb_run.log(self.step, scalars, hists, phase=phase)
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
            out.update(eval_scalars(report, prefix))
            if self.writes_records:
                report.save_json(self.workdir / "eval" / f"{name}_{self.step:06d}.json")
        return out

    # ------------------------------------------------------------------ the loop

    def run(self, progress: bool = True, stop_after: int | None = None) -> RunInfo:
        """Trains to the configured total step count (or `stop_after` more steps); returns RunInfo."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        c = self.config
        start = self.restore_or_init()
        wandb_run = WandbRun(self.workdir, c.to_dict(), c.wandb.project, c.wandb.entity,
                             c.wandb.run_name or self.workdir.name, c.wandb.mode) if self.writes_records else NoWandb()
        end = self.total_steps if stop_after is None else min(self.total_steps, start + stop_after)
        info = RunInfo(self.workdir, self.checkpointer.directory, self.metrics.path, wandb_run.location, start)
        every = int(c.eval.every) if self.evaluation is not None else 0
        # A stop during an evaluation (a run's last one takes many minutes on a CPU) loses it: the update
        # before it was saved, so a resumed run goes on past it. Redo an evaluation due at the restored step.
        lost = bool(start and (start % every == 0 or start == self.total_steps)) if every else False
        lost = lost and start not in self.metrics.evaluated_steps()
        if every and ((start == 0 and c.eval.at_start) or lost):
            StepRecords(self.total_steps).line(f"evaluating step {start} ({'lost to a stop' if lost else 'eval.at_start'})")
            record = {"step": start, "phase": self._phase_of(start - 1) if lost else "start", **self.evaluate()}
            self.metrics.write(record)
            wandb_run.log(start, {k: v for k, v in record.items() if k.startswith(("eval/", "eval_train/"))},
                          phase=record["phase"])
            info.evaluations.append(record)
        columns = [TextColumn("[bold]{task.fields[phase]}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn()]
        stop = self._stop = StopSignals()
        try:
            with stop, Progress(*columns, disable=not progress, transient=False) as bar:
                task_id = bar.add_task("train", total=self.total_steps, completed=start, phase=self._phase_of(start),
                                       info="")
                records = StepRecords(self.total_steps, start)  # one line per step when stdout is a file
                while self.step < end and agreed_signal(stop.signum) is None:
                    self._train_step(info, wandb_run, every, end)
                    bar.update(task_id, completed=self.step, phase=self._phase_of(self.step - 1),
                               info=self._bar_text)
                    records.step(self.step, self._phase_of(self.step - 1), self._bar_text)
                signum = agreed_signal(stop.signum)
                if signum is not None:
                    stop.hold = True
                    self._save(force=True)
                    raise self._interrupted(signum, self.step)
        except Abandon:
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


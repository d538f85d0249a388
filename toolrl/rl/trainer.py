"""The training loop: SFT warm start then GRPO, with checkpoints, metrics and a progress bar.

Global step numbering: steps 1..sft.num_steps are SFT updates, the next train.num_steps are GRPO
updates. A checkpoint at step s holds the state after s updates plus the loop's position; the
metrics record of step s is written before that checkpoint, and on resume records beyond the
restored step are dropped, so the log has each step exactly once.

All randomness of step s is `fold_in(PRNGKey(seed), s)` and the data of step s is a fixed slice of
the seeded `TaskStream`, so a resumed run repeats exactly what the killed run would have done.
Side effects (files, W&B, the bar) live here; the math is in `grpo.py` and `steps.py`.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from toolrl.rewards.types import ErrorCode, RewardWeights
from toolrl.rl import grpo, rewards, steps
from toolrl.rl.chat_format import ChatFormat
from toolrl.policy.checkpoint import Checkpointer, load_params, save_params
from toolrl.rl.data import Task, TaskStream
from toolrl.rl.generate import make_generate
from toolrl.rl.metrics import MetricsLog, WandbRun
from toolrl.rl.rollout import RolloutBatch, golden_episode, pack, rollout

ERROR_NAMES = {int(c): c.name.lower() for c in ErrorCode if int(c) >= 0}

# A reward function for tests and custom objectives: (rollout batch, tasks repeated G times) -> RewardBatch.
RewardFn = Callable[[RolloutBatch], rewards.RewardBatch]


def to_host(x: Any) -> np.ndarray:
    """A (possibly multi-host sharded) array as a full numpy array on this host."""
    if jax.process_count() > 1 and isinstance(x, jax.Array) and not x.is_fully_addressable:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


@dataclasses.dataclass
class RunInfo:
    """Where a run's artifacts are."""

    workdir: Path
    checkpoints: Path
    metrics: Path
    wandb: str
    final_step: int


class Trainer:
    """Owns the model, optimizer, data stream and the run's side effects.

    Args:
      config: the validated ConfigDict.
      model: the nnx policy (already placed on `mesh`).
      fmt: chat format over the model's tokenizer.
      env: the tool environment.
      tasks: training tasks.
      mesh: device mesh or None.
      reward_fn: overrides the registry reward (tests); default scores by config.reward.
    """

    def __init__(self, config: ml_collections.ConfigDict, model: nnx.Module, fmt: ChatFormat, env: Any,
                 tasks: list[Task], mesh: Mesh | None, reward_fn: RewardFn | None = None):
        self.config = config
        self.model = model
        self.fmt = fmt
        self.env = env
        self.mesh = mesh
        self.stream = TaskStream(tasks, config.seed)
        self.reward_fn = reward_fn or self._registry_reward
        self.workdir = Path(config.workdir).absolute()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.sft_steps = int(config.sft.num_steps) if config.mode in ("grpo", "sft") else 0
        self.total_steps = self.sft_steps + (int(config.train.num_steps) if config.mode == "grpo" else 0)
        self.loss_config = grpo.LossConfig(
            epsilon_low=config.grpo.epsilon_low, epsilon_high=config.grpo.epsilon_high, beta=config.grpo.beta,
            aggregation=config.grpo.aggregation, max_tokens=config.rollout.max_seq_len)
        self.checkpointer = Checkpointer(self.workdir / "checkpoints", config.train.save_every, config.train.keep)
        self.metrics = MetricsLog(self.workdir / "metrics.jsonl")
        self.step = 0
        self.phase = ""
        self.optimizer: nnx.Optimizer | None = None
        self.ref_state: Any = None
        self._compiled: dict[str, Any] = {}

    # ------------------------------------------------------------------ state

    def _phase_of(self, step: int) -> str:
        """Phase of the update that produces step + 1."""
        return "sft" if step < self.sft_steps else "grpo"

    def _make_optimizer(self, phase: str) -> None:
        c = self.config
        lr = c.sft.learning_rate if phase == "sft" else c.optim.learning_rate
        ctx = jax.set_mesh(self.mesh) if self.mesh is not None else _null()
        with ctx:
            self.optimizer = steps.make_optimizer(self.model, lr, c.optim.warmup_steps, c.optim.weight_decay,
                                                  c.optim.b1, c.optim.b2, c.optim.grad_clip)
        if self.mesh is not None:
            from toolrl.models.sharding import shard_state

            nnx.update(self.optimizer, shard_state(nnx.state(self.optimizer), self.mesh))
        self.phase = phase
        self._compiled.clear()

    def _train_state(self) -> Any:
        return nnx.state((self.model, self.optimizer))

    def _meta(self) -> dict[str, Any]:
        return {"step": self.step, "phase": self.phase, "seed": int(self.config.seed),
                "sft_position": self._sft_position(self.step), "grpo_position": self._grpo_position(self.step)}

    def _sft_position(self, step: int) -> int:
        return min(step, self.sft_steps) * int(self.config.sft.batch_size)

    def _grpo_position(self, step: int) -> int:
        return max(step - self.sft_steps, 0) * int(self.config.rollout.prompts_per_step)

    def restore_or_init(self) -> int:
        """Restores the latest checkpoint of the workdir (or starts at step 0); returns the step."""
        latest = self.checkpointer.latest_step()
        if latest is None:
            if self.config.model.init_checkpoint:
                self._load_init_checkpoint(self.config.model.init_checkpoint)
            self._make_optimizer(self._phase_of(0))
            self.metrics.truncate_after(0)
            self._maybe_reference()
            return 0
        meta = self.checkpointer.restore_meta(latest)
        self._make_optimizer(meta["phase"])
        state, meta = self.checkpointer.restore(latest, self._train_state())
        nnx.update((self.model, self.optimizer), state)
        self.step = int(meta["step"])
        if meta["sft_position"] != self._sft_position(self.step) or meta["grpo_position"] != self._grpo_position(self.step):
            raise ValueError(f"checkpoint {latest} data position {meta} does not match this config's batch sizes")
        if self._phase_of(self.step) != self.phase:  # saved at the end of SFT: GRPO starts fresh
            self._make_optimizer(self._phase_of(self.step))
        self.metrics.truncate_after(self.step)
        self._maybe_reference()
        return self.step

    def _load_init_checkpoint(self, workdir: str) -> None:
        """Model parameters from another run's latest checkpoint (e.g. an SFT run)."""
        other = Checkpointer(Path(workdir) / "checkpoints", 1, 1)
        latest = other.latest_step()
        if latest is None:
            raise FileNotFoundError(f"model.init_checkpoint={workdir!r} has no checkpoint")
        phase = other.restore_meta(latest)["phase"]
        self._make_optimizer(phase)
        state, _ = other.restore(latest, self._train_state())
        nnx.update((self.model, self.optimizer), state)
        other.close()

    def _maybe_reference(self) -> None:
        """The frozen KL reference = the policy when GRPO starts (after SFT), saved once to disk."""
        if self.config.mode != "grpo" or self.config.grpo.beta == 0.0 or self.step < self.sft_steps:
            return
        path = self.workdir / "reference"
        params = nnx.state(self.model, nnx.Param)
        if self.step == self.sft_steps and not path.exists():
            save_params(path, params)
        self.ref_state = load_params(path, params) if path.exists() else jax.tree.map(jnp.copy, params)

    # ------------------------------------------------------------------ compiled pieces

    def _get(self, name: str, build: Callable[[], Any]) -> Any:
        if name not in self._compiled:
            self._compiled[name] = build()
        return self._compiled[name]

    def _generate_fn(self) -> Callable:
        r = self.config.rollout
        graphdef, _ = nnx.split(self.model)
        gen = self._get("generate", lambda: make_generate(graphdef, r.max_new_tokens, r.temperature, r.top_k,
                                                          self.fmt.end_id, self.fmt.pad_id))

        def generate(tokens: np.ndarray, mask: np.ndarray, key: jax.Array):
            batch = steps.to_device_batch({"tokens": tokens, "mask": mask}, self.mesh)
            out = gen(nnx.state(self.model), batch["tokens"], batch["mask"], key)
            return tuple(to_host(x) for x in out)

        return generate

    def _registry_reward(self, batch: RolloutBatch) -> rewards.RewardBatch:
        c = self.config.reward
        weights = RewardWeights(atomic=c.atomic_weight, orchestration=c.orchestration_weight)
        return rewards.score(c.family, c.mode, batch.inputs, weights)

    # ------------------------------------------------------------------ steps

    def sft_step(self) -> dict[str, Any]:
        """One SFT update on golden episodes; returns its metrics."""
        c = self.config
        t0 = time.perf_counter()
        tasks = self.stream.take(self._sft_position(self.step), c.sft.batch_size)
        rows = [golden_episode(t, self.env, self.fmt, c.data.tool_view, c.rollout.max_seq_len) for t in tasks]
        # Fixed width (max_seq_len): one compiled SFT step for the whole run.
        tokens, attn, loss_mask = pack(rows, self.fmt.pad_id, max_len=c.rollout.max_seq_len)
        batch = steps.to_device_batch({"tokens": tokens, "attention_mask": attn, "loss_mask": loss_mask}, self.mesh)
        graphdef, state = nnx.split((self.model, self.optimizer))
        fn = self._get("sft", lambda: steps.make_sft_step(graphdef, self.mesh, state))
        new_state, m = fn(state, batch)
        nnx.update((self.model, self.optimizer), new_state)
        m = {k: float(to_host(v)) for k, v in m.items()}
        dt = time.perf_counter() - t0
        return {"sft/" + k: v for k, v in m.items()} | {"time/step_s": dt, "time/tokens_per_s": float(attn.sum()) / dt,
                                                         "data/tasks": ",".join(t.task_id for t in tasks)}

    def grpo_step(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """One GRPO step: rollout, reward, advantages, update(s). Returns (scalars, histograms)."""
        c = self.config
        g = c.rollout.group_size
        key = jax.random.fold_in(jax.random.PRNGKey(c.seed), self.step)
        tasks = self.stream.take(self._grpo_position(self.step), c.rollout.prompts_per_step)
        t0 = time.perf_counter()
        batch = rollout(tasks, g, self._generate_fn(), self.env, self.fmt, key, mode=c.rollout.mode,
                        max_turns=c.rollout.max_turns, max_new_tokens=c.rollout.max_new_tokens,
                        max_seq_len=c.rollout.max_seq_len, tool_view=c.data.tool_view,
                        multiple=c.rollout.pad_multiple)
        t1 = time.perf_counter()
        scored = self.reward_fn(batch)
        advantages, degenerate = grpo.group_advantages(jnp.asarray(scored.reward), g, scale_by_std=c.grpo.scale_by_std)
        valid = ~np.asarray(degenerate) if c.grpo.mask_degenerate else np.ones(len(scored.reward), bool)
        t2 = time.perf_counter()
        host = {"tokens": batch.tokens, "attention_mask": batch.attention_mask, "loss_mask": batch.loss_mask,
                "advantages": np.asarray(advantages), "valid": valid}
        device = steps.to_device_batch(host, self.mesh)
        use_old = c.grpo.num_iterations > 1
        graphdef, state = nnx.split((self.model, self.optimizer))
        if use_old or self.ref_state is not None:
            mgraph, mstate = nnx.split(self.model)
            logp_fn = self._get("logp", lambda: steps.make_logprob_fn(mgraph, self.mesh, mstate))
            if use_old:
                device["old_logp"] = logp_fn(mstate, device["tokens"], device["attention_mask"])
            if self.ref_state is not None:
                ref_model_state = nnx.merge_state(mstate, self.ref_state)
                device["ref_logp"] = logp_fn(ref_model_state, device["tokens"], device["attention_mask"])
        fn = self._get("grpo", lambda: steps.make_grpo_step(graphdef, self.loss_config, self.mesh, state, use_old,
                                                                    c.grpo.micro_batches))
        metrics: dict[str, Any] = {}
        for _ in range(c.grpo.num_iterations):
            state, m = fn(state, device)
            metrics = {k: float(to_host(v)) for k, v in m.items()}
        nnx.update((self.model, self.optimizer), state)
        t3 = time.perf_counter()
        adv = np.asarray(advantages)
        degenerate_info = grpo.degenerate_summary(degenerate, g)
        policy_tokens = int(batch.loss_mask.sum())
        scalars: dict[str, Any] = {
            "reward/mean": float(scored.reward.mean()), "reward/std": float(scored.reward.std()),
            "reward/max": float(scored.reward.max()), "reward/min": float(scored.reward.min()),
            **{f"reward/{k}": float(v.mean()) for k, v in scored.levels.items()},
            **{f"errors/{ERROR_NAMES.get(i, i)}": int(n) for i, n in enumerate(scored.error_counts)},
            **{f"grpo/{k}": v for k, v in metrics.items()},
            "grpo/advantage_abs_mean": float(np.abs(adv).mean()),
            "grpo/degenerate_groups": int(degenerate_info["degenerate_groups"]),
            "grpo/degenerate_fraction": float(degenerate_info["degenerate_fraction"]),
            "rollout/turns_mean": float(batch.n_turns.mean()),
            "rollout/truncated_fraction": float(batch.truncated.mean()),
            "rollout/generated_tokens": int(batch.generated_tokens),
            "rollout/calls_mean": float(np.mean([len(x.calls) for x in batch.inputs])),
            "time/rollout_s": t1 - t0, "time/reward_s": t2 - t1, "time/update_s": t3 - t2, "time/step_s": t3 - t0,
            "time/generate_tokens_per_s": batch.generated_tokens / max(t1 - t0, 1e-9),
            "time/train_tokens_per_s": float(batch.attention_mask.sum()) * c.grpo.num_iterations / max(t3 - t2, 1e-9),
            "time/policy_tokens": policy_tokens,
            "data/tasks": ",".join(t.task_id for t in tasks),
        }
        histograms = {"hist/advantages": adv, "hist/rewards": scored.reward,
                      "hist/error_codes": np.repeat(np.arange(len(scored.error_counts)), scored.error_counts)}
        return scalars, histograms

    # ------------------------------------------------------------------ the loop

    def run(self, progress: bool = True, stop_after: int | None = None) -> RunInfo:
        """Trains to the configured total step count (or `stop_after` more steps); returns RunInfo."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        c = self.config
        start = self.restore_or_init()
        wandb_run = WandbRun(self.workdir, c.to_dict(), c.wandb.project, c.wandb.entity,
                             c.wandb.run_name or self.workdir.name, c.wandb.mode)
        end = self.total_steps if stop_after is None else min(self.total_steps, start + stop_after)
        columns = [TextColumn("[bold]{task.fields[phase]}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn()]
        with Progress(*columns, disable=not progress, transient=False) as bar:
            task_id = bar.add_task("train", total=self.total_steps, completed=start, phase=self._phase_of(start), info="")
            while self.step < end:
                phase = self._phase_of(self.step)
                if phase != self.phase:
                    self._make_optimizer(phase)
                    self._maybe_reference()
                if phase == "sft":
                    scalars, hists = self.sft_step(), {}
                    info = f"nll {scalars['sft/nll']:.3f}"
                else:
                    scalars, hists = self.grpo_step()
                    info = f"reward {scalars['reward/mean']:.3f} kl {scalars['grpo/kl']:.4f}"
                self.step += 1
                if self.step % c.train.log_every == 0 or self.step == end:
                    record = {"step": self.step, "phase": phase, **scalars}
                    self.metrics.write(record)
                    wandb_run.log(self.step, scalars, hists)
                if self._phase_of(self.step) != phase or self.step == self.total_steps:
                    self.checkpointer.save(self.step, self._train_state(), self._meta())
                else:
                    self.checkpointer.maybe_save(self.step, self._train_state(), self._meta())
                if self.step == self.sft_steps and c.mode == "grpo":
                    self._maybe_reference()
                bar.update(task_id, completed=self.step, phase=phase, info=info)
        self.metrics.close()
        self.checkpointer.close()
        location = wandb_run.location
        wandb_run.finish()
        return RunInfo(self.workdir, self.checkpointer.directory, self.metrics.path, location, self.step)


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

"""Seconds per GRPO step (rollout, reward, update separately) and tokens/s at a config; and, with
--compare, the old update path against the new one on the same batches.

    python benchmarks/train_step.py                       # configs/grpo.py (SmolLM2-135M, CPU sizing)
    python benchmarks/train_step.py --bench_config=configs/tiny.py --steps=5
    python benchmarks/train_step.py --compare             # old vs new update path, SmolLM2-135M

Without --compare: runs `--warmup` GRPO steps (compilation) then `--steps` measured steps in a scratch
workdir, with no SFT warm start, checkpoints or W&B, and prints one JSON line of means over the
measured steps.

--compare (one process, same model, same batches): turn mode (4 real scored turns from the bundled
data, 8 rollouts each with synthetic completions of the golden turn's length x U(0.5, 1.5), a
second round after the golden responses when the turn has one; one degenerate group and one
truncated row) and episode mode (configs/grpo.py budgets: 2 samples x 4 rollouts, the golden
episode with its assistant turns replaced by random tokens of about their length, cut after a
random number of turns). Paths:

  old        the update before issue 11: every row (dead ones masked), padded to rollout.max_seq_len,
             LM head + log-softmax at every position (`steps.make_grpo_step`);
  positions  `Trainer._update` with grpo.loss_positions_only (live rows, bucketed width, the head
             only at loss positions);
  +prefix    ... and grpo.shared_prefix (a group's prompt run once).

Each path: a warm-up compilation (ahead of time, not run), then the median of `--repeats` updates
(`--old_repeats` for the old path). Every path runs one row (a packed row for +prefix) per backward
pass with model.remat (`--remat`), so a 1,344-token row fits beside other jobs on a 24 GB CPU machine.
A whole old turn-mode update takes many minutes on 2 CPU cores, so by default only `--max_chunks`
of an update's equal micro-batches run and the rest is extrapolated (they have the same shapes and
run one after the other; the optimizer's time is counted with each timed part, which overstates
every path a little and understates the speedup). With
--max_chunks=0 whole updates run and every path's first one starts from the same parameters, so
their grad norms must agree. Other jobs on the machine make the numbers noisy.
Columns: update seconds; policy tokens (loss tokens of the live rows) per second; model FLOPs/s —
3 x the forward FLOPs the batch needs (live rows unpadded, causal attention, head at loss
positions), the same numerator for every path — and executed FLOPs/s (what the path computes:
padding, dense masked attention, its head positions), both as a share of a measured fp32 matmul
peak. Last line: `speedup: X.Xx` = old / best new update seconds, turn mode.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

from absl import app, flags

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("WANDB_MODE", "disabled")

FLAGS = flags.DEFINE_string("bench_config", "configs/grpo.py", "config file")
STEPS = flags.DEFINE_integer("steps", 3, "measured GRPO steps")
WARMUP = flags.DEFINE_integer("warmup", 1, "unmeasured steps (compilation)")
COMPARE = flags.DEFINE_bool("compare", False, "old vs new update path on the same batches")
REPEATS = flags.DEFINE_integer("repeats", 3, "--compare: measured updates per new path (median)")
OLD_REPEATS = flags.DEFINE_integer("old_repeats", 3, "--compare: measured updates of the old path (median)")
REMAT = flags.DEFINE_bool("remat", True, "--compare: model.remat (activation memory of a 1,344-token row "
                          "fits beside other jobs; every path recomputes alike)")
MODES = flags.DEFINE_list("modes", ["turn", "episode"], "--compare: rollout modes")
PATHS = flags.DEFINE_list("paths", ["old", "positions", "prefix"], "--compare: paths")
SEED = flags.DEFINE_integer("seed", 0, "--compare: batch seed")
MODEL = flags.DEFINE_string("model", "smollm2_135m", "preset or local HF directory (on a GPU machine without the "
                            "bundled weights: benchmarks/random_weights.py's)")
DTYPE = flags.DEFINE_string("dtype", "float32", "compute dtype (parameters stay float32); the matmul peak is "
                            "measured in it")
ROWS_PER_PASS = flags.DEFINE_integer("rows_per_pass", 1, "--compare: rows per backward pass (0 = the whole "
                                     "batch in one pass, for a GPU)")
MAX_CHUNKS = flags.DEFINE_integer("max_chunks", 1, "--compare: micro-batches actually run per update (the "
                                  "rest extrapolated: same shapes, run one after the other); 0 = all")


def main(argv):
    del argv
    if COMPARE.value:
        return compare()
    import numpy as np

    from toolrl.main import train
    from toolrl.rl.config import config_from_file, validate
    from toolrl.rl.metrics import read_metrics

    config = config_from_file(FLAGS.value)
    with tempfile.TemporaryDirectory() as tmp:
        config.workdir = tmp
        config.model.path = "" if MODEL.value == config.model.preset else MODEL.value
        config.model.dtype = DTYPE.value
        config.sft.num_steps = 0
        config.train.num_steps = WARMUP.value + STEPS.value
        config.train.save_every = 10**9  # the final step still saves once (not part of step times)
        config.train.progress = False
        config.wandb.mode = "disabled"
        validate(config)
        info = train(config)
        records = read_metrics(info.metrics)[WARMUP.value:]
    keys = ["time/rollout_s", "time/reward_s", "time/update_s", "time/step_s", "time/generate_tokens_per_s",
            "time/train_tokens_per_s", "rollout/generated_tokens"]
    out = {k.split("/")[-1]: float(np.mean([r[k] for r in records if k in r])) for k in keys}
    out.update(config=FLAGS.value, measured_steps=len(records),
               batch=config.rollout.prompts_per_step * config.rollout.group_size,
               max_seq_len=config.rollout.max_seq_len, max_new_tokens=config.rollout.max_new_tokens,
               max_turns=config.rollout.max_turns)
    print(json.dumps(out))


# ----------------------------------------------------------------------------- --compare


def matmul_peak(n: int = 2048, repeats: int = 5, dtype: str = "float32") -> float:
    """Measured matmul FLOP/s of this machine in `dtype` (best of `repeats` n x n x n products)."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32).astype(dtype)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        f(a).block_until_ready()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def _random_ids(rng, n: int, vocab: int) -> list[int]:
    return [int(x) for x in rng.integers(200, vocab, max(int(n), 1))]


def turn_batch(config, policy, tasks, render, rng):
    """4 x 8 rows: real scored-turn prompts, synthetic completions of realistic length."""
    import numpy as np

    from toolrl.eval.protocol import turn_messages
    from toolrl.rl.rollout import turn_prompt_ids

    r, view, chat = config.rollout, config.data.tool_view, policy.chat
    vocab = policy.model_config.vocab_size
    # Mixed prompt lengths: scored turns spread over the history depth, that fit the budget.
    order = rng.permutation(len(tasks))
    picked, seen = [], set()
    for i in order:
        s, t = tasks[i]
        if s.sample_id in seen:
            continue
        prompt = turn_prompt_ids(policy, t, view, render)
        if len(prompt) + 2 * r.max_new_tokens > r.max_seq_len:
            continue
        seen.add(s.sample_id)
        picked.append((t, prompt))
        if len(picked) == r.prompts_per_step:
            break
    rows, truncated = [], []
    for t, prompt in picked:
        subs = [turn_messages([sub], render) for sub in t.subturns]
        for g in range(r.group_size):
            ids, flags = list(prompt), [0] * len(prompt)
            for k, messages in enumerate(subs[:2]):
                n = int(len(chat.assistant_ids(messages[0])) * rng.uniform(0.5, 1.5))
                comp = _random_ids(rng, min(n, r.max_new_tokens), vocab)
                ids += comp
                flags += [1] * len(comp)
                if k + 1 < len(subs[:2]):
                    env = chat.env_ids(messages[1:])
                    ids += env
                    flags += [0] * len(env)
            rows.append((ids, flags))
            truncated.append(False)
    truncated[1] = True  # one row cut by max_new_tokens (dropped by mask_truncated)
    reward = rng.uniform(size=len(rows)).astype(np.float32)
    reward[-r.group_size:] = 0.5  # the last group is degenerate
    return rows, reward, np.asarray(truncated)


def episode_batch(config, policy, samples, render, rng):
    """2 x 4 rows: golden episodes with their assistant turns replaced by random tokens, cut after a
    random number of turns, within max_seq_len."""
    import numpy as np

    from toolrl.eval.protocol import turn_messages

    r, view, chat = config.rollout, config.data.tool_view, policy.chat
    vocab = policy.model_config.vocab_size
    rows = []
    candidates = [s for s in samples if len(s.turns) >= 2]
    for i in rng.permutation(len(candidates))[: r.prompts_per_step]:
        s = candidates[i]
        prompt = policy.prompt_ids([{"role": "user", "content": s.query}], s.tools, view)
        for g in range(r.group_size):
            ids, flags = list(prompt), [0] * len(prompt)
            n_turns = int(rng.integers(1, min(len(s.turns), r.max_turns) + 1))
            for k, turn in enumerate(s.turns[:n_turns]):
                messages = turn_messages([turn], render)
                n = int(len(chat.assistant_ids(messages[0])) * rng.uniform(0.7, 1.3))
                comp = _random_ids(rng, min(n, r.max_new_tokens), vocab)
                env = chat.env_ids(messages[1:]) if k + 1 < n_turns else []
                if len(ids) + len(comp) + len(env) > r.max_seq_len:
                    break
                ids += comp + env
                flags += [1] * len(comp) + [0] * len(env)
            rows.append((ids, flags))
    reward = rng.uniform(size=len(rows)).astype(np.float32)
    return rows, reward, np.zeros(len(rows), bool)


def grpo_config(variant):
    """configs/grpo.py's get_config(variant)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "configs" / "grpo.py"
    spec = importlib.util.spec_from_file_location("_bench_grpo_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(variant)


def compare():
    import dataclasses
    import types

    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from toolrl.main import build_environment
    from toolrl.policy.runtime import Policy
    from toolrl.rl import grpo, steps
    from toolrl.rl.trainer import Trainer, TrainingData, load_training_samples, pack_rows, prepare_data

    on_cpu = jax.devices()[0].platform == "cpu"
    peak = matmul_peak(4096 if not on_cpu else 2048, dtype=DTYPE.value)
    print(f"{DTYPE.value} matmul peak: {peak / 1e9:.1f} GFLOP/s ({jax.devices()[0].device_kind}, "
          f"{os.cpu_count()} cores)", flush=True)
    policy = Policy.load(path=MODEL.value, dtype=DTYPE.value, remat=REMAT.value)
    mc = policy.model_config
    linear, quadratic = steps.trunk_costs(mc)
    head = 2.0 * mc.hidden_size * mc.vocab_size
    table, speedup = [], None
    snapshot = None
    for mode in MODES.value:
        config = grpo_config("turn" if mode == "turn" else None)
        if mode == "turn":
            config.rollout.group_size, config.rollout.prompts_per_step = 8, 4
        r = config.rollout
        batch_size = r.prompts_per_step * r.group_size
        # By default one row per backward pass on every path (memory beside other jobs on a 24 GB machine).
        config.grpo.micro_batches = batch_size // ROWS_PER_PASS.value if ROWS_PER_PASS.value else 1
        config.model.dtype = DTYPE.value
        rng = np.random.default_rng(SEED.value)
        env = build_environment(config)
        data = prepare_data(config, policy, load_training_samples(config), env.render, check=False)
        make = turn_batch if mode == "turn" else episode_batch
        rows, reward, truncated = make(config, policy, data.rl, env.render, rng)
        adv, degenerate = grpo.group_advantages(jnp.asarray(reward), r.group_size, scale_by_std=True)
        adv, degenerate = np.asarray(adv), np.asarray(degenerate)
        live = np.asarray([any(f) for _, f in rows]) & ~degenerate & ~truncated
        live_rows = [rows[i] for i in np.flatnonzero(live)]
        n_policy = sum(sum(f) for _, f in live_rows)
        need = 3 * sum(len(ids) * linear + quadratic * len(ids) * (len(ids) + 1) / 2
                       + len(steps.loss_positions(f)) * head for ids, f in live_rows)
        prompts = sorted({next(i for i, x in enumerate(f) if x) for _, f in rows if any(f)})
        print(f"[{mode}] {len(rows)} rows ({int(live.sum())} live), prompt lengths {prompts}, "
              f"row lengths {min(len(i) for i, _ in rows)}..{max(len(i) for i, _ in rows)}, "
              f"{n_policy} policy tokens in live rows", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            config.workdir = tmp
            trainer = Trainer(config, policy, env,
                              TrainingData([], [], None, None), None, matcher=object())
            trainer._make_optimizer("grpo")
            # Same starting parameters for every path (comparable grad norms) when whole updates run.
            snapshot = jax.tree.map(jnp.copy, nnx.state((trainer.model, trainer.optimizer))) \
                if not MAX_CHUNKS.value else None

            def reset():
                if snapshot is not None:
                    nnx.update((trainer.model, trainer.optimizer), jax.tree.map(jnp.copy, snapshot))

            for path in PATHS.value:
                reset()
                t = time.perf_counter()
                if path == "old":
                    width = r.max_seq_len
                    tokens, attn, loss_mask = pack_rows(rows, policy.chat.pad_id, width)
                    host = {"tokens": tokens, "attention_mask": attn, "loss_mask": loss_mask,
                            "advantages": adv.astype(np.float32), "valid": live}
                    micro, shared = int(config.grpo.micro_batches), False
                    shape = f"{len(rows)}x{width}"
                    executed = 3 * len(rows) * (width * linear + quadratic * width * width + (width - 1) * head)
                else:
                    config.grpo.loss_positions_only = True
                    config.grpo.shared_prefix = path == "prefix"
                    host, shared, micro = trainer._packed_batch(live_rows, adv[live], path == "prefix")
                    rr, ss, kk = host["gather"].shape
                    width = host["tokens"].shape[1]
                    shape = f"{rr}x{width}, {ss}x{kk} pos" if shared else f"{rr}x{width}, {kk} pos"
                    if path == "prefix" and not shared:
                        shape += " (no share)"
                    executed = 3 * (rr * (width * linear + quadratic * width * width) + rr * ss * kk * head)
                host_s = time.perf_counter() - t
                n = next(iter(host.values())).shape[0]
                chunks = min(micro, MAX_CHUNKS.value) if MAX_CHUNKS.value else micro
                while micro % chunks:
                    chunks -= 1
                sub = {k: v[: n // micro * chunks] for k, v in host.items()}
                graphdef, state = nnx.split((trainer.model, trainer.optimizer))
                if path == "old":
                    fn = steps.make_grpo_step(graphdef, trainer.loss_config, None, state, False, chunks,
                                              float(r.temperature))
                else:
                    fn = steps.make_packed_grpo_step(graphdef, trainer.loss_config, None, state, False, chunks,
                                                     float(r.temperature), shared)
                t = time.perf_counter()
                compiled = fn.lower(state, steps.to_device_batch(sub, None)).compile()
                compile_s = time.perf_counter() - t
                times, grad_norm = [], None
                for _ in range(OLD_REPEATS.value if path == "old" else REPEATS.value):
                    t = time.perf_counter()
                    state, m = compiled(state, steps.to_device_batch(sub, None))
                    m = {k: float(np.asarray(v)) for k, v in m.items()}
                    times.append(time.perf_counter() - t)
                    grad_norm = grad_norm if grad_norm is not None else m["grad_norm"]
                nnx.update((trainer.model, trainer.optimizer), state)
                # Chunks run one after the other (lax.scan) and cost the same; the optimizer runs once.
                # (The optimizer is counted micro / chunks times: an upper bound on every path.)
                times = [host_s + x * micro / chunks for x in times]
                if chunks < micro:
                    shape += f" [{chunks}/{micro} chunks timed]"
                    grad_norm = float("nan")  # of a part of the batch: not comparable
                sec = float(np.median(times))
                row = dict(mode=mode, path=path, shape=shape, compile_s=compile_s, update_s=sec,
                           policy_tok_s=n_policy / sec, model_flops=need / sec / peak,
                           executed_flops=executed / sec / peak, grad_norm=grad_norm, repeats=len(times))
                table.append(row)
                print(json.dumps(row), flush=True)
        del trainer
    print()
    header = f"{'mode':8} {'path':10} {'rows x width, loss positions':44} {'compile s':>9} {'update s':>9} {'policy tok/s':>12} " \
             f"{'model FLOPs/s':>13} {'exec FLOPs/s':>12} {'grad norm':>11}"
    print(header)
    print("-" * len(header))
    for row in table:
        print(f"{row['mode']:8} {row['path']:10} {row['shape']:44} {row['compile_s']:9.1f} {row['update_s']:9.2f} "
              f"{row['policy_tok_s']:12.1f} {row['model_flops']:12.1%} {row['executed_flops']:12.1%} "
              f"{row['grad_norm']:11.6g}")
    print(f"(update s: median of {REPEATS.value} (old: {OLD_REPEATS.value}) after a warm-up compile (not run); "
          f"with [c/n chunks timed], c of the update's n equal micro-batches ran (with the optimizer) and "
          f"update s = host packing + n/c x their time; FLOPs/s as a share of the {peak / 1e9:.0f} GFLOP/s {DTYPE.value} matmul peak)")
    turn = {row["path"]: row["update_s"] for row in table if row["mode"] == "turn"}
    new = [turn[p] for p in ("positions", "prefix") if p in turn]
    if "old" in turn and new:
        speedup = turn["old"] / min(new)
        print(f"speedup: {speedup:.1f}x")


if __name__ == "__main__":
    app.run(main)

"""Run the reward ablation locally, one run after another, resumable; or report a finished sweep.

    python -m experiments.run_ablation --sweep_dir=runs/ablation            # run (or resume) it
    python -m experiments.run_ablation --sweep_dir=runs/ablation --dry_run  # print the plan
    python -m experiments.run_ablation --sweep_dir=runs/ablation --report   # table of what is done

Runs (see experiments/sweep.py): the zero-shot baseline, then per seed the SFT warm start and one
GRPO run per reward mode (configs/ablations/<mode>.py, paper family) from it. Each run is a
``python -m toolrl.main`` subprocess followed by ``python -m experiments.evaluate_run`` on its final
checkpoint; its results.json is written as soon as it finishes, and a restarted sweep skips finished
runs, so launch it in the background and restart it after an interruption:

    nohup python -m experiments.run_ablation --sweep_dir=runs/ablation > runs/ablation.log 2>&1 &

Defaults are the CPU scale (2 cores, about an hour for 3 seeds): ``--cpu_scale`` adds the
``CPU_OVERRIDES`` below to every training run; turn it off and pass ``--train_override`` for a real
budget. Subprocesses get WANDB_MODE=offline unless W&B mode is set in the environment, and a shared
persistent JAX compilation cache (every run compiles the same programs).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from absl import app, flags

from experiments import sweep

FLAGS = flags.FLAGS
flags.DEFINE_string("sweep_dir", "runs/ablation", "Where the runs go (runs/ is git-ignored).")
flags.DEFINE_list("modes", list(sweep.MODES), "Reward ablation modes.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Training seeds.")
flags.DEFINE_string("family", "paper", "Reward family of the GRPO runs.")
flags.DEFINE_integer("sft_steps", 4, "SFT warm-start steps (once per seed).")
flags.DEFINE_integer("grpo_steps", 3, "GRPO steps per run.")
flags.DEFINE_bool("cpu_scale", True, "Add CPU_OVERRIDES to every training run.")
flags.DEFINE_multi_string("train_override", [], "Extra --config.x=y for every training run (repeatable).")
flags.DEFINE_bool("zero_shot", True, "Also evaluate the untrained model.")
flags.DEFINE_integer("eval_max_turns", 8, "Fixed subset of complete-history eval_100 turns (0 = all 90).")
flags.DEFINE_integer("eval_max_new_tokens", 64, "Greedy tokens per evaluation request.")
flags.DEFINE_integer("eval_batch_size", 8, "Evaluation generation batch.")
flags.DEFINE_integer("eval_max_rounds", 2, "Protocol rounds per scored turn.")
flags.DEFINE_string("eval_synth_dir", "", "Built toolrl_traces TFDS dir: also evaluate its held-out test split.")
flags.DEFINE_integer("eval_synth_max_turns", 16, "Fixed subset of synthesized test turns.")
flags.DEFINE_integer("max_runs", None, "Stop after this many executed runs (sizing).")
flags.DEFINE_bool("dry_run", False, "Print the plan and the commands, run nothing.")
flags.DEFINE_bool("report", False, "Print the results table of the finished runs and exit.")

# The CPU scale (measured on 2 shared cores: a GRPO step of 4 rollouts ~45-85 s, an SFT step ~20-30 s):
# tasks of at most 2 golden calls (15 of the 101 training samples), no distractor tools, one prompt x
# 4 rollouts per step, 48 tokens per turn, episodes cut at 320 tokens (one update program).
CPU_OVERRIDES = (
    "--config.data.max_steps_per_sample=2",
    "--config.data.max_distractors=0",
    "--config.data.tool_view=compact",
    "--config.rollout.group_size=4",
    "--config.rollout.prompts_per_step=1",
    "--config.rollout.max_turns=2",
    "--config.rollout.max_new_tokens=48",
    "--config.rollout.max_seq_len=320",
    "--config.sft.batch_size=2",
    "--config.grpo.micro_batches=2",
    # 5x configs/grpo.py's 2e-6: with 3 GRPO steps the default barely moves the policy.
    "--config.optim.learning_rate=1e-5",
)


def settings_from_flags() -> sweep.SweepSettings:
    overrides = (CPU_OVERRIDES if FLAGS.cpu_scale else ()) + tuple(FLAGS.train_override)
    sweep_dir = str(Path(FLAGS.sweep_dir))
    env = {"JAX_COMPILATION_CACHE_DIR": str(Path(sweep_dir, "jax_cache").absolute()),
           "WANDB_SILENT": "true", "PYTHONUNBUFFERED": "1"}
    if not os.environ.get("WANDB_MODE"):
        env["WANDB_MODE"] = "offline"
    return sweep.SweepSettings(
        sweep_dir=sweep_dir, modes=tuple(FLAGS.modes), seeds=tuple(int(s) for s in FLAGS.seeds),
        family=FLAGS.family, sft_steps=FLAGS.sft_steps, grpo_steps=FLAGS.grpo_steps, train_overrides=overrides,
        eval=sweep.EvalSettings(max_turns=FLAGS.eval_max_turns, max_new_tokens=FLAGS.eval_max_new_tokens,
                                batch_size=FLAGS.eval_batch_size, max_rounds=FLAGS.eval_max_rounds,
                                synth_dir=FLAGS.eval_synth_dir, synth_max_turns=FLAGS.eval_synth_max_turns),
        zero_shot=FLAGS.zero_shot, python=sys.executable, env=env)


def main(argv: list[str]) -> None:
    del argv
    settings = settings_from_flags()
    if FLAGS.report:
        results = sweep.load_results(settings.sweep_dir)
        print(f"{len(results)} finished runs in {settings.sweep_dir}\n")
        print(sweep.markdown_table(results))
        print()
        print(sweep.error_table(results))
        print()
        print(sweep.wall_time_table(results))
        return
    if FLAGS.dry_run:
        for spec in sweep.plan(settings):
            done = "done" if sweep.is_finished(spec.directory(settings.sweep_dir)) else "todo"
            print(f"{spec.name} [{done}]")
            for step, argv in sweep.default_commands(spec, settings):
                print(f"  {step}: {' '.join(argv[1:])}")
        return
    status = sweep.run_sweep(settings, max_runs=FLAGS.max_runs, log=lambda s: print(s, flush=True))
    failed = {k: v for k, v in status.items() if v.startswith(("failed", "blocked"))}
    print(f"sweep: {sum(v == 'done' for v in status.values())} run now, "
          f"{sum(v == 'skipped' for v in status.values())} done before, {len(failed)} failed/blocked, "
          f"{sum(v == 'pending' for v in status.values())} pending", flush=True)
    results = sweep.load_results(settings.sweep_dir)
    print(sweep.markdown_table(results), flush=True)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    app.run(main)

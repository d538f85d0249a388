"""Run a study (the reward ablation by default), resumable run by run; or report it from its result files.

    python -m experiments.run_ablation --study=NAME [--arms=... --seeds=...] [-- --config.x=y ...]
    python -m experiments.run_ablation --study=NAME --dry_run      # the plan and every command
    python -m experiments.run_ablation --study=NAME --report       # tables from the result files alone

The plan (experiments/study/plan.py): the zero-shot model evaluated, the SFT start (trained once), then
seed by seed one GRPO run per arm (``configs/grpo.py:<arm>``, ``--config.seed=S``) from that SFT
checkpoint. Each run is ``python -m toolrl.main`` subprocesses with its own workdir under
``--runs_dir`` (git-ignored); a finished run leaves ``--results_dir/<study>/<run>.json`` (small, meant
to be committed), and a restarted study skips it. Launch it in the background and restart it after
an interruption:

    nohup python -m experiments.run_ablation --study=ablation > runs/ablation.log 2>&1 &

Training and evaluation settings are the config's (configs/grpo.py); change them with ``--config.*``
overrides, passed to every subprocess (``--override=--config.x=y``, repeatable, or everything after
``--``), e.g. ``-- --config.eval.max_turns=0 --config.rollout.group_size=8``. Evaluation settings live
in the config too (``--config.eval.*``); ``--eval_sources=eval_100,synthetic:test`` evaluates the
synthesized test split as well (build it first: python -m toolrl.synth --config=configs/synth.py).
"""

from __future__ import annotations

import sys

from absl import app, flags

from experiments import sweep

FLAGS = flags.FLAGS
flags.DEFINE_string("study", "ablation", "Study name: runs under <runs_dir>/<study>, results under <results_dir>/<study>.")
flags.DEFINE_list("arms", list(sweep.ARMS), "GRPO arms: config variants (configs/grpo.py VARIANTS); '+' combines, "
                  "e.g. turn+binary. Empty: no SFT start and no GRPO runs.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds of the GRPO runs (--config.seed).")
flags.DEFINE_list("arm_seeds", [], "ARM:N pairs: that arm runs only the first N of --seeds, e.g. "
                  "atomic:3,orchestration:3 (empty: every arm every seed).")
flags.DEFINE_string("variants", "", "Variants applied to every run before the arm, e.g. 'paper' (comma-separated).")
flags.DEFINE_string("config_file", "configs/grpo.py", "Training config file.")
flags.DEFINE_integer("sft_seed", 0, "Seed of the SFT start.")
flags.DEFINE_integer("sft_steps", 0, "SFT steps of the SFT start (0 = the config's sft.num_steps).")
flags.DEFINE_integer("grpo_steps", 0, "GRPO steps per run (0 = the config's train.num_steps).")
flags.DEFINE_integer("eval_every", 0, "Evaluate every N GRPO steps (0 = at the start and the end only; -1 = none "
                     "during training: every eval source after it, each in its own process).")
flags.DEFINE_list("eval_sources", [], "Eval sources (config.eval.source values; SOURCE@official for the "
                  "benchmark's own protocol, eval.game=benchmark); the first is evaluated during "
                  "training, the rest after it; empty = the config's eval.source.")
flags.DEFINE_multi_string("override", [], "--config.x=y for every subprocess (repeatable); also: args after --.")
flags.DEFINE_bool("zero_shot", True, "Also evaluate the untrained model.")
flags.DEFINE_string("runs_dir", "runs/studies", "Workdirs and logs (git-ignored; relative = to the repo root).")
flags.DEFINE_string("results_dir", "experiments/results", "Small per-run result files (relative = to the repo root).")
flags.DEFINE_string("baseline_arm", sweep.BASELINE_ARM, "Arm the paired differences are taken to.")
flags.DEFINE_float("confidence", 0.95, "Confidence of the t-intervals.")
flags.DEFINE_string("sft_study", "", "Start the GRPO runs from this other study's finished SFT run (e.g. pilots).")
flags.DEFINE_integer("max_runs", None, "Stop after this many executed runs.")
flags.DEFINE_bool("dry_run", False, "Print the plan and the commands, run nothing.")
flags.DEFINE_bool("report", False, "Rebuild summary.json and report.md from the result files, print the report, exit.")
flags.DEFINE_bool("add_details", False, "Add the evaluation details kept since (per-turn verdicts, per-domain "
                  "counts) to result files written before, read from the runs' files under --runs_dir (nothing "
                  "else changes), then stop or --report.")
flags.DEFINE_string("readme", "", "With --report: also write the compact study table into this file, between "
                    "the study's own study-table markers (e.g. README.md).")
flags.DEFINE_string("readme_comparisons", "", "With --report: also write only the design's comparisons (estimate, "
                    "interval, detectable difference) into this file, between the study's study-comparisons markers.")


def settings_from_flags(extra: list[str]) -> sweep.StudySettings:
    return sweep.StudySettings(
        study=FLAGS.study, arms=tuple(a.replace("+", ",") for a in FLAGS.arms if a),
        seeds=tuple(int(s) for s in FLAGS.seeds), variants=FLAGS.variants, config_file=FLAGS.config_file,
        sft_seed=FLAGS.sft_seed, sft_steps=FLAGS.sft_steps, grpo_steps=FLAGS.grpo_steps,
        eval_every=FLAGS.eval_every, eval_sources=tuple(FLAGS.eval_sources),
        overrides=tuple(FLAGS.override) + tuple(extra), zero_shot=FLAGS.zero_shot, runs_dir=FLAGS.runs_dir,
        results_dir=FLAGS.results_dir, sft_study=FLAGS.sft_study, arm_seeds=arm_seeds(FLAGS.arm_seeds),
        python=sys.executable)


def arm_seeds(pairs: list[str]) -> tuple[tuple[str, int], ...]:
    """--arm_seeds=atomic:3,orchestration:3 -> (("atomic", 3), ("orchestration", 3))."""
    out = []
    for pair in pairs:
        arm, _, n = pair.rpartition(":")
        if not arm or not n.isdigit():
            raise ValueError(f"--arm_seeds entry {pair!r} is not ARM:N")
        out.append((arm.replace("+", ","), int(n)))
    return tuple(out)


def main(argv: list[str]) -> None:
    try:
        settings = settings_from_flags(argv[1:])
    except ValueError as err:  # a bad flag value: one line, exit 2 like any usage error
        print(f"run_ablation: error: {err}", file=sys.stderr)
        sys.exit(2)
    if FLAGS.add_details:
        names = sweep.add_missing_details(settings)
        print(f"evaluation details added to {len(names)} result files: {', '.join(names) or '-'}")
        if not FLAGS.report:
            return
    if FLAGS.report:
        summary, text = sweep.write_summary(settings.results_path(), FLAGS.baseline_arm, FLAGS.confidence)
        print(text)
        print(f"({len(summary['runs'])} result files in {settings.results_path()}; summary.json and report.md rewritten)")
        if FLAGS.readme:
            try:
                tables = sweep.readme_tables(summary, sweep.load_results(settings.results_path()), FLAGS.baseline_arm)
                print(f"study tables written into {sweep.splice_readme(FLAGS.readme, tables, settings.study)}")
            except (OSError, ValueError) as err:
                sys.exit(f"run_ablation: {err}")
        if FLAGS.readme_comparisons:
            try:
                where = sweep.splice_readme(FLAGS.readme_comparisons, sweep.readme_comparisons(summary), settings.study,
                                            kind="comparisons")
                print(f"study comparisons written into {where}")
            except (OSError, ValueError) as err:
                sys.exit(f"run_ablation: {err}")
        return
    if FLAGS.dry_run:
        for spec in sweep.plan(settings):
            done = "done" if sweep.is_finished(spec, settings) else "todo"
            print(f"{spec.name} [{done}] -> {settings.result_file(spec)}")
            for step, cmd in sweep.default_commands(spec, settings):
                print(f"  {step}: {' '.join(cmd[1:])}")
        return
    try:
        status = sweep.run_study(settings, max_runs=FLAGS.max_runs, log=lambda s: print(s, flush=True))
    except sweep.Stopped as stopped:  # the running subprocess got the signal and has ended (saved)
        print(f"run_ablation: {stopped}; rerun the same command to go on", file=sys.stderr, flush=True)
        sys.exit(128 + stopped.signum)
    failed = {k: v for k, v in status.items() if v.startswith(("failed", "blocked"))}
    counts = {k: sum(v.startswith(k) for v in status.values()) for k in ("done", "skipped", "locked", "pending")}
    print(f"study {settings.study}: {counts['done']} run now, {counts['skipped']} done before, "
          f"{len(failed)} failed/blocked, {counts['locked']} left to other workers, {counts['pending']} pending",
          flush=True)
    _, text = sweep.write_summary(settings.results_path(), FLAGS.baseline_arm, FLAGS.confidence)
    print(text, flush=True)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    app.run(main)

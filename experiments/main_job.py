"""The main job's record: run ``python -m toolrl.main --config=configs/grpo.py`` as a user does, and keep
what its end table says with its wall time and peak memory.

    python -m experiments.main_job [--readme=README.md]       # ~12 min on an idle 2-core CPU

Writes ``experiments/results/main_job.json``: the run's ``summary.json`` (training-task and held-out turn
accuracy at the start and the end, fit, rewards), the wall minutes, the peak resident memory of the run
(``getrusage`` of the child), the host's CPU count and load before the run (a loaded machine is slower:
the file says so). With ``--readme`` the README's main-job block (between ``<!-- main-job:start -->`` and
``<!-- main-job:end -->``) is rewritten from the file; a test holds the two equal.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from absl import app, flags

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULT = REPO_ROOT / "experiments" / "results" / "main_job.json"
README_START, README_END = "<!-- main-job:start -->", "<!-- main-job:end -->"
COMMAND = "python -m toolrl.main --config=configs/grpo.py"

FLAGS = flags.FLAGS


def define_flags() -> None:
    flags.DEFINE_string("readme", "", "Also rewrite this README's main-job block from the result file.")
    flags.DEFINE_bool("render_only", False, "Only rewrite the README block from the committed result file.")
    flags.DEFINE_bool("fresh_home", True, "Run with an empty $TOOLRL_HOME (first-use builds counted, as on a "
                      "new machine).")


def run_main_job(workdir: Path, home: Path | None) -> dict:
    """Runs the main job into `workdir` (W&B off) and returns the record. With `home`, the run gets an
    empty $TOOLRL_HOME there, so the time includes what a fresh machine builds on first use (the
    response cache, the natural data)."""
    load = os.getloadavg()[0]
    started = time.perf_counter()
    argv = [sys.executable, "-m", "toolrl.main", "--config=configs/grpo.py", f"--config.workdir={workdir}",
            "--config.wandb.mode=disabled", "--config.train.progress=False"]
    env = dict(os.environ, **({"TOOLRL_HOME": str(home)} if home is not None else {}))
    subprocess.run(argv, cwd=REPO_ROOT, check=True, env=env)
    wall = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
    summary = json.loads((workdir / "summary.json").read_text())
    return {"command": COMMAND, "wall_minutes": round(wall / 60, 2), "peak_rss_gib": round(peak_kib / 2**20, 2),
            "cpus": os.cpu_count(), "load_before": round(load, 2), "fresh_home": home is not None,
            "summary": summary}


def _eval_row(record: dict, prefix: str, name: str) -> str:
    evaluations = record["summary"]["evaluations"]
    first, last = evaluations[0], evaluations[-1]
    turns = first[f"{prefix}/turns"]
    cells = [f"{round(e[f'{prefix}/turn_accuracy'] * turns)}/{turns} (step {e['step']})" for e in (first, last)]
    return f"| turn accuracy, {name} | {cells[0]} | {cells[1]} |"


def readme_block(record: dict) -> str:
    """The README's main-job block, from the result file only."""
    s = record["summary"]
    fit = s["fit"]
    rewards = s["rewards"]
    k = max(1, len(rewards) // 3)
    lines = [
        f"`{record['command']}` on its embedded defaults: {record['wall_minutes']:.1f} min wall on "
        f"{record['cpus']} CPU cores (load {record['load_before']:.1f} before it"
        f"{', first use: the data built within' if record.get('fresh_home') else ''}), peak memory "
        f"{record['peak_rss_gib']:.1f} GiB; SFT {s['sft_steps']} steps then GRPO {s['grpo_steps']} steps on "
        f"{fit['total']} decontaminated natural-query tasks ({fit['fit']}/{fit['total']} fit the budgets). "
        f"Its end table (from `experiments/results/main_job.json`, written by `python -m experiments.main_job`):",
        "",
        "| what | start | end |",
        "|---|---|---|",
        _eval_row(record, "eval_train", "its own training tasks"),
        _eval_row(record, "eval", "held-out eval_100 turns (novel, one per domain)"),
    ]
    if rewards:
        lines.append(f"| mean GRPO reward (first / last {k} steps) | {sum(rewards[:k]) / k:.3f} | "
                     f"{sum(rewards[-k:]) / k:.3f} |")
    return "\n".join(lines) + "\n"


def splice_readme(readme: Path, block: str) -> None:
    text = readme.read_text()
    start, end = text.index(README_START) + len(README_START), text.index(README_END)
    readme.write_text(text[:start] + "\n" + block + text[end:])


def main(argv: list[str]) -> None:
    del argv
    if not FLAGS.render_only:
        with tempfile.TemporaryDirectory(prefix="toolrl_main_job_") as tmp:
            record = run_main_job(Path(tmp) / "run", Path(tmp) / "home" if FLAGS.fresh_home else None)
        RESULT.parent.mkdir(parents=True, exist_ok=True)
        RESULT.write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {RESULT}")
    record = json.loads(RESULT.read_text())
    print(readme_block(record))
    if FLAGS.readme:
        splice_readme(Path(FLAGS.readme), readme_block(record))
        print(f"updated {FLAGS.readme}")


if __name__ == "__main__":
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    define_flags()
    app.run(main)

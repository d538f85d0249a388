"""Evaluate a study's SFT start on the held-out sets and write one small result file per set.

    python -m experiments.eval_start --run=runs/studies/natural/sft/work --study=natural \\
        [--sets=eval_100,eval_100_official,novel_test]

Sets (each a ``toolrl.main --config.mode=eval`` of the run's own model and prompts):

* ``eval_100``: every scored turn of eval_100 with a complete golden history (90), ``turn`` protocol;
* ``eval_100_official``: the same samples under the benchmark's own protocol (free-running, whole samples);
* ``novel_test``: every novel scored turn of the synthesized test split (its required call set is no
  training turn's); ``novel_validation`` likewise for validation (pilots and choices use it, not test).

Each writes ``experiments/results/<study>/sft_start_eval_<set>.json``: turns (or samples), how many were
right, per-domain counts with 95 % Wilson intervals (scipy), error classes, the turn ids, and three outputs
of the model on turns it got wrong. The full evaluation (every output) stays in the run's directory.
A set whose file exists is skipped (delete it to rerun), so an interrupted run resumes set by set.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from absl import app, flags

from toolrl import games

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The command line (defined when run as a script, so tests can import this module's functions)."""
    flags.DEFINE_string("run", "runs/studies/natural/sft/work", "The SFT start's workdir.")
    flags.DEFINE_string("study", "natural", "Results go to experiments/results/<study>/.")
    flags.DEFINE_string("config", "configs/study.py", "The study config (the run's own settings win).")
    flags.DEFINE_list("sets", ["eval_100", "eval_100_official", "novel_test"], "Which evaluation sets.")
    flags.DEFINE_integer("batch_size", 8, "Requests per generate call.")

SETS = {
    "eval_100": ["--config.eval.source=eval_100", "--config.eval.complete_only=True", "--config.eval.game=turn"],
    "eval_100_official": ["--config.eval.source=eval_100", "--config.eval.complete_only=True",
                          "--config.eval.game=benchmark"],
    "novel_test": ["--config.eval.source=synthetic:test", "--config.eval.heldout=novel"],
    "novel_validation": ["--config.eval.source=synthetic:validation", "--config.eval.heldout=novel"],
}


def wilson(right: int, total: int) -> list[float] | None:
    """The 95 % Wilson score interval of right/total (None for no trials)."""
    from experiments.study.stats import wilson_interval

    return wilson_interval(right, total)


def summarize(name: str, results: dict, seconds: float) -> dict:
    """The small record of one evaluation (see the module docstring)."""
    protocol = results["protocol"]  # the game's report name: "turn", or "official" for the benchmark game
    game = games.get(protocol, evaluable=True)
    units = results[game.unit]
    per_sample = game.unit == "samples"  # a sample succeeds; a scored turn is correct
    ok = (lambda u: u["success"]) if per_sample else (lambda u: u["correct"])
    by_domain: dict[str, dict] = {}
    for unit in units:
        entry = by_domain.setdefault(unit["domain"], {"n": 0, "right": 0})
        entry["n"] += 1
        entry["right"] += int(ok(unit))
    for entry in by_domain.values():
        entry["accuracy"] = entry["right"] / entry["n"]
        entry["wilson95"] = wilson(entry["right"], entry["n"])
    right = sum(int(ok(u)) for u in units)
    errors: dict[str, int] = {}
    for unit in units:
        for kind in unit.get("errors", []) or unit.get("call_errors", []):
            errors[kind] = errors.get(kind, 0) + 1
        if per_sample:
            errors[f"outcome:{unit['outcome']}"] = errors.get(f"outcome:{unit['outcome']}", 0) + 1
    wrong = [u for u in units if not ok(u)]
    examples = [{"id": f"{u['sample_id']}#{u.get('turn', '')}", "output": (u.get("texts") or [""])[0][:600],
                 "errors": u.get("errors", u.get("call_errors", []))} for u in wrong[:: max(1, len(wrong) // 3)][:3]]
    settings = results["settings"]
    return {
        "name": name,
        "summary": {"protocol": protocol, "unit": game.unit, game.unit: len(units), "right": right,
                    "accuracy": right / len(units) if units else None, "wilson95": wilson(right, len(units)),
                    "source": settings.get("source"), "heldout": settings.get("heldout")},
        "by_domain": dict(sorted(by_domain.items())),
        "errors": dict(sorted(errors.items(), key=lambda kv: -kv[1])),
        "examples": examples,
        "turn_ids": settings.get("turn_ids") or [u["sample_id"] for u in units],
        "settings": {k: v for k, v in settings.items() if k not in ("turn_ids", "policy_stats")},
        "wall_seconds": seconds,
    }


def training_record(run: Path) -> dict:
    """What the SFT start's run did, from its own files: steps, NLL at the start and the end (mean of the
    first and last 10 steps), seconds of steps, and the settings that define it."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r.get("phase") == "sft"]
    config = json.loads((run / "config.json").read_text())
    head, tail = rows[:10], rows[-10:]
    return {
        "run": str(run), "steps": rows[-1]["step"] if rows else 0,
        "nll_first10_mean": sum(r["sft/nll"] for r in head) / max(1, len(head)),
        "nll_last10_mean": sum(r["sft/nll"] for r in tail) / max(1, len(tail)),
        "step_seconds_total": sum(r["time/step_s"] for r in rows),
        "settings": {"learning_rate": config["sft"]["learning_rate"], "batch_size": config["sft"]["batch_size"],
                     "num_steps": config["sft"]["num_steps"], "train_file": config["data"]["train_file"],
                     "synth_stamp": config["data"].get("synth_stamp"), "max_seq_len": config["rollout"]["max_seq_len"],
                     "max_steps_per_sample": config["data"]["max_steps_per_sample"], "seed": config["seed"]},
    }


def main(argv: list[str]) -> None:
    del argv
    out_dir = REPO_ROOT / "experiments" / "results" / FLAGS.study
    out_dir.mkdir(parents=True, exist_ok=True)
    run = REPO_ROOT / FLAGS.run if not Path(FLAGS.run).is_absolute() else Path(FLAGS.run)
    record = dict(training_record(run), run=FLAGS.run)  # as given: the same file on every machine
    (out_dir / "sft_start_training.json").write_text(json.dumps(record, indent=2) + "\n")
    for name in FLAGS.sets:
        if name not in SETS:
            raise SystemExit(f"unknown set {name!r}; known: {', '.join(SETS)}")
        target = out_dir / f"sft_start_eval_{name}.json"
        if target.exists():
            print(f"{name}: {target} exists, skipped")
            continue
        output = Path(FLAGS.run).parent / f"eval_{name}"
        command = [sys.executable, "-m", "toolrl.main", f"--config={FLAGS.config}", "--config.mode=eval",
                   f"--config.eval.checkpoint={FLAGS.run}", f"--config.eval.output_dir={output}",
                   "--config.eval.max_turns=0", f"--config.eval.batch_size={FLAGS.batch_size}", *SETS[name]]
        print(f"{name}: {' '.join(command[1:])}", flush=True)
        start = time.perf_counter()
        subprocess.run(command, cwd=REPO_ROOT, check=True)
        results = json.loads((output / "eval_results.json").read_text())
        record = summarize(name, results, time.perf_counter() - start)
        target.write_text(json.dumps(record, indent=2, ensure_ascii=True) + "\n")
        print(f"{name}: {record['summary']['right']}/{record['summary'].get('turns', record['summary'].get('samples'))}"
              f" -> {target}", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    define_flags()
    app.run(main)

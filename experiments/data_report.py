"""The study data's report: does the training data pose the benchmark's task, and are the held-out turns unseen?

    python -m experiments.data_report [--config=configs/study.py] [--study=natural]

Writes ``experiments/results/<study>/data_report.json`` (committed with the study):

* ``step_list_share``: training queries written as numbered step lists (:func:`toolrl.synth.query_writer.is_step_list`);
* ``coverage``: domain x (training turns, eval_100 turns), function x (training calls, eval_100 calls), and what
  the decontaminated cache cannot cover (:mod:`toolrl.data.coverage`);
* ``novel``: per split (synthesized validation and test, eval_100), scored turns and novel turns per domain;
* ``query_overlap``: word 5-gram and template-family overlap of training queries with eval_100's;
* ``synthesis``: the synthesis record (settings, query-writer counts, shortfalls) and the data's stamp;
* ``sft_start``: the SFT start's evaluations, read from ``sft_start_eval_*.json`` beside it when present
  (``experiments/eval_start.py`` writes them).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from absl import app, flags
from ml_collections import config_flags

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

FLAGS = flags.FLAGS
_CONFIG = config_flags.DEFINE_config_file("config", str(REPO_ROOT / "configs" / "study.py"), "study config")
flags.DEFINE_string("study", "natural", "experiments/results/<study>/ gets data_report.json")


def build_report(config) -> dict:
    from toolrl.data import paths
    from toolrl.data.coverage import coverage_tables, novel_counts, query_overlap
    from toolrl.data.golden import load_samples
    from toolrl.data.provenance import read_stamp, require_stamp
    from toolrl.data.workflows import load_workflow_templates
    from toolrl.env.cache import ResponseCache
    from toolrl.rl.trainer import load_training_samples
    from toolrl.synth.pool import tool_domains
    from toolrl.synth.query_writer import is_step_list

    d = config.data
    require_stamp(d)
    train = load_training_samples(config)
    eval_100 = load_samples("eval_100", d.data_dir or None)
    templates = load_workflow_templates(paths.data_file(paths.WORKFLOW_TEMPLATES, d.data_dir or None))
    domains = tool_domains(templates, sorted({c.function for s in [*train, *eval_100] for c in s.calls}))
    stamp = read_stamp(d.synth_dir) if d.synth_dir else None
    cache_functions: list[str] = []
    if stamp and stamp.get("cache"):
        cache_file = Path(d.synth_dir).parent / stamp["cache"]
        if cache_file.exists():
            cache_functions = sorted(ResponseCache(cache_file).functions())
    novel = {"eval_100": novel_counts(train, eval_100, domains)}
    for split in ("validation", "test"):
        try:
            heldout = load_samples(f"synthetic:{split}", d.data_dir or None, synth_dir=d.synth_dir or None)
        except FileNotFoundError:
            continue
        novel[f"synthetic:{split}"] = novel_counts(train, heldout, domains)
    synthesis_file = Path(d.synth_dir) / "toolrl_traces" / "synthesis.json" if d.synth_dir else None
    return {
        "train_file": d.train_file,
        "training_samples": len(train),
        "training_sources": dict(sorted(_count(s.source for s in train).items())),
        "step_list_share": sum(is_step_list(s.query) for s in train) / len(train),
        "query_chars_mean": sum(len(s.query) for s in train) / len(train),
        "eval_100_query_chars_mean": sum(len(s.query) for s in eval_100) / len(eval_100),
        "coverage": coverage_tables(train, eval_100, domains, cache_functions),
        "novel": novel,
        "query_overlap": query_overlap(train, eval_100),
        "synthesis": json.loads(synthesis_file.read_text()) if synthesis_file and synthesis_file.exists() else None,
        "stamp": stamp,
    }


def _count(items) -> dict:
    out: dict = {}
    for item in items:
        out[item] = out.get(item, 0) + 1
    return out


def main(argv: list[str]) -> None:
    del argv
    out_dir = REPO_ROOT / "experiments" / "results" / FLAGS.study
    report = build_report(_CONFIG.value)
    starts = {}
    for path in sorted(out_dir.glob("sft_start_eval_*.json")):
        record = json.loads(path.read_text())
        starts[record["name"]] = record["summary"]
    if starts:
        report["sft_start"] = starts
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "data_report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k in ("training_samples", "step_list_share")}))
    print("coverage:", json.dumps(report["coverage"]["domains"]))
    print("not trained:", report["coverage"]["eval_functions_not_in_training"])
    print("novel:", json.dumps({k: (v["turns"], v["novel"]) for k, v in report["novel"].items()}))
    print("query overlap:", json.dumps({k: v for k, v in report["query_overlap"].items() if "example" not in k}))
    print(f"wrote {out_dir / 'data_report.json'}")


if __name__ == "__main__":
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    app.run(main)

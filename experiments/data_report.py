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


def define_flags() -> None:
    """The command line (defined when run as a script, so tests can import this module's functions)."""
    config_flags.DEFINE_config_file("config", str(REPO_ROOT / "configs" / "study.py"), "study config")
    flags.DEFINE_string("study", "natural", "experiments/results/<study>/ gets data_report.json")
    flags.DEFINE_string("readme", "", "Also rewrite this README's natural-data section from the report.")


def load_starts(out_dir: Path) -> dict:
    """set name -> the SFT start's result record (``sft_start_eval_<set>.json``), in a fixed order."""
    order = ["eval_100", "eval_100_official", "novel_test", "novel_validation"]
    records = {json.loads(p.read_text())["name"]: json.loads(p.read_text())
               for p in sorted(out_dir.glob("sft_start_eval_*.json"))}
    return {name: records[name] for name in sorted(records, key=lambda n: (order.index(n) if n in order else 99, n))}


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
    report = build_report(FLAGS.config)
    starts = load_starts(out_dir)
    if starts:
        report["sft_start"] = {name: record["summary"] for name, record in starts.items()}
        training = out_dir / "sft_start_training.json"
        if training.exists():
            report["sft_start"]["training"] = json.loads(training.read_text())
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "data_report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k in ("training_samples", "step_list_share")}))
    print("coverage:", json.dumps(report["coverage"]["domains"]))
    print("not trained:", report["coverage"]["eval_functions_not_in_training"])
    print("novel:", json.dumps({k: (v["turns"], v["novel"]) for k, v in report["novel"].items()}))
    print("query overlap:", json.dumps({k: v for k, v in report["query_overlap"].items() if "example" not in k}))
    print(f"wrote {out_dir / 'data_report.json'}")
    if FLAGS.readme:
        splice_readme(Path(FLAGS.readme), readme_section(report, starts))
        print(f"updated {FLAGS.readme}")



README_START, README_END = "<!-- natural-data:start -->", "<!-- natural-data:end -->"


def readme_section(report: dict, starts: dict | None = None) -> str:
    """The README's account of the study data (and the SFT start's evaluations), from the report alone."""
    cov, nov, qo = report["coverage"], report["novel"], report["query_overlap"]
    rows = "\n".join(
        f"  | {d} | {v['training_turns']} | {v['eval_turns']} | "
        f"{nov.get('synthetic:test', {}).get('by_domain', {}).get(d, {}).get('novel', 0)} | "
        f"{nov.get('synthetic:validation', {}).get('by_domain', {}).get(d, {}).get('novel', 0)} |"
        for d, v in cov["domains"].items())
    untrained = ", ".join(f"`{f}`" for f in cov["eval_functions_not_in_training"])
    text = f"""**The training data** (`configs/study.py`: synthesized train split + the decontaminated bfcl_training
samples, at most 6 calls; {report['training_samples']} samples, {report['training_sources'].get('synthetic:train', 0)} synthesized):
- Numbered step-list queries: **{100 * report['step_list_share']:.0f} %** (was 100 %). Mean query length
  {report['query_chars_mean']:.0f} characters (eval_100: {report['eval_100_query_chars_mean']:.0f}).
- Query decontamination: **{qo['training_queries_sharing_a_template_family']}** training queries share a template family with an
  eval_100 query (family: the text with every value, number, month and proper noun masked;
  `toolrl/data/coverage.py`). The longest word run any training query shares with any eval_100 query is
  {qo['longest_shared_word_run']} words; the most word 5-grams one pair shares is {qo['most_word_5grams_one_pair_shares']}.
- Call decontamination: no training turn's call set, and no training call, is an eval_100 golden
  call (`contamination.json`, same method as the first study).
- Coverage (scored turns with a complete golden history; held-out = novel turns only):

  | domain | training turns | eval_100 turns | novel test turns | novel validation turns |
  |---|---|---|---|---|
{rows}

  {len(cov['eval_functions_not_in_training'])} functions that eval_100's scored turns require are never called in training: {untrained}
  ({cov['eval_turns_needing_an_untrained_function']} of {sum(v['eval_turns'] for v in cov['domains'].values())} turns need one). Of these, {len(cov['eval_functions_not_in_cache'])} have no response at all in
  the decontaminated cache (built from bfcl_training without eval_100's calls): hotels are the cache's
  gap, which no sampling can fill.
- Held-out sets: **{nov.get('synthetic:test', {}).get('novel', 0)} novel test turns** and {nov.get('synthetic:validation', {}).get('novel', 0)} novel validation turns (of
  {nov.get('synthetic:test', {}).get('turns', 0)} and {nov.get('synthetic:validation', {}).get('turns', 0)} scored turns); all {nov['eval_100']['novel']} of eval_100's {nov['eval_100']['turns']} scored turns are novel. Evaluation
  records the turn ids it used; eval_100 subsets are drawn stratified by domain with a seed
  (`eval.max_turns`, `eval.subset_seed`), never the first N in file order (eval_100's first 48 complete
  turns held no Attraction turn).
"""
    if starts:
        text += "\n**The SFT start on the new data** (from `sft_start_eval_*.json`; 95 % Wilson intervals)"
        training = report.get("sft_start", {}).get("training")
        if training:
            text += (f": SmolLM2-135M, {training['steps']} SFT steps of one golden episode each (lr "
                     f"{training['settings']['learning_rate']:g}, seed {training['settings']['seed']}), NLL "
                     f"{training['nll_first10_mean']:.3f} -> {training['nll_last10_mean']:.3f} (means of the first and last "
                     f"10 steps), {training['step_seconds_total'] / 60:.0f} min of steps on the 2-core CPU")
        text += ":\n\n"
        text += "| set | protocol | unit | right / total | accuracy | 95 % interval |\n|---|---|---|---|---|---|\n"
        for name, record in starts.items():
            s = record["summary"]
            total = s.get("turns", s.get("samples"))
            low, high = s["wilson95"] or (0, 0)
            text += (f"| {name} | {s['protocol']} | {s['unit']} | {s['right']} / {total} | {100 * s['accuracy']:.1f} % | "
                     f"{100 * low:.1f}–{100 * high:.1f} % |\n")
        text += "\nPer domain:\n\n| set | " + " | ".join(sorted({d for r in starts.values() for d in r["by_domain"]})) + " |\n"
        domains = sorted({d for r in starts.values() for d in r["by_domain"]})
        text += "|---|" + "---|" * len(domains) + "\n"
        for name, record in starts.items():
            cells = []
            for d in domains:
                entry = record["by_domain"].get(d)
                cells.append(f"{entry['right']}/{entry['n']} ({100 * entry['wilson95'][0]:.0f}–{100 * entry['wilson95'][1]:.0f} %)"
                             if entry else "–")
            text += f"| {name} | " + " | ".join(cells) + " |\n"
        text += "\nError classes of the misses:\n\n"
        for name, record in starts.items():
            errors = ", ".join(f"{k} {v}" for k, v in list(record["errors"].items())[:8])
            text += f"- {name}: {errors}\n"
    return text


def splice_readme(readme: Path, section: str) -> None:
    text = readme.read_text()
    start, end = text.index(README_START) + len(README_START), text.index(README_END)
    readme.write_text(text[:start] + "\n" + section + text[end:])


if __name__ == "__main__":
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    define_flags()
    app.run(main)

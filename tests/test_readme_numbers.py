"""The figures the README and the guides quote come from committed result files.

* Blocks between ``<!-- numbers:NAME:start -->`` and ``<!-- numbers:NAME:end -->`` are generated from
  result files by the renderers below; ``python tests/test_readme_numbers.py --write`` rewrites them.
* Study tables (``<!-- study-table:begin STUDY ...``) equal what the study runner builds from
  ``experiments/results/STUDY/`` (rewritten by ``python -m experiments.run_ablation --study=STUDY
  --report --readme=FILE``).
* The README quotes no result outside those blocks (percentages, ± intervals, right/total counts),
  except in the main job's block, which the main job's result file fills.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "experiments" / "results"
BLOCK = re.compile(r"<!-- numbers:(?P<name>[\w-]+):start -->\n(?P<body>.*?)<!-- numbers:(?P=name):end -->", re.S)


def _json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _rel(path: Path) -> str:
    return f"`{path.relative_to(ROOT)}`"


def memorisation() -> str:
    """The memorisation check, from experiments/results/memorisation.json."""
    path = RESULTS / "memorisation.json"
    m = _json(path)
    return (f"Measured ({_rel(path)}): {len(m['samples'])} training samples of the main job's data (the natural "
            f"synthesized traces: {', '.join(m['samples'])}), "
            f"{m['turns']} scored turns, {m['sft_steps']} SFT steps of {m['sft_batch_size']} episode at lr "
            f"{m['learning_rate']:g}, NLL {m['nll_first']:.3f} → {m['nll_last']:.1e}: **{m['turns_right']}/{m['turns']} "
            f"turns right ({100 * m['turn_accuracy']:.0f} %), call accuracy {100 * m['call_accuracy']:.0f} %, success "
            f"rate {100 * m['success_rate']:.0f} %**; {m['train_seconds'] / 60:.0f} min of SFT steps and "
            f"{m['eval_seconds']:.0f} s of evaluation on the 2-core CPU.\n")


def _turns_cell(end: dict) -> str:
    """"right/turns turns (acc %; 95 % Wilson low-high %)" of a study run's end-of-run entry."""
    from scipy.stats import binomtest

    total = end["turns"]
    right = round(end["turn_accuracy"] * total)
    interval = binomtest(right, total).proportion_ci(0.95, method="wilson")
    return (f"{right}/{total} turns ({100 * right / total:.1f} %; 95 % Wilson "
            f"{100 * interval.low:.1f}–{100 * interval.high:.1f} %)")


def _arms_cell(summary: dict, source: str) -> str:
    from experiments.sweep import ROW_LABELS, fmt_ci

    end = summary["sources"][source]["end"]
    cells = []
    for row in summary["train"]:
        value = end.get(row, {}).get("turn_accuracy")
        if value:
            cells.append(f"{ROW_LABELS.get(row, row)} {fmt_ci(value).split(' (n=')[0]} %")
    return "; ".join(cells)


def results() -> str:
    """The README's results at a glance: the memorisation check, the natural SFT start, the natural study."""
    mem_path = RESULTS / "memorisation.json"
    m = _json(mem_path)
    natural = RESULTS / "natural"
    start = _json(natural / "sft.json")
    ends = {source: entry["end"] for source, entry in start["eval"].items()}
    study = natural / "summary.json"
    summary = _json(study)
    runs = sum(len(t["seeds"]) for row, t in summary["train"].items() if row not in ("sft", "zero_shot"))
    planned = sum(summary["design"]["seeds"].values())
    rows = [
        ("the memorisation check: SFT on a few training samples, then the evaluator on them",
         f"{m['turns_right']}/{m['turns']} turns right after {m['sft_steps']} SFT steps", _rel(mem_path)),
        (f"the natural study's SFT start ({start['steps']} steps), novel synthesized test turns",
         _turns_cell(ends["synthetic:test"]), _rel(natural / "sft.json")),
        ("the same start, eval_100, turn protocol", _turns_cell(ends["eval_100"]), _rel(natural / "sft.json")),
        ("the same start, eval_100, the benchmark's own protocol",
         f"{100 * ends['eval_100@official']['success_rate']:.1f} % of samples solved; "
         f"{100 * ends['eval_100@official']['turn_accuracy']:.1f} % of {ends['eval_100@official']['turns']} turns right",
         _rel(natural / "sft.json")),
        (f"the `natural` reward study so far ({runs} of {planned} planned GRPO runs), novel synthesized test turn "
         "accuracy, mean ± 95 % t half width over seeds", _arms_cell(summary, "synthetic:test"), _rel(study)),
        ("the same runs, eval_100 turn accuracy (turn protocol)", _arms_cell(summary, "eval_100"), _rel(study)),
    ]
    lines = ["| result | number | from |", "|---|---|---|"]
    lines += [f"| {what} | {number} | {source} |" for what, number, source in rows]
    return "\n".join(lines) + "\n"


def plans() -> str:
    """GRPO plans of the paper's scale, from experiments/results/plans.json (python -m experiments.plans)."""
    path = RESULTS / "plans.json"
    gib = 2 ** 30
    rows = _json(path)
    lines = [f"From {_rel(path)} (`python -m experiments.plans`; bf16, 4,096-token rows, 64 rollouts per step, "
             "full fine-tuning or LoRA rank 16 on attention and MLP; XLA's memory analysis per device; time at "
             "40 % MFU):", "",
             "| model | update | devices | trainable | optimizer state | update peak | rollout peak | memory | fits "
             "| step |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for p in rows:
        update = f"LoRA r={p['lora']['rank']}" if p.get("lora") else "full"
        lines.append(f"| {p['model']} | {update} | {p['num_devices']} x {p['device']['name']} | "
                     f"{p['trainable_count'] / 1e6:,.1f}M | {p['optimizer_bytes'] / gib:.2f} GiB | "
                     f"{p['update_peak'] / gib:.1f} GiB | {p['rollout_peak'] / gib:.1f} GiB | "
                     f"{p['capacity'] / gib:.1f} GiB | {'yes' if p['fits'] else 'no'} | "
                     f"{p['step_seconds']['step']:.1f} s |")
    return "\n".join(lines) + "\n"


def lora() -> str:
    """Full fine-tuning against LoRA, from benchmarks/results/lora.json (python benchmarks/bench_lora.py)."""
    path = ROOT / "benchmarks" / "results" / "lora.json"
    b = _json(path)
    mib = 2 ** 20
    lines = [f"From {_rel(path)} (`{b['command']}`; {b['preset']} shapes, {b['rows']} rows of {b['width']} tokens, "
             f"rank {b['rank']}, {b['cpus']} CPU cores; seconds are medians of {b['repeats']} updates each, full and "
             f"LoRA alternating; memory is XLA's analysis of the compiled update, the state donated; peak = arguments + "
             f"outputs - aliased + temporaries"
             + (f"; {b['load_note']}" if b.get("load_note") else "") + "):", "",
             "| update | seconds | trainable | AdamW state | XLA arguments | outputs | temporaries | peak |",
             "|---|---|---|---|---|---|---|---|"]
    for name, label in (("full", "full"), ("lora", "LoRA")):
        r, m = b[name], b[name]["memory"]
        lines.append(f"| {label} | {r['seconds']:.2f} s | {r['trainable'] / 1e6:.1f}M | {r['moment_bytes'] / mib:.0f} MiB | "
                     f"{m['argument'] / mib:.0f} MiB | {m['output'] / mib:.0f} MiB | {m['temp'] / mib:.0f} MiB | "
                     f"{m['peak'] / mib:.0f} MiB |")
    lines += ["", f"LoRA / full time: {b['lora_over_full_seconds']:.2f}x (the base's forward and backward through the "
              "activations still run; the frozen weights get no gradient and no moments)."]
    return "\n".join(lines) + "\n"


RENDERERS: dict[str, Callable[[], str]] = {"memorisation": memorisation, "results": results, "plans": plans,
                                           "lora": lora}
# Where each block must appear (at least there).
HOMES = {"results": "README.md", "memorisation": "docs/evaluation.md", "plans": "docs/training.md", "lora": "docs/performance.md"}


def checked_files() -> list[Path]:
    """The README, the guides in docs/ and the study logs."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "experiments").glob("*/README.md"))]


def rewrite(text: str) -> str:
    return BLOCK.sub(lambda m: f"<!-- numbers:{m['name']}:start -->\n{RENDERERS[m['name']]()}"
                               f"<!-- numbers:{m['name']}:end -->", text)


def test_generated_blocks_equal_the_result_files():
    seen = set()
    for path in checked_files():
        text = path.read_text(encoding="utf-8")
        for block in BLOCK.finditer(text):
            name = block["name"]
            assert name in RENDERERS, f"{path}: unknown numbers block {name!r}"
            assert block["body"] == RENDERERS[name](), (
                f"{path.relative_to(ROOT)}: block {name!r} differs from its result files; "
                "run python tests/test_readme_numbers.py --write")
            seen.add((name, str(path.relative_to(ROOT))))
    for name, home in HOMES.items():
        assert (name, home) in seen, f"{home} has no numbers:{name} block"


def test_study_tables_equal_the_committed_result_files():
    from experiments.sweep import load_results, readme_markers, readme_tables, summarize

    found = 0
    for path in checked_files():
        text = path.read_text(encoding="utf-8")
        for study in re.findall(r"<!-- study-table:begin (\S+) ", text):
            first, last = readme_markers(study)
            body = text[text.index(first) + len(first):text.index(last)]
            runs = load_results(RESULTS / study)
            design_file = RESULTS / study / "design.json"  # written before the runs; its planned MDDs are in the table
            design = json.loads(design_file.read_text(encoding="utf-8")) if design_file.is_file() else None
            assert body == "\n" + readme_tables(summarize(runs, design=design), runs), f"{path.relative_to(ROOT)}: study {study}"
            found += 1
    assert found >= 2  # decontaminated and long36


def test_study_comparisons_equal_the_committed_result_files():
    """The README's short form of a study (``--readme_comparisons``): each comparison's estimate, interval
    and detectable difference, as the runner builds them from the study's files and design.json now."""
    from experiments.sweep import load_results, readme_comparisons, readme_markers, summarize

    found = 0
    for path in checked_files():
        text = path.read_text(encoding="utf-8")
        for study in re.findall(r"<!-- study-comparisons:begin (\S+) ", text):
            first, last = readme_markers(study, "comparisons")
            body = text[text.index(first) + len(first):text.index(last)]
            design_file = RESULTS / study / "design.json"
            design = json.loads(design_file.read_text(encoding="utf-8")) if design_file.is_file() else None
            assert body == "\n" + readme_comparisons(summarize(load_results(RESULTS / study), design=design)), \
                f"{path.relative_to(ROOT)}: study {study}"
            found += 1
    assert found >= 1  # the natural study in the README


def _prose(text: str) -> str:
    """The README without code blocks, generated blocks, study tables and the main job's block."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    text = BLOCK.sub("", text)
    text = re.sub(r"<!-- study-(table|comparisons):begin.*?<!-- study-\1:end \S+ -->", "", text, flags=re.S)
    text = re.sub(r"<!-- natural-data:start -->.*?<!-- natural-data:end -->", "", text, flags=re.S)
    return re.sub(r"<!-- main-job:start -->.*?<!-- main-job:end -->", "", text, flags=re.S)


def test_the_readme_quotes_results_only_from_generated_blocks():
    prose = _prose((ROOT / "README.md").read_text(encoding="utf-8"))
    figures = re.findall(r"[^\s|]*\d\s?%|±|\b\d+\s?/\s?\d+\b", prose)
    assert not figures, f"README figures outside generated blocks: {figures}"


def test_the_readme_is_a_guide_of_at_most_20_kb():
    assert len((ROOT / "README.md").read_bytes()) <= 20_000


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/test_readme_numbers.py --write   (rewrites every numbers block)")
    sys.path.insert(0, str(ROOT))
    for file in checked_files():
        old = file.read_text(encoding="utf-8")
        new = rewrite(old)
        if new != old:
            file.write_text(new, encoding="utf-8")
            print(f"rewrote {file.relative_to(ROOT)}")

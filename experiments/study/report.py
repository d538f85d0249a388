"""The study's tables: report.md, the README's study block, and summary.json rebuilt from the result files.

Everything here is text made from :func:`experiments.study.stats.summarize` (and, for the raw
per-run counts, the result dicts themselves); :func:`write_summary` is the one place that writes
``summary.json``, ``report.md`` and ``curves.png`` of a study.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from experiments.study.collect import load_results
from experiments.study.comparisons import TOO_FEW
from experiments.study.files import dotted, read_json, resolve, write_json_atomic
from experiments.study.plan import BASELINE_ARM, CURVES_FILE, EVAL_METRICS, REPORT_FILE, SUMMARY_FILE
from experiments.study.plot import plot_curves
from experiments.study.power import DESIGN_FILE
from experiments.study.stats import SINGLE_KINDS, arm_order, end_value, start_entry, summarize, turn_flips


def fmt_ci(stat: Mapping[str, Any], scale: float = 100.0, digits: int = 1, sign: bool = False) -> str:
    """"mean ± half (n=k)"; "mean (n=1)" without an interval; "–" without values."""
    if not stat or not stat.get("n") or stat.get("mean") is None:
        return "–"
    value = f"{scale * stat['mean']:{'+' if sign else ''}.{digits}f}"
    if stat.get("half_width") is None:
        return f"{value} (n={stat['n']})"
    return f"{value} ± {scale * stat['half_width']:.{digits}f} (n={stat['n']})"


ROW_LABELS = {"zero_shot": "zero-shot", "sft": "SFT start"}
METRIC_LABELS = {"turn_accuracy": "turn acc", "call_accuracy": "call acc", "success_rate": "success"}


def design_lines(design: Mapping[str, Any] | None) -> list[str]:
    """The design the runs were planned with (design.json): held-out sizes, seeds, detectable differences."""
    if not design:
        return []
    seeds = ", ".join(f"{arm} {n}" for arm, n in design["seeds"].items())
    lines = ["", "## Design (planned before the runs)", "",
             f"Held out: {design['heldout_novel_turns']} novel synthesized test turns; eval_100: "
             f"{design['eval_100_turns']} scored turns, {design['eval_100_samples']} samples. Seeds: {seeds}. "
             f"Minimum detectable differences at α = {design['alpha']:g}, power {design['power']:g}:", "",
             "| comparison | points |", "|---|---|"]
    lines += [f"| {name} | {value:.1f} |" for name, value in design["min_detectable_difference_points"].items()]
    return lines


def _points(value: float | None, sign: bool = True) -> str:
    return "–" if value is None else f"{value:{'+' if sign else ''}.1f}"


def _comparison_cells(row: Mapping[str, Any], short: bool = False) -> list[str]:
    """One comparison's cells; ``short`` (the README's form): no seed SD, and the reading without the
    detectable difference, which its own column gives."""
    seeds = f"{row['n']}" if row["reference"] == "start" else f"{row['n']} vs {row['n_reference']}"
    interval = row["interval_points"]
    cells = [row["comparison"], seeds, _points(row["estimate_points"]),
             "–" if interval is None else f"{interval[0]:+.1f} to {interval[1]:+.1f}",
             _points(row["seed_sd_points"], sign=False), _points(row["mdd_planned_points"], sign=False),
             _points(row["mdd_observed_points"], sign=False), fmt_flips(row["flips"]), row["reading"]]
    if short:
        reading = "too few seeds" if row["reading"] == TOO_FEW else row["reading"].split(";")[0]
        cells = cells[:4] + cells[5:-1] + [reading]
    return cells


def _comparisons_table(comparisons: Mapping[str, Any], sources: Sequence[str], source_column: bool,
                       short: bool = False) -> list[str]:
    """The comparisons of ``sources`` as one markdown table (lines); a first column names the source
    when ``source_column``; ``short``: :func:`_comparison_cells`' README form."""
    conf = round(100 * comparisons["confidence"])
    sd = comparisons.get("planning_seed_sd_points")
    header = (["source"] if source_column else []) + [
        "comparison", "seeds", "estimate", f"{conf} % interval"] + ([] if short else ["seed SD"]) + [
        "MDD planned" + (f" (SD {sd:g})" if sd is not None else ""), "MDD observed",
        "turns gained / lost (p)", "reading"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for source in sources:
        for row in comparisons["sources"][source]:
            cells = ([source] if source_column else []) + _comparison_cells(row, short)
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def _comparisons_note(comparisons: Mapping[str, Any], baseline: str, short: bool = False) -> str:
    """How to read the comparisons table; ``short``: the README's form (the report keeps the long one)."""
    conf = round(100 * comparisons["confidence"])
    if short:
        return (f"Turn accuracy, points; {conf} % intervals: one-sample t over the seeds' gains (arm - start), pooled "
                f"two-sample t (arm - {baseline}). MDD at α = {comparisons['alpha']:g}, power {comparisons['power']:g}: "
                "planned, and at the seed SD observed (the study's report.md has the seed SDs and the readings in "
                "full). Turns gained / lost: exact McNemar, summed over seeds.")
    return (f"Turn accuracy, points. arm - start: per seed the end minus the start, their mean with a {conf} % "
            f"one-sample t interval. arm - {baseline}: the difference of the seed means, with a pooled two-sample "
            f"{conf} % t interval. MDD: the true difference found at α = {comparisons['alpha']:g} with power "
            f"{comparisons['power']:g}, as planned (design.json) and at the seed SD and seeds observed. Turns "
            f"gained / lost against the start, or {baseline}'s run of the same seed: exact McNemar, summed over "
            "seeds. 'would detect ≥': the MDD at the observed SD, else the planned one.")


def markdown_report(summary: Mapping[str, Any], study: str = "") -> str:
    """The study's tables: the design's comparisons (estimate, interval, detectable difference), per
    eval source the end-of-run metrics (%) and the paired differences (percentage points), then
    training (reward, degenerate groups, fit, wall time)."""
    conf = round(100 * summary["confidence"])
    base = summary["baseline_arm"]
    lines = [f"# Study {study}".rstrip(), "",
             f"{len(summary['runs'])} finished runs. Cells: mean ± {conf}% Student-t half width over seeds (n runs)."]
    if any(pooled for s in summary["sources"].values() for pooled in s.get("flips_pooled", {}).values()):
        # on the intro line, not after the design's table
        lines[-1] += (" Rows 'all seeds, summed': the seeds' turns gained and lost added up, with the exact"
                      " McNemar p of the sums (a sign test stratified by seed).")
    if compute_line(summary):
        lines += ["", compute_line(summary)]
    lines += design_lines(summary.get("design"))
    comparisons = summary.get("comparisons", {})
    if comparisons.get("sources"):
        lines += ["", "## Comparisons", "", _comparisons_note(comparisons, base)]
        for source in comparisons["sources"]:
            lines += ["", f"### {source}", "", *_comparisons_table(comparisons, [source], source_column=False)]
        if comparisons.get("without_pilot_seeds"):
            lines += ["", "### Without the seeds the pilots already ran", "",
                      "The same arm - start comparison without the seeds whose run is a pilot's run again (the "
                      "design's `pilot_seeds`: same arm, seed and config, so the run chose the steps on "
                      "validation). Not planned: no planned MDD.", "",
                      *_comparisons_table({**comparisons, "sources": comparisons["without_pilot_seeds"]},
                                          list(comparisons["without_pilot_seeds"]), source_column=True)]
    for source, s in summary["sources"].items():
        lines += ["", f"## {source}: end of run (%)", "",
                  "| run | " + " | ".join(f"{METRIC_LABELS[m]} %" for m in EVAL_METRICS) + " |",
                  "|---|" + "---|" * len(EVAL_METRICS)]
        for row, per in s["end"].items():
            lines.append(f"| {ROW_LABELS.get(row, row)} | " + " | ".join(fmt_ci(per[m]) for m in EVAL_METRICS) + " |")
        if s.get("by_domain"):
            lines += ["", f"## {source}: turn accuracy by domain, end of run (%)", "", *domain_table(s["by_domain"])]
        if s["vs_sft"]:
            cols = [(f"Δ {METRIC_LABELS[m]} vs SFT start", "vs_sft", m) for m in EVAL_METRICS]
            cols += [(f"Δ {METRIC_LABELS[m]} vs {base}", "vs_baseline", m) for m in EVAL_METRICS]
            lines += ["", f"## {source}: paired differences (percentage points)", "",
                      "| arm | " + " | ".join(c[0] for c in cols) + " |", "|---|" + "---|" * len(cols)]
            for arm in s["vs_sft"]:
                cells = [fmt_ci(s[kind].get(arm, {}).get(m, {}), sign=True) for _, kind, m in cols]
                lines.append(f"| {arm} | " + " | ".join(cells) + " |")
        flips = [(kind, title) for kind, title in (("flips_vs_sft", "vs its SFT start"), ("flips_vs_baseline", f"vs {base}, same seed"))
                 if any(s.get(kind, {}).values())]
        for kind, title in flips:
            by_seed = {(f["seed"], arm): f for arm, rows in s[kind].items() for f in rows}
            arms = [a for a in s[kind] if s[kind][a]]
            lines += ["", f"## {source}: turns gained / lost {title} (exact McNemar p)", "",
                      "| seed | " + " | ".join(arms) + " |", "|---|" + "---|" * len(arms)]
            for seed in sorted({seed for seed, _ in by_seed}):
                lines.append(f"| {seed} | " + " | ".join(fmt_flips(by_seed.get((seed, a))) for a in arms) + " |")
            pooled = s.get("flips_pooled", {}).get(kind, {})
            if pooled:
                lines.append("| all seeds, summed | " + " | ".join(fmt_flips(pooled.get(a)) for a in arms) + " |")
    lines += ["", "## Training", "",
              "| run | seeds | steps | mean train reward | train reward rise (2nd - 1st half) | degenerate groups % "
              "| fit % | wall min / run |",
              "|---|---|---|---|---|---|---|---|"]
    for row, t in summary["train"].items():
        seeds = ",".join(str(x) for x in t["seeds"]) or "–"
        lines.append(f"| {ROW_LABELS.get(row, row)} | {seeds} | {fmt_ci(t['steps'], 1.0, 0)} | "
                     f"{fmt_ci(t['reward_mean'], 1.0, 3)} | {fmt_ci(t['reward_rise'], 1.0, 3, sign=True)} | "
                     f"{fmt_ci(t['degenerate_fraction'])} | "
                     f"{fmt_ci(t['fit'], 100.0, 0)} | {fmt_ci(t['wall_seconds'], 1 / 60, 1)} |")
    return "\n".join(lines) + "\n"


def _domain_cell(cell: Mapping[str, Any]) -> str:
    """"mean ± t (n=k)" over seeds; one run: "acc (right/turns; Wilson low–high)"."""
    if cell.get("wilson") and cell.get("turns"):
        low, high = cell["wilson"]
        return (f"{100 * cell['accuracy']['mean']:.1f} ({cell['right']}/{cell['turns']}; "
                f"{100 * low:.1f}–{100 * high:.1f})")
    return fmt_ci(cell["accuracy"])


def domain_table(by_domain: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Rows (start, arms) by domains (columns, with their turn counts): end-of-run turn accuracy, mean ±
    t half width over seeds, or for a single run its count and Wilson interval (summarize's ``by_domain``
    of one source), as markdown lines."""
    domains = sorted({d for per in by_domain.values() for d in per})
    sizes = {d: {per[d]["turns"] for per in by_domain.values() if d in per} for d in domains}
    header = [f"{d} ({sizes[d].pop()} turns)" if len(sizes[d]) == 1 else d for d in domains]
    lines = ["| run | " + " | ".join(header) + " |", "|---|" + "---|" * len(domains)]
    for row, per in by_domain.items():
        cells = [_domain_cell(per[d]) if d in per else "–" for d in domains]
        lines.append(f"| {ROW_LABELS.get(row, row)} | " + " | ".join(cells) + " |")
    return lines


def readme_markers(study: str, kind: str = "table") -> tuple[str, str]:
    """The lines around a study's block in a README: one block per study and kind, so a file can hold
    several studies (a finished one and the next stage) each rebuilt from its own result files.

    kind: "table" (what :func:`readme_tables` writes, ``--readme=FILE``) or "comparisons" (only the
    design's comparisons, :func:`readme_comparisons`, ``--readme_comparisons=FILE``: the project README's
    short form of a study whose full tables live in its log)."""
    if kind not in ("table", "comparisons"):
        raise ValueError(f"unknown study block kind {kind!r}")
    flag = "readme" if kind == "table" else "readme_comparisons"
    return (f"<!-- study-{kind}:begin {study} (python -m experiments.run_ablation --study={study} --report "
            f"--{flag}=README.md) -->", f"<!-- study-{kind}:end {study} -->")


def compact_table(summary: Mapping[str, Any]) -> str:
    """One markdown table of the study for the README: per run row, for each eval source its turn
    accuracy and call accuracy (%) and the paired turn-accuracy differences to the SFT start and to
    the baseline arm (points), then the mean training reward, the share of degenerate groups and the
    wall minutes per run. Cells as in `markdown_report` (mean ± t half width, n runs)."""
    base = summary["baseline_arm"]
    sources = list(summary["sources"])
    header = ["run", "seeds"]
    for source in sources:
        header += [f"{source} turn acc %", f"{source} call acc %", f"{source} Δ turn vs SFT start",
                   f"{source} Δ turn vs {base}"]
    header += ["mean train reward", "degenerate groups %", "wall min / run"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row, t in summary["train"].items():
        cells = [ROW_LABELS.get(row, row), ",".join(str(x) for x in t["seeds"]) or "–"]
        for source in sources:
            s = summary["sources"][source]
            end = s["end"].get(row, {})
            cells += [fmt_ci(end.get("turn_accuracy", {})), fmt_ci(end.get("call_accuracy", {})),
                      fmt_ci(s["vs_sft"].get(row, {}).get("turn_accuracy", {}), sign=True),
                      fmt_ci(s["vs_baseline"].get(row, {}).get("turn_accuracy", {}), sign=True)]
        cells += [fmt_ci(t["reward_mean"], 1.0, 3), fmt_ci(t["degenerate_fraction"]),
                  fmt_ci(t["wall_seconds"], 1 / 60, 1)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def fmt_flips(record: Mapping[str, Any] | None) -> str:
    """``+g −l (p 0.125)``, or – without per-turn verdicts."""
    if not record:
        return "–"
    return f"+{record['gained']} −{record['lost']} (p {record['p']:.3g})"


def turns_right_table(results: Sequence[Mapping[str, Any]], source: str, baseline: str = BASELINE_ARM) -> str:
    """Per seed (rows) and arm (columns): held-out turns right / turns scored on ``source`` at the end of
    each run, the raw counts behind the intervals, with the turns gained and lost against the run's
    start where both carry per-turn verdicts; the SFT start's count heads the table."""
    def turns_right(r: Mapping[str, Any] | None) -> str | None:
        turns = end_value(r, source, "turns") if r else None
        accuracy = end_value(r, source, "turn_accuracy") if r else None
        return f"{round(accuracy * turns)}/{turns}" if turns and accuracy is not None else None

    arms = arm_order(results, baseline)
    sft = next((r for r in results if r.get("kind") in SINGLE_KINDS["sft"]), None)
    cells: dict[tuple[int, str], str] = {}
    for r in results:
        count = turns_right(r) if r.get("kind") == "grpo" else None
        if count:
            flips = turn_flips(start_entry(r, source, sft), dotted(r, f"eval.{source}.end"))
            cells[(r["seed"], r["arm"])] = count + (f" (+{flips[0]} −{flips[1]})" if flips else "")
    start = turns_right(sft) or "–"
    if not cells:  # only the start was evaluated here (e.g. the validation set of a study's pilots)
        return f"Turns right per run on {source} (the SFT start: {start}): no GRPO run has a count on it.\n"
    note = "; in brackets the turns gained and lost against the run's start" if any("(+" in c for c in cells.values()) else ""
    lines = [f"Turns right per run on {source} (the SFT start: {start}{note}):", "",
             "| seed | " + " | ".join(arms) + " |", "|---|" + "---|" * len(arms)]
    for seed in sorted({seed for seed, _ in cells}):
        lines.append(f"| {seed} | " + " | ".join(cells.get((seed, arm), "–") for arm in arms) + " |")
    return "\n".join(lines) + "\n"


def readme_tables(summary: Mapping[str, Any], results: Sequence[Mapping[str, Any]],
                  baseline: str = BASELINE_ARM) -> str:
    """What `--report --readme` writes: the comparisons of every held-out source (estimate, interval and
    detectable difference; when the study has any), the compact table, the turns-right counts per
    source, then each source's turn accuracy by domain (where the result files keep it)."""
    tables = [compact_table(summary)] + [turns_right_table(results, source, baseline) for source in summary["sources"]]
    tables += [f"Turn accuracy by domain on {source}, end of run (%):\n\n" + "\n".join(domain_table(s["by_domain"])) + "\n"
               for source, s in summary["sources"].items() if s.get("by_domain")]
    if summary.get("comparisons", {}).get("sources"):
        tables.insert(0, readme_comparisons(summary))
    return "\n".join(tables)


def compute_line(summary: Mapping[str, Any]) -> str:
    """The compute line: hours of wall time summed from the result files' wall_seconds, per row."""
    compute = summary.get("compute")
    if not compute:
        return ""
    rows = ", ".join(f"{ROW_LABELS.get(row, row)} {hours:.1f} h" for row, hours in compute["by_row"].items())
    return (f"Compute: {compute['wall_hours']:.1f} h of wall time (training and evaluations), summed from "
            f"{compute['files']} result files' wall_seconds ({rows}).")


def readme_comparisons(summary: Mapping[str, Any]) -> str:
    """The design's comparisons on every held-out source (estimate, interval, detectable difference,
    reading) as one table with its note, then the compute the files record; while no GRPO run has
    finished, a line saying so."""
    comparisons = summary.get("comparisons", {})
    if not comparisons.get("sources"):
        return "\n".join(x for x in ("No GRPO run of this study has finished yet.", compute_line(summary)) if x) + "\n"
    lines = [_comparisons_note(comparisons, summary["baseline_arm"], short=True), "",
             *_comparisons_table(comparisons, list(comparisons["sources"]), source_column=True, short=True)]
    if compute_line(summary):
        lines += ["", compute_line(summary)]
    return "\n".join(lines) + "\n"


def splice_readme(readme: str | os.PathLike, table: str, study: str, kind: str = "table") -> Path:
    """Replaces the text between ``study``'s markers of ``kind`` (:func:`readme_markers`) in ``readme``
    with ``table`` (atomic write).

    Raises ValueError when the markers are missing or out of order: the table has nowhere to go."""
    path = Path(readme)
    text = path.read_text(encoding="utf-8")
    first, last = readme_markers(study, kind)
    begin, end = text.find(first), text.find(last)
    if begin < 0 or end < begin:
        raise ValueError(f"{path} has no '{first}' ... '{last}' block for the study table")
    new = text[:begin + len(first)] + "\n" + table + text[end:]
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(new, encoding="utf-8")
    os.replace(tmp, path)
    return path


def write_summary(results_path: str | os.PathLike, baseline: str = BASELINE_ARM,
                  confidence: float = 0.95) -> tuple[dict[str, Any], str]:
    """Rebuilds ``summary.json`` and ``report.md`` in ``results_path`` from its result files alone."""
    path = resolve(results_path)
    results = load_results(path)
    design = read_json(path / DESIGN_FILE) if (path / DESIGN_FILE).is_file() else None  # written before the runs
    summary = summarize(results, baseline, confidence, design)
    text = markdown_report(summary, path.name)
    write_json_atomic(path / SUMMARY_FILE, summary)
    tmp = path / f".{REPORT_FILE}.{os.getpid()}.tmp"
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path / REPORT_FILE)
    plot_curves(results, path / CURVES_FILE, baseline, confidence)
    return summary, text

"""Writes notebooks/ablations.ipynb (the cells below); execute it with

    jupyter nbconvert --to notebook --execute --inplace notebooks/ablations.ipynb

The notebook reads one study's result files, ``experiments/results/<study>/*.json`` (written by
``python -m experiments.run_ablation --study=<study>``; STUDY at its top, or $ABLATION_STUDY), and the
study's design.json when it has one, and plots: the contamination figure, the design's comparisons (a
forest plot per held-out source: estimate, 95 % interval, planned and observed detectable differences),
the end-of-run metrics per arm, before / after GRPO, the paired differences with their 95% t-intervals
over seeds, turn accuracy by domain, the learning curves (from the curves each result file keeps), the
error breakdown, the compute the runs took, the pilots' curves (``experiments/results/<study>_pilot/``
when it exists, else ``experiments/results/pilot_*/``), the 8-step stage's tables (``decontaminated``)
and the GPU pilot (``experiments/results/gpu_pilot/``).

The default study is ``natural``, the natural reward study (its own data, contamination check and SFT
start). ``ABLATION_STUDY=long36`` draws the 36-step stage, whose data and SFT start are the
``decontaminated`` study's (DATA_STUDIES in the first code cell). Every cell copes with a study that has
only its start and a run or two: where there is nothing to draw yet it prints a line saying so.
"""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

CELLS = [
    new_markdown_cell("""# Reward ablation study: graduated vs atomic vs orchestration vs binary

GRPO on SmolLM2-135M-Instruct, several seeds per arm, every run starting from the same SFT checkpoint
(the study's one SFT start). Evaluation: ComplexFuncBench protocol on held-out turns, at the end of
every GRPO run (and, where the study asks for it, during training), and once for the start. Produced by
`python -m experiments.run_ablation --study=<study>`; this notebook reads only the small result files
in `experiments/results/<study>/` and, when the study has one, its `design.json` (the arms, seeds and
detectable differences fixed before the runs). Error bars and intervals: Student-t over seeds.

The default study is `natural` (the natural reward study: `experiments/results/natural/design.md`);
`ABLATION_STUDY=long36 jupyter nbconvert ...` draws the 36-step stage instead. While a study is under
way, an arm with one seed has no interval yet: its figures show the point alone and say so."""),
    new_code_cell("""import json, os
from pathlib import Path

# ---- configuration -------------------------------------------------------------------------------
ROOT = next(p for p in [Path.cwd(), *Path.cwd().parents] if (p / "pyproject.toml").exists())
STUDY = os.environ.get("ABLATION_STUDY", "natural")
DATA_STUDIES = {"long36": "decontaminated"}  # a study that uses another study's data, contamination check and SFT start
DATA_STUDY = DATA_STUDIES.get(STUDY, STUDY)
RESULTS_DIR = ROOT / "experiments" / "results" / STUDY
RUNS_DIR = ROOT / "runs" / "studies" / STUDY   # optional: training curves when the runs are here
SOURCE = None            # eval source to plot; None = synthetic:test when evaluated, else the first
BASELINE = "graduated"   # arm of the paired differences
CONFIDENCE = 0.95
# ---------------------------------------------------------------------------------------------------

import sys
sys.path.insert(0, str(ROOT))
import numpy as np
import matplotlib.pyplot as plt
%matplotlib inline
from IPython.display import Image, Markdown, display
from experiments import sweep

def shown(path):
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path

results = sweep.load_results(RESULTS_DIR)
design = sweep.read_json(RESULTS_DIR / "design.json") if (RESULTS_DIR / "design.json").is_file() else None
summary = sweep.summarize(results, BASELINE, CONFIDENCE, design)
sources = list(summary["sources"])
SOURCE = SOURCE or ("synthetic:test" if "synthetic:test" in sources else (sources[0] if sources else None))
by_name = {r["name"]: r for r in results}
# A study that starts from another study's SFT run has that start evaluated as "sft_start": its SFT start.
start_run = next((r for r in results if r.get("kind") in sweep.SINGLE_KINDS["sft"]), None)
if start_run is not None:
    by_name["sft"] = start_run
arms = summary["arms"]
runs_of = {arm: sorted((r for r in results if r.get("kind") == "grpo" and r["arm"] == arm), key=lambda r: r["seed"])
           for arm in arms}
planned = (design or {}).get("seeds", {})
print(f"study {STUDY!r} (data: {DATA_STUDY!r}): {len(results)} result files in {shown(RESULTS_DIR)}; "
      f"design.json {'read' if design else 'absent'}; eval sources {sources}; plotting {SOURCE!r}")
for arm in [*arms, *(a for a in planned if a not in arms)]:
    seeds = [r["seed"] for r in runs_of.get(arm, [])]
    print(f"  {arm:24s} seeds {seeds}" + (f" of {planned[arm]} planned" if arm in planned else ""))
for name in ("zero_shot", "sft"):
    print(f"  {name:24s} {'present' if name in by_name else 'missing'}")
if not results:
    print(f"no finished result files in {shown(RESULTS_DIR)} yet: the cells below print what is missing")"""),
    new_markdown_cell("""## Contamination

Share of eval_100 scored turns (and golden calls) found in the study's training data, before and after
the training data were filtered (`contamination.json` of the study, else of its data study: long36 uses
the `decontaminated` study's data; written by `python -m experiments.study_data`)."""),
    new_code_cell("""path = RESULTS_DIR / "contamination.json"
if not path.exists():
    path = ROOT / "experiments" / "results" / DATA_STUDY / "contamination.json"
print(f"from {shown(path)}")
if path.exists():
    c = json.loads(path.read_text())
    for when in ("before_filter", "after_filter"):
        r = c[when]
        print(f"{when:14s} exact turns {r['exact_turns']}/{r['test_turns']} ({r['exact_turn_share']:.1%}), "
              f"turns with any call {r['any_call_turns']}, calls {r['calls']}/{r['test_calls']} ({r['call_share']:.1%})")
    print(f"training samples dropped by data.decontaminate: {c['dropped_training_samples']}")
else:
    print("no contamination.json for this study")"""),
    new_markdown_cell("""## The report (as `--report` writes it)

Built from the result files and, when the study has one, its design.json: then it opens with the design
and the design's comparisons (estimate, interval, detectable difference and a one-line reading each)."""),
    new_code_cell("""display(Markdown(sweep.markdown_report(summary, STUDY)))
for r in [r for r in results if r.get("kind") == "grpo"][:1]:
    config = r.get("config") or {}
    print("config of", r["name"], ":", config.get("arg"), " ".join(a for a in config.get("overrides", [])
                                                                 if "workdir" not in a and "run_name" not in a))"""),
    new_markdown_cell("""## The design's comparisons (forest plot)

One panel per held-out source; one row per comparison of the design: each arm against the SFT start
(the mean over seeds of the end minus the start) and each other arm against graduated (the difference of
the seed means). All in turn-accuracy points. A filled dot with a bar is the estimate with its 95 %
interval; an interval that crosses the grey line at 0 is no evidence of a difference. A hollow dot is an
estimate with no interval yet (one seed: no spread to measure). Around 0, grey bars mark ± the minimum
detectable difference (MDD) planned in design.json (at the planning seed SD), and red crosses ± the MDD
at the seed SD observed so far: a true difference smaller than these would likely be missed. Rows whose
arm has no finished run yet say "not run"."""),
    new_code_cell("""from matplotlib.lines import Line2D

compared = summary["comparisons"]["sources"]
if compared:
    ncols = min(len(compared), 2)
    nrows = -(-len(compared) // ncols)
    height = 0.42 * max(len(rows) for rows in compared.values()) + 1.4
    fig, axes = plt.subplots(nrows, ncols, figsize=(7 * ncols, height * nrows), squeeze=False)
    for ax, (src, rows) in zip(axes.flat, compared.items()):
        labels = []
        for i, row in enumerate(rows):
            seeds = f"n={row['n']}" if row["reference"] == "start" else f"n={row['n']} vs {row['n_reference']}"
            for value, marker, color in ((row["mdd_planned_points"], "|", "0.55"), (row["mdd_observed_points"], "x", "C3")):
                if value is not None:
                    ax.plot([-value, value], [i, i], ls="none", marker=marker, ms=10, mew=1.5, color=color)
            est, ci = row["estimate_points"], row["interval_points"]
            if est is None:
                note = "not run"
            elif ci is None:
                ax.plot([est], [i], "o", mfc="white", color="C0")
                note = "no interval"
            else:
                ax.errorbar([est], [i], xerr=[[est - ci[0]], [ci[1] - est]], fmt="o", color="C0", capsize=3)
                note = f"[{ci[0]:+.1f}, {ci[1]:+.1f}]"
            labels.append(f"{row['comparison']} ({seeds}; {note})")
        ax.axvline(0, color="gray", lw=1)
        ax.set_yticks(range(len(rows)), labels, fontsize=7)
        ax.set_ylim(len(rows) - 0.5, -0.5)
        ax.set_title(f"{src}: turn accuracy, points", fontsize=10)
        ax.set_xlabel("difference (accuracy points)")
        ax.grid(axis="x", alpha=0.3)
    for ax in list(axes.flat)[len(compared):]:
        ax.axis("off")
    handles = [Line2D([], [], color="C0", marker="o", label="estimate, 95 % interval"),
               Line2D([], [], color="C0", marker="o", mfc="white", ls="none", label="estimate, no interval yet (one seed)"),
               Line2D([], [], color="0.55", marker="|", ms=10, mew=1.5, ls="none", label="± MDD planned (design.json)"),
               Line2D([], [], color="C3", marker="x", ls="none", label="± MDD at the observed seed SD")]
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    plt.show()
    rows = [row for rows in compared.values() for row in rows]
    print(f"{sum(r['interval_points'] is not None for r in rows)} of {len(rows)} comparisons have an interval; "
          f"{sum(r['estimate_points'] is None for r in rows)} not run yet")
    for src, rows in compared.items():
        print(f"{src}:")
        for row in rows:
            if row["estimate_points"] is not None:
                print(f"  {row['comparison']:28s} {row['estimate_points']:+6.1f}  {row['reading']}")
else:
    print("no comparisons yet: no GRPO run has been evaluated at its end on a source where the start is known")"""),
    new_markdown_cell("""## End of run per arm

Bars: mean over seeds, whiskers: t-interval; dots: the seeds. Dashed: the SFT start, dotted: the
zero-shot model (single runs)."""),
    new_code_cell("""def end(r, metric, source=SOURCE):
    return sweep.dotted(r, f"eval.{source}.end.{metric}")

def start(r, metric, source=SOURCE):
    value = sweep.dotted(r, f"eval.{source}.start.{metric}")
    return value if value is not None else (end(by_name["sft"], metric, source) if "sft" in by_name else None)

if SOURCE and arms:
    fig, axes = plt.subplots(1, len(sweep.EVAL_METRICS), figsize=(4 * len(sweep.EVAL_METRICS), 3.4))
    for ax, metric in zip(np.atleast_1d(axes), sweep.EVAL_METRICS):
        stats = [summary["sources"][SOURCE]["end"][arm][metric] for arm in arms]
        means = np.array([np.nan if s["mean"] is None else s["mean"] for s in stats])
        halves = np.array([0.0 if s["half_width"] is None else s["half_width"] for s in stats])
        x = np.arange(len(arms))
        ax.bar(x, 100 * means, 0.6, yerr=100 * halves, capsize=4, color="C0", alpha=0.7)
        for i, arm in enumerate(arms):
            ys = [100 * y for y in (end(r, metric) for r in runs_of[arm]) if y is not None]
            ax.scatter([i] * len(ys), ys, color="k", s=12, zorder=3)
        for name, style in (("sft", "--"), ("zero_shot", ":")):
            value = end(by_name[name], metric) if name in by_name else None
            if value is not None:
                ax.axhline(100 * value, ls=style, color="gray", label=sweep.ROW_LABELS[name])
        ax.set_xticks(x, [f"{a}\\n(n={len(runs_of[a])})" for a in arms], fontsize=8)
        ax.set_title(f"{SOURCE}: {sweep.METRIC_LABELS[metric]} (%)", fontsize=10)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    plt.show()
else:
    print("no GRPO results yet")"""),
    new_markdown_cell("""## Before / after GRPO, per seed

Each line is one run: its SFT start (the run's own step-0 evaluation, else the SFT run's) and its end."""),
    new_code_cell("""if SOURCE and arms:
    fig, axes = plt.subplots(1, len(arms), figsize=(3.2 * len(arms), 3.2), sharey=True, squeeze=False)
    for ax, arm in zip(axes[0], arms):
        for r in runs_of[arm]:
            a, b = start(r, "turn_accuracy"), end(r, "turn_accuracy")
            if a is not None and b is not None:
                ax.plot([0, 1], [100 * a, 100 * b], marker="o", lw=1, label=f"seed {r['seed']}")
        ax.set_xticks([0, 1], ["SFT start", "end"])
        ax.set_title(arm, fontsize=10)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6)
    axes[0][0].set_ylabel(f"{SOURCE} turn accuracy (%)")
    fig.tight_layout()
    plt.show()
else:
    print("no GRPO results yet")"""),
    new_markdown_cell("""## Paired differences (percentage points)

Left: each arm's end minus its SFT start (per run). Right: each arm minus the baseline arm at the
same seed. Points: mean, bars: t-interval; an interval that crosses 0 is no evidence of a difference."""),
    new_code_cell("""if SOURCE and arms:
    s = summary["sources"][SOURCE]
    panels = [("vs_sft", "vs SFT start"), ("vs_baseline", f"vs {BASELINE} (same seed)")]
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.6 * max(len(arms), 2) * len(sweep.EVAL_METRICS) / 2 + 1.5))
    for ax, (kind, title) in zip(axes, panels):
        labels, means, halves = [], [], []
        for arm in s[kind]:
            for metric in sweep.EVAL_METRICS:
                st = s[kind][arm][metric]
                if st["mean"] is None:
                    continue
                labels.append(f"{arm}: {sweep.METRIC_LABELS[metric]} (n={st['n']})")
                means.append(100 * st["mean"])
                halves.append(0.0 if st["half_width"] is None else 100 * st["half_width"])
        y = np.arange(len(labels))
        if not labels:
            ax.text(0.5, 0.5, "nothing to compare yet", transform=ax.transAxes, ha="center", color="gray")
        else:
            ax.errorbar(means, y, xerr=halves, fmt="o", capsize=3)
        ax.axvline(0, color="gray", lw=1)
        ax.set_yticks(y, labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_title(f"{SOURCE}: {title}", fontsize=10)
        ax.set_xlabel("percentage points")
    fig.tight_layout()
    plt.show()
    single = [arm for arm in arms if len(runs_of[arm]) < 2]
    if single:
        print(f"one seed so far for {single}: their points have no interval (no bar) yet")
    if BASELINE not in arms or len(arms) < 2:
        print(f"the right panel needs {BASELINE} and another arm at the same seed: none yet")
else:
    print("no GRPO results yet")"""),
    new_markdown_cell("""## Turn accuracy by domain

One panel per held-out source: for each travel domain (with its number of scored turns under the
label), the end-of-run turn accuracy of the SFT start and of each arm. Bars: mean over the arm's seeds;
whiskers: the 95 % t-interval, drawn only where the arm has at least 2 seeds. Domains with a handful of
turns move by many points for one turn, so read them with their turn counts."""),
    new_code_cell("""domain_tables = {src: s["by_domain"] for src, s in summary["sources"].items() if s.get("by_domain")}
if domain_tables:
    ncols = min(len(domain_tables), 2)
    nrows = -(-len(domain_tables) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(7 * ncols, 3.6 * nrows), squeeze=False)
    for ax, (src, table) in zip(axes.flat, domain_tables.items()):
        rows = list(table)
        domains = sorted({d for row in rows for d in table[row]})
        x = np.arange(len(domains))
        width = 0.8 / len(rows)
        for j, row in enumerate(rows):
            cells = [table[row].get(d, {}).get("accuracy", {}) for d in domains]
            means = [np.nan if c.get("mean") is None else 100 * c["mean"] for c in cells]
            halves = [100 * c["half_width"] if c.get("n", 0) >= 2 and c.get("half_width") is not None else 0.0
                      for c in cells]
            n = max((c.get("n", 0) for c in cells), default=0)
            ax.bar(x + (j - (len(rows) - 1) / 2) * width, means, width, yerr=halves if any(halves) else None, capsize=2,
                   label=f"{sweep.ROW_LABELS.get(row, row)} (n={n})")
        def turns(d):
            sizes = sorted({table[row][d]["turns"] for row in rows if d in table[row] and table[row][d]["turns"] is not None})
            return "" if not sizes else (f"{sizes[0]} turns" if len(sizes) == 1 else f"{sizes[0]}-{sizes[-1]} turns")
        ax.set_xticks(x, [f"{d}\\n{turns(d)}" for d in domains], fontsize=8)
        ax.set_ylabel("turn accuracy (%)")
        ax.set_title(f"{src}: end of run", fontsize=10)
        ax.legend(fontsize=7)
        ax.grid(axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(domain_tables):]:
        ax.axis("off")
    fig.tight_layout()
    plt.show()
    few = [arm for arm in arms if len(runs_of[arm]) < 2]
    if few:
        print(f"no whiskers for {few}: one seed so far")
else:
    print("no per-domain counts in this study's result files (by_domain)")"""),
    new_markdown_cell("""## Learning curves

Per arm, mean over seeds with a t-band: the training reward of each GRPO step (each arm on its own
reward, so the scales differ: `binary` is 0/1) and the held-out turn accuracy at the evaluations
during training (`eval.every`). Read from the result files alone (`curves`)."""),
    new_code_cell("""if arms:
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for ax, (kind, label) in zip(axes, (("train", "mean training reward"), ("eval", f"{SOURCE} turn accuracy"))):
        for arm in arms:
            steps, mean, low, high = sweep.curve_bands(results, arm, kind, 1, CONFIDENCE)
            if steps:
                ax.plot(steps, mean, marker="o", label=f"{arm} (n={len(runs_of[arm])})")
                ax.fill_between(steps, low, high, alpha=0.15)
        ax.set_xlabel("GRPO step")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    if not any(sweep.curve_bands(results, arm, "eval", 1, CONFIDENCE)[0] for arm in arms):
        axes[1].text(0.5, 0.5, "no evaluations during training", transform=axes[1].transAxes, ha="center", color="gray")
        print("no held-out evaluations during training in this study's runs (each is evaluated at its end only); "
              "the pilots below carry the curves on validation turns")
    if any(len(runs_of[arm]) < 2 for arm in arms):
        print("an arm with one seed is its run's own curve, without a band")
    if axes[0].get_legend_handles_labels()[0]:
        axes[0].legend(fontsize=7)
    fig.tight_layout()
    plt.show()
else:
    print("no GRPO results yet")"""),
    new_markdown_cell("""## Error breakdown at the end of run

Mean count per run of each error kind over the evaluated turns (one per leftover call:
`stopped_early` = a golden call never made, `hallucinated_call` = a predicted call matching no
golden call, `format_error` = a `<tool_call>` block that does not parse)."""),
    new_code_cell("""rows = [n for n in ("zero_shot", "sft") if n in by_name] + arms
members = {n: [by_name[n]] for n in ("zero_shot", "sft") if n in by_name} | runs_of
kinds = sorted({k for rs in members.values() for r in rs for k in (sweep.dotted(r, f"eval.{SOURCE}.end.errors") or {})})
if rows and kinds:
    means = np.array([[np.mean([(sweep.dotted(r, f"eval.{SOURCE}.end.errors") or {}).get(k, 0) for r in members[row]])
                       for k in kinds] for row in rows])
    fig, ax = plt.subplots(figsize=(9, 3.4))
    bottom = np.zeros(len(rows))
    for j, k in enumerate(kinds):
        ax.bar(range(len(rows)), means[:, j], bottom=bottom, label=k)
        bottom += means[:, j]
    ax.set_xticks(range(len(rows)), [sweep.ROW_LABELS.get(r, r) for r in rows], fontsize=8)
    ax.set_ylabel("errors per run (mean over seeds)")
    ax.set_title(f"{SOURCE}: errors at the end of run", fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    plt.show()
else:
    print("no error counts in the result files")"""),
    new_markdown_cell("""## Compute

Wall time the study's runs took, as their result files record it (`wall_seconds`: training and every
evaluation of each run, summed over the attempts). Left: hours per row (the SFT start, each arm's seeds
together); right: each run split into training and its evaluations, so the cost of a held-out source
shows beside the cost of the GRPO steps."""),
    new_code_cell("""compute = summary.get("compute") or {}
if compute.get("files"):
    print(sweep.compute_line(summary))
    timed = [r for r in results if isinstance(r.get("wall_seconds"), dict)]
    timed.sort(key=lambda r: (r.get("kind") == "grpo", arms.index(r["arm"]) if r.get("arm") in arms else -1,
                              r.get("seed") or 0))
    parts = sorted({k for r in timed for k in r["wall_seconds"] if k != "total"},
                   key=lambda k: (k != "train", k))
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.35 * max(len(timed), 4) + 1.4),
                             gridspec_kw={"width_ratios": [1, 2]})
    by_row = compute["by_row"]
    axes[0].barh(range(len(by_row)), list(by_row.values()), color="C0", alpha=0.7)
    axes[0].set_yticks(range(len(by_row)), [f"{sweep.ROW_LABELS.get(k, k)} ({len(runs_of.get(k, [])) or 1} run"
                                            f"{'s' if len(runs_of.get(k, [])) > 1 else ''})" for k in by_row], fontsize=8)
    axes[0].invert_yaxis()
    axes[0].set(xlabel="hours", title=f"{compute['wall_hours']:.1f} h in {compute['files']} result files")
    left = np.zeros(len(timed))
    for j, part in enumerate(parts):
        hours = np.array([(r["wall_seconds"].get(part) or 0.0) / 3600 for r in timed])
        axes[1].barh(range(len(timed)), hours, left=left, label=part.replace("eval-", "eval: "), color=f"C{j}")
        left += hours
    axes[1].set_yticks(range(len(timed)), [r["name"] for r in timed], fontsize=8)
    axes[1].invert_yaxis()
    axes[1].set(xlabel="hours", title="per run: training and each evaluation")
    axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    plt.show()
else:
    print("no result files with wall times yet")"""),
    new_markdown_cell("""## Pilots

Single GRPO runs from the same SFT start that chose the study's settings: the study's own pilots
(`experiments/results/<study>_pilot/`, for `natural`: graduated at learning rates 1e-5 and 3e-5, 16
steps, evaluated on the 126 novel validation turns at steps 0, 8 and 16), else the earlier pilots
(`experiments/results/pilot_*/`, each with a README giving its command and reading). Left: training
reward per step (faint), with a 5-step moving mean; right: turn accuracy at the evaluations during
training, on each pilot's own evaluation turns (for the earlier pilots these differ: pilot_pool: its 8
training turns; pilot_long: 48 synthesized test turns, so compare shapes, not levels). A hollow marker is
an evaluation redone from a saved checkpoint after the training process lost it
(`<run>_step<k>_validation.json` beside the run)."""),
    new_code_cell("""results_root = ROOT / "experiments" / "results"
own_pilots = results_root / f"{STUDY}_pilot"
pilot_dirs = [own_pilots] if own_pilots.is_dir() else sorted(d for d in results_root.glob("pilot_*") if d.is_dir())
print("pilots from", ", ".join(str(d.relative_to(ROOT)) for d in pilot_dirs) or "nowhere")
pilots, redone = {}, {}
for d in pilot_dirs:
    for r in sweep.load_results(d):
        if r.get("kind") == "grpo" and (r.get("curves") or {}).get("train"):
            pilots[f"{d.name}/{r['name']}"] = r
    for path in sorted(d.glob("*_step*_*.json")):  # an evaluation redone from a checkpoint: {what, step, end}
        extra = sweep.read_json(path)
        name = f"{d.name}/{path.name.split('_step')[0]}"
        if isinstance(extra, dict) and "step" in extra and (extra.get("end") or {}).get("turn_accuracy") is not None:
            redone.setdefault(name, []).append((int(extra["step"]), extra["end"]["turn_accuracy"], extra["end"].get("turns")))
if pilots:
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for name, r in pilots.items():
        train = np.array([[row[0], row[1]] for row in r["curves"]["train"]], dtype=float)
        line, = axes[0].plot(train[:, 0], train[:, 1], alpha=0.35)
        if len(train) >= 5:
            smooth = np.convolve(train[:, 1], np.ones(5) / 5, mode="valid")
            axes[0].plot(train[4:, 0], smooth, color=line.get_color(), label=name)
        turns = next((e["end"].get("turns") for e in r.get("eval", {}).values() if e.get("end")), None)
        evals = [(row[0], row[1], False) for row in r["curves"].get("eval") or [] if row[1] is not None]
        evals = sorted(evals + [(step, acc, True) for step, acc, _ in redone.get(name, [])])
        if evals:
            axes[1].plot([e[0] for e in evals], [100 * e[1] for e in evals], "-", color=line.get_color(), label=name)
            for step, acc, again in evals:
                axes[1].plot([step], [100 * acc], "o", color=line.get_color(), mfc="white" if again else line.get_color())
        shown = ", ".join(f"step {step}: " + (f"{round(acc * turns)}/{turns}" if turns else f"{100 * acc:.1f} %")
                          + (" (redone)" if again else "") for step, acc, again in evals)
        half = len(train) // 2
        print(f"{name}: {len(train)} steps logged, reward first half {train[:half, 1].mean():.3f}, "
              f"second half {train[-half:, 1].mean():.3f}; evaluations {shown or 'none'}")
    axes[0].set(xlabel="GRPO step", ylabel="mean training reward (graduated)")
    axes[1].set(xlabel="GRPO step", ylabel="turn accuracy % (the pilot's own turns)")
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    plt.show()
else:
    print("no pilot result files")"""),
    new_markdown_cell("""## The 8-step stage (`decontaminated`)

The earlier stage on the decontaminated data (before the natural study): long36's SFT start, 8 GRPO
steps instead of 36, 24 held-out turns per source (`experiments/results/decontaminated/`; the tables as
`--report --readme` writes them). Set `ABLATION_STUDY=decontaminated` to draw every figure above for it
instead."""),
    new_code_cell("""short_dir = ROOT / "experiments" / "results" / "decontaminated"
short = sweep.load_results(short_dir)
if short:
    display(Markdown(sweep.readme_tables(sweep.summarize(short, BASELINE, CONFIDENCE), short, BASELINE)))
else:
    print(f"no result files in {short_dir.relative_to(ROOT)}")
if (short_dir / "curves.png").exists():
    display(Image(filename=str(short_dir / "curves.png")))"""),
    new_markdown_cell("""## GPU pilot (one H200, `experiments/results/gpu_pilot/`)

Graduated, seed 0, 4 prompts x 8 rollouts per step from the decontaminated study's SFT start
(bf16-rounded; not the natural study's start), stopped by the
device budget after 9 steps. Left: training reward per step; right: where each step's seconds went
(generation and update; the long ones are XLA compiling a new padded shape)."""),
    new_code_cell("""gpu_rows = sweep.read_metrics(ROOT / "experiments" / "results" / "gpu_pilot" / "metrics.jsonl")
steps = [r for r in gpu_rows if r.get("phase") == "grpo"]
start_eval = next((r for r in gpu_rows if r.get("phase") == "start"), {})
print(f"start: turn accuracy {start_eval.get('eval/turn_accuracy', float('nan')):.3f} on {start_eval.get('eval/turns')} turns; "
      f"{len(steps)} GRPO steps, {sum(r['time/step_s'] for r in steps):.0f} s")
if steps:
    x = [r["step"] for r in steps]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
    axes[0].plot(x, [r["reward/mean"] for r in steps], "o-")
    axes[0].set(xlabel="GRPO step", ylabel="mean training reward (graduated)", title="H200, 4 x 8 per step")
    axes[1].bar(x, [r["time/generate_s"] for r in steps], label="generate")
    axes[1].bar(x, [r["time/update_s"] for r in steps], bottom=[r["time/generate_s"] for r in steps], label="update")
    axes[1].set(xlabel="GRPO step", ylabel="seconds", title="step time (compiles included)")
    axes[1].legend()
    fig.tight_layout()
    plt.show()"""),
]


def main() -> None:
    nb = new_notebook(cells=CELLS, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    path = Path(__file__).with_name("ablations.ipynb")
    nbformat.write(nb, path)
    print(path)


if __name__ == "__main__":
    main()

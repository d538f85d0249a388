"""Writes notebooks/ablations.ipynb (the cells below); execute it with

    jupyter nbconvert --to notebook --execute --inplace notebooks/ablations.ipynb

The notebook reads one study's result files, ``experiments/results/<study>/*.json`` (written by
``python -m experiments.run_ablation --study=<study>``; STUDY at its top, or $ABLATION_STUDY), and
plots the contamination figure, the end-of-run metrics per arm, before / after GRPO, the paired
differences with their 95% t-intervals over seeds, the learning curves (from the curves each result
file keeps), the error breakdown, the pilots' curves (``experiments/results/pilot_*/``), the 8-step
stage's tables (``decontaminated``) and the GPU pilot (``experiments/results/gpu_pilot/``). The default
study is ``long36``, the 36-step stage; its data and SFT start are the ``decontaminated`` study's.
"""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

CELLS = [
    new_markdown_cell("""# Reward ablation study: graduated vs atomic vs orchestration vs binary

GRPO on SmolLM2-135M-Instruct (`configs/grpo.py:<arm>`), several seeds per arm, every run starting
from the same SFT checkpoint (the study's one SFT start). Evaluation: ComplexFuncBench protocol on the
config's `eval.source` turns (at the start and the end of every GRPO run, `--config.eval.every`), and
on further sources after training. Produced by `python -m experiments.run_ablation --study=<study>`;
this notebook reads only the small result files in `experiments/results/<study>/`. Error bars and
intervals: Student-t over seeds."""),
    new_code_cell("""import json, os
from pathlib import Path

# ---- configuration -------------------------------------------------------------------------------
ROOT = next(p for p in [Path.cwd(), *Path.cwd().parents] if (p / "pyproject.toml").exists())
STUDY = os.environ.get("ABLATION_STUDY", "long36")
DATA_STUDY = "decontaminated"  # whose data, contamination check and SFT start long36 uses
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

results = sweep.load_results(RESULTS_DIR)
summary = sweep.summarize(results, BASELINE, CONFIDENCE)
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
print(f"{len(results)} result files in {RESULTS_DIR}; eval sources {sources}; plotting {SOURCE!r}")
for arm in arms:
    print(f"  {arm:24s} seeds {[r['seed'] for r in runs_of[arm]]}")
for name in ("zero_shot", "sft"):
    print(f"  {name:24s} {'present' if name in by_name else 'missing'}")"""),
    new_markdown_cell("""## Contamination

Share of eval_100 scored turns (and golden calls) found in the study's training data
(`experiments/results/<study>/contamination.json`, written by `python -m experiments.study_data`)."""),
    new_code_cell("""path = RESULTS_DIR / "contamination.json"
if not path.exists():
    path = ROOT / "experiments" / "results" / DATA_STUDY / "contamination.json"
print(f"from {path.relative_to(ROOT)}")
if path.exists():
    c = json.loads(path.read_text())
    for when in ("before_filter", "after_filter"):
        r = c[when]
        print(f"{when:14s} exact turns {r['exact_turns']}/{r['test_turns']} ({r['exact_turn_share']:.1%}), "
              f"turns with any call {r['any_call_turns']}, calls {r['calls']}/{r['test_calls']} ({r['call_share']:.1%})")
    print(f"training samples dropped by data.decontaminate: {c['dropped_training_samples']}")
else:
    print("no contamination.json for this study")"""),
    new_markdown_cell("## The report (as `--report` writes it)"),
    new_code_cell("""display(Markdown(sweep.markdown_report(summary, STUDY)))
for r in [r for r in results if r.get("kind") == "grpo"][:1]:
    config = r.get("config") or {}
    print("config of", r["name"], ":", config.get("arg"), " ".join(a for a in config.get("overrides", [])
                                                                 if "workdir" not in a and "run_name" not in a))"""),
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
    plt.show()"""),
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
        ax.errorbar(means, y, xerr=halves, fmt="o", capsize=3)
        ax.axvline(0, color="gray", lw=1)
        ax.set_yticks(y, labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_title(f"{SOURCE}: {title}", fontsize=10)
        ax.set_xlabel("percentage points")
    fig.tight_layout()
    plt.show()"""),
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
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    plt.show()
else:
    print("no error counts in the result files")"""),
    new_markdown_cell("""## Pilots

Single GRPO runs from the same SFT start that chose the study's settings
(`experiments/results/pilot_*/`, each with a README giving its command and reading). Left: training
reward per step, with a 5-step moving mean; right: turn accuracy at the evaluations during training,
on each pilot's own evaluation turns (pilot_pool: its 8 training turns; pilot_long: 48 synthesized
test turns), so the panels compare shapes, not levels."""),
    new_code_cell("""pilots = {}
for d in sorted((ROOT / "experiments" / "results").glob("pilot_*")):
    for r in sweep.load_results(d):
        if r.get("kind") == "grpo" and (r.get("curves") or {}).get("train"):
            pilots[f"{d.name}/{r['name']}"] = r
if pilots:
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for name, r in pilots.items():
        train = np.array([[row[0], row[1]] for row in r["curves"]["train"]], dtype=float)
        line, = axes[0].plot(train[:, 0], train[:, 1], alpha=0.35)
        if len(train) >= 5:
            smooth = np.convolve(train[:, 1], np.ones(5) / 5, mode="valid")
            axes[0].plot(train[4:, 0], smooth, color=line.get_color(), label=name)
        evals = [row for row in r["curves"]["eval"] if row[1] is not None]
        if evals:
            axes[1].plot([e[0] for e in evals], [100 * e[1] for e in evals], "o-", color=line.get_color(), label=name)
        print(f"{name}: {len(train)} steps, reward first half {train[: len(train) // 2, 1].mean():.3f}, "
              f"second half {train[-(len(train) // 2):, 1].mean():.3f}; evals {[(e[0], round(100 * e[1], 1)) for e in evals]}")
    axes[0].set(xlabel="GRPO step", ylabel="mean training reward (graduated)")
    axes[1].set(xlabel="GRPO step", ylabel="turn accuracy % (the pilot's own turns)")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    plt.show()
else:
    print("no pilot result files")"""),
    new_markdown_cell("""## The 8-step stage (`decontaminated`)

The same SFT start, 8 GRPO steps instead of 36, 24 held-out turns per source
(`experiments/results/decontaminated/`; the tables as `--report --readme` writes them). Set
`ABLATION_STUDY=decontaminated` to draw every figure above for it instead."""),
    new_code_cell("""short_dir = ROOT / "experiments" / "results" / DATA_STUDY
short = sweep.load_results(short_dir)
if short:
    display(Markdown(sweep.readme_tables(sweep.summarize(short, BASELINE, CONFIDENCE), short, BASELINE)))
else:
    print(f"no {DATA_STUDY} result files")
if (short_dir / "curves.png").exists():
    display(Image(filename=str(short_dir / "curves.png")))"""),
    new_markdown_cell("""## GPU pilot (one H200, `experiments/results/gpu_pilot/`)

Graduated, seed 0, 4 prompts x 8 rollouts per step from the same start (bf16-rounded), stopped by the
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

"""Writes notebooks/ablations.ipynb (the cells below); execute it with

    jupyter nbconvert --to notebook --execute --inplace notebooks/ablations.ipynb

The notebook reads a sweep directory of ``python -m experiments.run_ablation`` (SWEEP_DIR at its top,
or $ABLATION_SWEEP_DIR) and plots reward curves, turn accuracy before/after per mode with 95%
t-intervals over seeds, and the error breakdown.
"""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

CELLS = [
    new_markdown_cell("""# Reward ablation: binary vs atomic vs orchestration vs graduated

GRPO on SmolLM2-135M-Instruct with the `paper` reward family in its four ablation modes (DESIGN.md,
"Graduated reward"), several seeds each, every mode starting from the same per-seed SFT warm start.
Evaluation: ComplexFuncBench protocol on a fixed subset of eval_100 turns with complete golden history
(see `experiments/evaluate_run.py`). Produced by `python -m experiments.run_ablation`; numbers in
`experiments/RESULTS.md`. Error bars are 95% Student-t intervals over seeds."""),
    new_code_cell("""import json, os
from pathlib import Path

# ---- configuration -------------------------------------------------------------------------------
ROOT = next(p for p in [Path.cwd(), *Path.cwd().parents] if (p / "pyproject.toml").exists())
SWEEP_DIR = Path(os.environ.get("ABLATION_SWEEP_DIR", ROOT / "runs" / "ablation"))
SPLIT = "eval_100"          # or "synth_test" when the sweep evaluated the synthesized test split
CONFIDENCE = 0.95
# ---------------------------------------------------------------------------------------------------

import sys
sys.path.insert(0, str(ROOT))
import numpy as np
import matplotlib.pyplot as plt
%matplotlib inline
from IPython.display import Markdown, display
from experiments import sweep

results = sweep.load_results(SWEEP_DIR)
groups = sweep.group(results)
print(f"{len(results)} finished runs in {SWEEP_DIR}")
for label, runs in groups.items():
    print(f"  {label:32s} seeds {sorted(r['seed'] for r in runs if r['seed'] is not None) or '-'}")"""),
    new_markdown_cell("## Results table (mean ± 95% CI half width over seeds)"),
    new_code_cell("""columns = [(name, path.replace("eval_100", SPLIT), scale) for name, path, scale in sweep.TABLE_METRICS]
display(Markdown(sweep.markdown_table(results, columns, CONFIDENCE)))
settings = json.loads((SWEEP_DIR / "sweep_settings.json").read_text()) if (SWEEP_DIR / "sweep_settings.json").exists() else {}
print("budget:", {k: settings.get(k) for k in ("sft_steps", "grpo_steps", "seeds", "family")}, "eval:", settings.get("eval"))"""),
    new_markdown_cell("""## Training reward curves per mode

Each mode is trained on its own reward, so the curves are on different scales: `binary` is 0/1 per
episode, the others are in [0, 1]. Thin lines: seeds; thick: mean over seeds. The second row shows the
paper's two reward parts, logged for every mode (the same yardstick across modes)."""),
    new_code_cell("""def curves(run_name, key):
    rows = sweep.read_metrics(SWEEP_DIR / run_name / "work" / "metrics.jsonl")
    rows = [r for r in rows if r.get("phase") == "grpo" and r.get(key) is not None]
    return np.array([r["step"] for r in rows]), np.array([r[key] for r in rows], float)

modes = [m for m in sweep.MODES if m in groups]
level_keys = []
for m in modes:
    for r in groups[m]:
        rows = sweep.read_metrics(SWEEP_DIR / r["name"] / "work" / "metrics.jsonl")
        level_keys = sorted({k for row in rows for k in row if k.startswith("reward/") and k not in
                             ("reward/mean", "reward/std", "reward/max", "reward/min")})
        break
    if level_keys:
        break
keys = ["reward/mean"] + [k for k in level_keys if any(w in k for w in ("atomic", "orch"))][:2]
if modes:
    fig, axes = plt.subplots(len(keys), len(modes), figsize=(3.4 * len(modes), 2.6 * len(keys)), squeeze=False, sharex=True)
    for j, mode in enumerate(modes):
        for i, key in enumerate(keys):
            ax = axes[i, j]
            series = [curves(r["name"], key) for r in groups[mode]]
            for steps, values in series:
                ax.plot(steps, values, lw=0.8, alpha=0.5)
            n = min((len(v) for _, v in series), default=0)
            if n:
                ax.plot(series[0][0][:n], np.mean([v[:n] for _, v in series], axis=0), color="k", lw=2, label="mean")
            ax.set_title(f"{mode}: {key}" if i == 0 else key, fontsize=9)
            ax.set_ylim(-0.05, 1.05)
            if i == len(keys) - 1:
                ax.set_xlabel("step (after SFT)")
    fig.tight_layout()
    plt.show()
else:
    print("no GRPO runs yet")"""),
    new_markdown_cell("""## Turn accuracy before / after GRPO, per mode

"Before" is the SFT warm start of the same seed (identical for every mode), "after" the final GRPO
checkpoint; the dashed line is the untrained model. Bars: mean over seeds, whiskers: 95% t-interval.
Denser signals than turn accuracy at a small budget: the share of the optional location-lookup calls
(the first thing most turns need) matched, and per evaluated turn the calls made and the `<tool_call>`
blocks that did not parse."""),
    new_code_cell("""def ci(values):
    return sweep.t_interval(values, CONFIDENCE)

def acc(r, key="turn_accuracy"):
    return sweep.metric(r, f"eval.{SPLIT}.overall.{key}")

sft_by_seed = {r["seed"]: r for r in groups.get("SFT warm start (before GRPO)", [])}
zero = [acc(r) for r in groups.get("zero-shot", [])]
panels = [("turn_accuracy", 100, "%"), ("call_accuracy", 100, "%"), ("free_call_match_rate", 100, "%"),
          ("calls_per_turn", 1, ""), ("format_errors_per_turn", 1, "")]
fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.4))
for ax, (key, scale, unit) in zip(axes, panels):
    x = np.arange(len(modes))
    for offset, which in ((-0.18, "before"), (0.18, "after")):
        stats = []
        for mode in modes:
            runs = groups[mode]
            values = [acc(sft_by_seed[r["seed"]], key) for r in runs if r["seed"] in sft_by_seed] if which == "before" \\
                else [acc(r, key) for r in runs]
            stats.append(ci(values))
        means = np.array([s[0] for s in stats])
        halves = np.nan_to_num(np.array([s[1] for s in stats]))
        ax.bar(x + offset, scale * means, 0.36, yerr=scale * halves, capsize=3, label=f"{which} GRPO")
    zero_value = [acc(r, key) for r in groups.get("zero-shot", [])]
    if zero_value and zero_value[0] is not None:
        ax.axhline(scale * zero_value[0], ls="--", color="gray", label="zero-shot")
    ax.set_xticks(x, [f"{m}\\n(n={len(groups[m])})" for m in modes], fontsize=8)
    ax.set_title(f"{key.replace('_', ' ')}" + (f" ({unit})" if unit else ""), fontsize=10)
    ax.legend(fontsize=7)
fig.tight_layout()
plt.show()"""),
    new_markdown_cell("""## Error breakdown

Mean count per run of each error kind over the evaluated turns (a turn can have several: one per
leftover call; `stopped_early` = a golden call never made, `hallucinated_call` = a predicted call
matching no golden call, `format_error` = a `<tool_call>` block that does not parse)."""),
    new_code_cell("""display(Markdown(sweep.error_table(results, SPLIT)))
labels = list(groups)
kinds = []
for r in results:
    for k in (sweep.metric(r, f"eval.{SPLIT}.overall.errors") or {}):
        if k not in kinds:
            kinds.append(k)
if labels and kinds:
    means = np.array([[np.mean([(sweep.metric(r, f"eval.{SPLIT}.overall.errors") or {}).get(k, 0) for r in groups[l]])
                       for k in kinds] for l in labels])
    fig, ax = plt.subplots(figsize=(9, 3.4))
    bottom = np.zeros(len(labels))
    for j, k in enumerate(kinds):
        ax.bar(range(len(labels)), means[:, j], bottom=bottom, label=k)
        bottom += means[:, j]
    ax.set_xticks(range(len(labels)), [l.replace(" (before GRPO)", "\\n(before)") for l in labels], fontsize=8)
    ax.set_ylabel("errors per run (mean over seeds)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    plt.show()"""),
    new_markdown_cell("## What the policies write (first evaluated turn of each mode, seed 0)"),
    new_code_cell("""for label, runs in groups.items():
    run = sorted(runs, key=lambda r: r["seed"] if r["seed"] is not None else -1)[0]
    path = SWEEP_DIR / run["name"] / "eval.json"
    if not path.exists():
        continue
    turns = json.loads(path.read_text())["splits"].get(SPLIT, {}).get("turns", [])
    if turns:
        t = turns[0]
        print(f"--- {label} ({run['name']}), {t['sample_id']} turn {t['turn']}: correct={t['correct']} errors={t['errors']}")
        print(t["texts"][0][:400])"""),
]


def main() -> None:
    nb = new_notebook(cells=CELLS, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    path = Path(__file__).with_name("ablations.ipynb")
    nbformat.write(nb, path)
    print(path)


if __name__ == "__main__":
    main()

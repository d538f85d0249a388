"""Learning curves of a study: per arm, the mean over seeds with a Student-t band (curves.png)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from experiments.study.files import dotted
from experiments.study.plan import BASELINE_ARM
from experiments.study.stats import arm_order, t_interval


def curve_bands(results: Sequence[Mapping[str, Any]], arm: str, kind: str, column: int,
                confidence: float = 0.95) -> tuple[list[int], list[float], list[float], list[float]]:
    """(steps, mean, low, high) over the seeds of an arm of one curve column (``kind`` "train" or
    "eval"; column 1 = reward / turn accuracy); steps where not every seed has a value are dropped."""
    runs = [r for r in results if r.get("kind") == "grpo" and r.get("arm") == arm]
    by_step: dict[int, list[float]] = {}
    for r in runs:
        for row in dotted(r, f"curves.{kind}") or []:
            if row[column] is not None:
                by_step.setdefault(int(row[0]), []).append(float(row[column]))
    steps = [k for k in sorted(by_step) if len(by_step[k]) == len(runs)]
    mean, low, high = [], [], []
    for k in steps:
        m, half, _ = t_interval(by_step[k], confidence)
        mean.append(m)
        low.append(m - (half or 0.0))
        high.append(m + (half or 0.0))
    return steps, mean, low, high


def plot_curves(results: Sequence[Mapping[str, Any]], out: str | os.PathLike, baseline: str = BASELINE_ARM,
                confidence: float = 0.95) -> Path | None:
    """Learning curves per arm (mean over seeds, t-band): training reward and held-out turn accuracy,
    written as a PNG; None when no run has curves (or matplotlib is missing)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    arms = arm_order(results, baseline)
    if not any(dotted(r, "curves.train") for r in results):
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, (kind, column, label) in zip(axes, (("train", 1, "mean training reward"),
                                                ("eval", 1, "held-out turn accuracy"))):
        for arm in arms:
            steps, mean, low, high = curve_bands(results, arm, kind, column, confidence)
            if steps:
                ax.plot(steps, mean, marker="o", label=arm)
                ax.fill_between(steps, low, high, alpha=0.15)
        ax.set_xlabel("GRPO step")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(f"mean over seeds, {round(100 * confidence)}% t-band")
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out

"""Aggregation of turn verdicts into metrics, per domain and overall, and their presentation.

Buckets keep turns with a lost golden response apart from the others (DESIGN.md: never silently
counted):
  ``complete``    scored turns whose history is complete; samples all of whose turns are complete;
  ``incomplete``  the other turns; samples with at least one such turn;
  ``all``         everything together (for reference only).

Metrics of a set of turns (and of the samples they belong to):
  turn accuracy = right turns / turns;
  call accuracy = matched required golden calls / required golden calls (free calls are optional,
                  so they are reported apart as ``free_calls_matched`` / ``free_calls``);
  success       = samples all of whose scored turns are right / samples.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from toolrl.eval.match import ERROR_KINDS
from toolrl.eval.protocol import TurnResult

BUCKETS = ("complete", "incomplete", "all")
OVERALL = "overall"


@dataclasses.dataclass
class Metrics:
    """Counts over a set of scored turns and samples; the rates are derived."""

    turns: int = 0
    turns_correct: int = 0
    calls: int = 0
    calls_correct: int = 0
    free_calls: int = 0
    free_calls_matched: int = 0
    samples: int = 0
    samples_success: int = 0
    errors: dict[str, int] = dataclasses.field(default_factory=lambda: {kind: 0 for kind in ERROR_KINDS})

    @staticmethod
    def _rate(numerator: int, denominator: int) -> float:
        return numerator / denominator if denominator else float("nan")

    @property
    def turn_accuracy(self) -> float:
        return self._rate(self.turns_correct, self.turns)

    @property
    def call_accuracy(self) -> float:
        return self._rate(self.calls_correct, self.calls)

    @property
    def success_rate(self) -> float:
        return self._rate(self.samples_success, self.samples)

    def add_turn(self, result: TurnResult) -> None:
        self.turns += 1
        self.turns_correct += int(result.correct)
        self.calls += result.required
        self.calls_correct += result.required_correct
        self.free_calls += result.optional
        self.free_calls_matched += result.optional_matched
        for kind in result.errors:
            self.errors[kind] = self.errors.get(kind, 0) + 1

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.update(turn_accuracy=self.turn_accuracy, call_accuracy=self.call_accuracy, success_rate=self.success_rate)
        return {k: (None if isinstance(v, float) and v != v else v) for k, v in out.items()}  # NaN -> null


def aggregate(results: Iterable[TurnResult]) -> dict[str, dict[str, Metrics]]:
    """bucket -> domain (and ``overall``) -> metrics."""
    results = list(results)
    by_sample: dict[str, list[TurnResult]] = defaultdict(list)
    for result in results:
        by_sample[result.sample_id].append(result)
    metrics: dict[str, dict[str, Metrics]] = {bucket: defaultdict(Metrics) for bucket in BUCKETS}
    for result in results:
        bucket = "complete" if result.complete else "incomplete"
        for b in (bucket, "all"):
            metrics[b][result.domain].add_turn(result)
            metrics[b][OVERALL].add_turn(result)
    for turns in by_sample.values():
        bucket = "complete" if all(t.complete for t in turns) else "incomplete"
        success = all(t.correct for t in turns)
        for b in (bucket, "all"):
            for domain in (turns[0].domain, OVERALL):
                metrics[b][domain].samples += 1
                metrics[b][domain].samples_success += int(success)
    return {bucket: dict(sorted(m.items(), key=lambda kv: (kv[0] == OVERALL, kv[0]))) for bucket, m in metrics.items()}


@dataclasses.dataclass
class EvalReport:
    """What an evaluation produced: the turn verdicts, the metrics, and how it was run."""

    results: list[TurnResult]
    metrics: dict[str, dict[str, Metrics]]
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_results(cls, results: Sequence[TurnResult], settings: dict[str, Any] | None = None) -> "EvalReport":
        return cls(list(results), aggregate(results), dict(settings or {}))

    def overall(self, bucket: str = "complete") -> Metrics:
        return self.metrics[bucket].get(OVERALL, Metrics())

    def to_json(self, include_turns: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "settings": self.settings,
            "metrics": {b: {d: m.to_json() for d, m in per.items()} for b, per in self.metrics.items()},
        }
        if include_turns:
            out["turns"] = [r.to_json() for r in self.results]
        return out

    def save_json(self, path: str | Path, include_turns: bool = True) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(include_turns), indent=2, ensure_ascii=False))
        return path

    def table(self, bucket: str = "complete"):
        """A rich Table of one bucket (domain rows; turn/call accuracy, success, errors)."""
        from rich.table import Table

        table = Table(title=f"ComplexFuncBench evaluation ({bucket} history)")
        for column in ("domain", "turns", "turn acc", "calls", "call acc", "samples", "success"):
            table.add_column(column, justify="left" if column == "domain" else "right")
        table.add_column("errors", justify="left")
        for domain, m in self.metrics[bucket].items():
            errors = ", ".join(f"{k}={v}" for k, v in m.errors.items() if v)
            table.add_row(domain, str(m.turns), _pct(m.turn_accuracy), str(m.calls), _pct(m.call_accuracy),
                          str(m.samples), _pct(m.success_rate), errors or "-")
        return table

    def print(self, console=None) -> None:
        """Print the complete and incomplete buckets."""
        from rich.console import Console

        console = console or Console()
        for bucket in ("complete", "incomplete"):
            console.print(self.table(bucket))

    def plot(self, path: str | Path, bucket: str = "complete") -> Path:
        """Bar chart of turn accuracy, call accuracy and success per domain (PNG, Agg backend)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy as np

        per = self.metrics[bucket]
        domains = list(per)
        series = {"turn accuracy": [per[d].turn_accuracy for d in domains],
                  "call accuracy": [per[d].call_accuracy for d in domains],
                  "success": [per[d].success_rate for d in domains]}
        x = np.arange(len(domains))
        width = 0.27
        fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(domains)), 4))
        for offset, (label, values) in enumerate(series.items()):
            values = [0.0 if v != v else v for v in values]  # NaN (empty bucket) drawn as 0
            ax.bar(x + (offset - 1) * width, values, width, label=label)
        ax.set_xticks(x, [f"{d}\n(n={per[d].turns})" for d in domains])
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("rate")
        ax.set_title(f"ComplexFuncBench, {bucket} history")
        ax.legend(loc="upper right", fontsize="small")
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return path


def _pct(value: float) -> str:
    return "-" if value != value else f"{100 * value:.1f}%"

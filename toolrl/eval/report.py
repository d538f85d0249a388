"""An evaluation's report: a game's verdicts, their metrics (:mod:`toolrl.eval.metrics`), how it was
run, and their presentation (JSON, tables, plots).

Every report names its game: ``EvalReport.protocol`` holds the game's report name (``turn``, or
``official`` for the ``benchmark`` game, the name result files have always carried), in the JSON
(``"protocol"``, beside ``"game"``) and in the table titles. What differs between games (the unit of
a result, the headline bucket, the table layout, the aggregation) comes from the game's registration
(:mod:`toolrl.games`).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from toolrl import games
# Re-exported: the metrics lived here before games were registered (toolrl.eval, tests).
from toolrl.eval.metrics import (BUCKETS, OVERALL, Metrics, aggregate, aggregate_official,  # noqa: F401
                                 aggregate_samples)

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def dumps_json(value: Any, **kwargs: Any) -> str:
    """JSON text (non-ASCII kept readable) that always encodes as UTF-8: a lone surrogate (a prediction
    cut inside an emoji's UTF-16 pair) is written as its ``\\udXXX`` escape, which reads back the same."""
    text = json.dumps(value, ensure_ascii=False, **kwargs)
    return _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


# The names reports carry (`Game.report_name`) of the evaluation games, for readers and --protocol choices.
PROTOCOLS = ("turn", "official")


@dataclasses.dataclass
class EvalReport:
    """What an evaluation produced: the verdicts, the metrics, how it was run and which game it played.

    ``results`` holds one result per unit of the game (:attr:`toolrl.games.Game.unit`): a
    :class:`toolrl.eval.protocol.TurnResult` per scored turn (``turn``) or a
    :class:`toolrl.eval.official.SampleResult` per sample (``benchmark``). ``protocol`` is the game's
    report name (``turn`` / ``official``)."""

    results: list[Any]
    metrics: dict[str, dict[str, Metrics]]
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    protocol: str = "turn"

    @classmethod
    def from_results(cls, results: Sequence[Any], settings: dict[str, Any] | None = None,
                     protocol: str = "turn") -> "EvalReport":
        """The report of a game's results; `protocol` names the game (any registered name or alias)."""
        game = games.get(protocol, field="evaluation protocol", evaluable=True)
        metrics = game.aggregate(results)
        name = game.report_name
        return cls(list(results), metrics, dict(settings or {}, protocol=name), name)

    @property
    def game(self) -> games.Game:
        return games.get(self.protocol, evaluable=True)

    def overall(self, bucket: str | None = None) -> Metrics:
        """Overall metrics of a bucket (default: the game's headline bucket, ``complete`` for ``turn``,
        ``all`` for ``benchmark``)."""
        return self.metrics[bucket or self.default_bucket].get(OVERALL, Metrics())

    def to_json(self, include_turns: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "protocol": self.protocol,
            "game": self.game.name,
            "settings": self.settings,
            "metrics": {b: {d: m.to_json() for d, m in per.items()} for b, per in self.metrics.items()},
        }
        if include_turns:
            out[self.game.unit] = [r.to_json() for r in self.results]
        return out

    def save_benchmark_jsonl(self, path: str | Path) -> Path:
        """The benchmark game: the run in the benchmark's own result format (one line per sample)."""
        if not self.game.benchmark_records:
            raise ValueError("only an official-protocol report has the benchmark's per-sample records")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as handle:
            for result in self.results:
                handle.write(dumps_json(result.to_benchmark_record()) + "\n")
        return path

    def save_json(self, path: str | Path, include_turns: bool = True) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dumps_json(self.to_json(include_turns), indent=2), encoding="utf-8")
        return path

    def table(self, bucket: str | None = None):
        """A rich Table of one bucket (domain rows; turn/call accuracy, success, errors), titled with the
        protocol. Default bucket: ``complete`` (turn), ``all`` (official)."""
        bucket = bucket or self.default_bucket
        game = self.game
        unit = "history" if game.unit == "turns" else game.unit  # "complete history", "all samples"
        title = f"ComplexFuncBench evaluation, {game.title}, {bucket} {unit}"
        return _TABLES[game.unit](self, Table(title=title), bucket)

    def _turn_table(self, table, bucket: str):
        for column in ("domain", "turns", "turn acc", "calls", "call acc", "samples", "success"):
            table.add_column(column, justify="left" if column == "domain" else "right")
        table.add_column("errors", justify="left")
        for domain, m in self.metrics[bucket].items():
            errors = ", ".join(f"{k}={v}" for k, v in m.errors.items() if v)
            table.add_row(domain, str(m.turns), _pct(m.turn_accuracy), str(m.calls), _pct(m.call_accuracy),
                          str(m.samples), _pct(m.success_rate), errors or "-")
        return table

    def _sample_table(self, table, bucket: str):
        for column in ("domain", "samples", "success", "calls", "call acc", "turns", "turn acc", "undecided"):
            table.add_column(column, justify="left" if column == "domain" else "right")
        table.add_column("outcomes; call errors", justify="left")
        for domain, m in self.metrics[bucket].items():
            outcomes = ", ".join(f"{k[len('outcome:'):]}={v}" for k, v in sorted(m.errors.items())
                                 if v and k.startswith("outcome:"))
            calls = ", ".join(f"{k}={v}" for k, v in sorted(m.errors.items()) if v and not k.startswith("outcome:"))
            table.add_row(domain, str(m.samples), _pct(m.success_rate), str(m.calls), _pct(m.call_accuracy),
                          str(m.turns), _pct(m.turn_accuracy),
                          f"{m.undecided_calls} calls / {m.undecided_samples} samples",
                          "; ".join(x for x in (outcomes, calls) if x) or "-")
        return table

    @property
    def default_bucket(self) -> str:
        return self.game.headline_bucket

    def print(self, console=None) -> None:
        """Per turn: the complete and incomplete buckets. Per sample (benchmark): all samples, and how many
        were shown a response the benchmark data lost."""
        console = console or Console()
        if self.game.unit == "samples":
            console.print(self.table("all"))
            everything, complete = self.overall("all"), self.overall("complete")
            console.print(f"protocol official: {everything.samples - complete.samples} of {everything.samples} samples "
                          "were shown a response the benchmark data lost (bucket 'incomplete'); "
                          f"{everything.undecided_calls} calls undecided (live API / judge), counted neither right "
                          "nor wrong")
            return
        for bucket in ("complete", "incomplete"):
            console.print(self.table(bucket))

    def plot(self, path: str | Path, bucket: str | None = None) -> Path:
        """Bar chart of turn accuracy, call accuracy and success per domain (PNG, Agg backend)."""
        bucket = bucket or self.default_bucket
        # Local: matplotlib (several seconds to import) serves this chart only.
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # local, like matplotlib; after choosing the Agg backend

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
        ax.set_title(f"ComplexFuncBench, {self.game.title}, {bucket} history", fontsize="small")
        ax.legend(loc="upper right", fontsize="small")
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return path


def _pct(value: float) -> str:
    return "-" if value != value else f"{100 * value:.1f}%"


# The table layout of a game's result unit (`Game.unit`).
_TABLES = {"turns": EvalReport._turn_table, "samples": EvalReport._sample_table}

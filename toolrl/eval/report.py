"""Aggregation of turn verdicts into metrics, per domain and overall, and their presentation.

Buckets keep turns with a lost golden response apart from the others (docs/design.md, "Evaluation":
never silently counted):
  ``complete``    scored turns whose history is complete; samples all of whose turns are complete;
  ``incomplete``  the other turns; samples with at least one such turn;
  ``all``         everything together (for reference only).

Metrics of a set of turns (and of the samples they belong to), protocol ``turn``:
  turn accuracy = right turns / turns;
  call accuracy = matched required golden calls / required golden calls (free calls are optional,
                  so they are reported apart as ``free_calls_matched`` / ``free_calls``);
  success       = samples all of whose scored turns are right / samples.

Protocol ``official`` (:mod:`toolrl.eval.official`, the benchmark's own counts, per sample):
  success       = successful samples / samples (Success Rate);
  call accuracy = correct calls / golden calls, lookups included (Call Accuracy);
  turn accuracy = the benchmark's success turns / golden turns, lookup-only turns included;
  ``undecided_calls`` (calls only the live API or the LLM judge could decide), ``undecided_samples``
  (samples with one; never counted as successes) and ``undecided_turns`` (their golden turns not
  credited) say how much the rates could still rise. ``errors`` holds ``outcome:KIND`` once per sample
  (``outcome:undecided`` for a sample with an undecided call) and one call-error kind per wrong,
  unpaired or undecided call. A sample is ``complete`` when no response the benchmark data lost was
  shown to the policy.

Every report names its protocol (``EvalReport.protocol``, in the JSON and in the table titles).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from toolrl.eval.match import ERROR_KINDS
from toolrl.eval.protocol import TurnResult

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def dumps_json(value: Any, **kwargs: Any) -> str:
    """JSON text (non-ASCII kept readable) that always encodes as UTF-8: a lone surrogate (a prediction
    cut inside an emoji's UTF-16 pair) is written as its ``\\udXXX`` escape, which reads back the same."""
    text = json.dumps(value, ensure_ascii=False, **kwargs)
    return _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


BUCKETS = ("complete", "incomplete", "all")
OVERALL = "overall"
PROTOCOLS = ("turn", "official")
PROTOCOL_TITLES = {"turn": "protocol: turn (teacher-forced per scored turn)",
                   "official": "protocol: official (the benchmark's free-running runner)"}


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
    undecided_calls: int = 0
    undecided_samples: int = 0
    undecided_turns: int = 0

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

    @property
    def undecided_call_share(self) -> float:
        return self._rate(self.undecided_calls, self.calls)

    @property
    def undecided_sample_share(self) -> float:
        return self._rate(self.undecided_samples, self.samples)

    def add_sample(self, result: Any) -> None:
        """One sample of the official protocol (a :class:`toolrl.eval.official.SampleResult`)."""
        self.samples += 1
        self.samples_success += int(result.success)
        self.turns += result.turns
        self.turns_correct += result.success_turns
        self.calls += result.calls
        self.calls_correct += result.correct_calls
        self.undecided_calls += result.undecided_calls
        if result.undecided:
            self.undecided_samples += 1
            self.undecided_turns += result.turns - result.success_turns
        outcome = "outcome:undecided" if result.undecided else f"outcome:{result.outcome}"
        for kind in [outcome] + list(result.call_errors):
            self.errors[kind] = self.errors.get(kind, 0) + 1

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
        out.update(turn_accuracy=self.turn_accuracy, call_accuracy=self.call_accuracy, success_rate=self.success_rate,
                   undecided_call_share=self.undecided_call_share,
                   undecided_sample_share=self.undecided_sample_share)
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
    return _sorted(metrics)


def _sorted(metrics: dict[str, dict[str, Metrics]]) -> dict[str, dict[str, Metrics]]:
    return {bucket: dict(sorted(m.items(), key=lambda kv: (kv[0] == OVERALL, kv[0]))) for bucket, m in metrics.items()}


def aggregate_official(results: Iterable[Any]) -> dict[str, dict[str, Metrics]]:
    """bucket -> domain (and ``overall``) -> metrics, from official-protocol sample results."""
    metrics: dict[str, dict[str, Metrics]] = {bucket: defaultdict(lambda: Metrics(errors={})) for bucket in BUCKETS}
    for result in results:
        for bucket in ("complete" if result.complete else "incomplete", "all"):
            for domain in (result.domain, OVERALL):
                metrics[bucket][domain].add_sample(result)
    return _sorted(metrics)


@dataclasses.dataclass
class EvalReport:
    """What an evaluation produced: the verdicts, the metrics, how it was run and under which protocol.

    ``results`` holds one :class:`TurnResult` per scored turn (protocol ``turn``) or one
    :class:`toolrl.eval.official.SampleResult` per sample (protocol ``official``)."""

    results: list[Any]
    metrics: dict[str, dict[str, Metrics]]
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    protocol: str = "turn"

    @classmethod
    def from_results(cls, results: Sequence[Any], settings: dict[str, Any] | None = None,
                     protocol: str = "turn") -> "EvalReport":
        if protocol not in PROTOCOLS:
            raise ValueError(f"unknown evaluation protocol {protocol!r}; expected one of {PROTOCOLS}")
        metrics = aggregate_official(results) if protocol == "official" else aggregate(results)
        return cls(list(results), metrics, dict(settings or {}, protocol=protocol), protocol)

    def overall(self, bucket: str | None = None) -> Metrics:
        """Overall metrics of a bucket (default: ``complete`` for the turn protocol, ``all`` for official)."""
        return self.metrics[bucket or self.default_bucket].get(OVERALL, Metrics())

    def to_json(self, include_turns: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "protocol": self.protocol,
            "settings": self.settings,
            "metrics": {b: {d: m.to_json() for d, m in per.items()} for b, per in self.metrics.items()},
        }
        if include_turns:
            out["samples" if self.protocol == "official" else "turns"] = [r.to_json() for r in self.results]
        return out

    def save_benchmark_jsonl(self, path: str | Path) -> Path:
        """Official protocol: the run in the benchmark's own result format (one line per sample)."""
        if self.protocol != "official":
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
        from rich.table import Table

        bucket = bucket or self.default_bucket
        unit = "samples" if self.protocol == "official" else "history"
        title = f"ComplexFuncBench evaluation, {PROTOCOL_TITLES[self.protocol]}, {bucket} {unit}"
        if self.protocol == "official":
            return self._official_table(Table(title=title), bucket)
        table = Table(title=title)
        for column in ("domain", "turns", "turn acc", "calls", "call acc", "samples", "success"):
            table.add_column(column, justify="left" if column == "domain" else "right")
        table.add_column("errors", justify="left")
        for domain, m in self.metrics[bucket].items():
            errors = ", ".join(f"{k}={v}" for k, v in m.errors.items() if v)
            table.add_row(domain, str(m.turns), _pct(m.turn_accuracy), str(m.calls), _pct(m.call_accuracy),
                          str(m.samples), _pct(m.success_rate), errors or "-")
        return table

    def _official_table(self, table, bucket: str):
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
        return "all" if self.protocol == "official" else "complete"

    def print(self, console=None) -> None:
        """Turn protocol: the complete and incomplete buckets. Official: all samples, and how many were
        shown a response the benchmark data lost."""
        from rich.console import Console

        console = console or Console()
        if self.protocol == "official":
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
        ax.set_title(f"ComplexFuncBench, {PROTOCOL_TITLES[self.protocol]}, {bucket} history", fontsize="small")
        ax.legend(loc="upper right", fontsize="small")
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return path


def _pct(value: float) -> str:
    return "-" if value != value else f"{100 * value:.1f}%"

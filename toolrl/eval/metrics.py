"""Metrics of a game's results, per domain and overall, in buckets (docs/design.md, "Metrics").

Buckets keep turns with a lost golden response apart from the others (never silently counted):
  ``complete``    scored turns whose history is complete; samples all of whose turns are complete;
  ``incomplete``  the other turns; samples with at least one such turn;
  ``all``         everything together (for reference only).

Game ``turn`` (:func:`aggregate`, one result per scored turn):
  turn accuracy = right turns / turns;
  call accuracy = matched required golden calls / required golden calls (free calls are optional,
                  so they are reported apart as ``free_calls_matched`` / ``free_calls``);
  success       = samples all of whose scored turns are right / samples.

Game ``benchmark`` (:func:`aggregate_samples`, the benchmark's own counts, one result per sample):
  success       = successful samples / samples (Success Rate);
  call accuracy = correct calls / golden calls, lookups included (Call Accuracy);
  turn accuracy = the benchmark's success turns / golden turns, lookup-only turns included;
  ``undecided_calls`` (calls only the live API or the LLM judge could decide), ``undecided_samples``
  (samples with one; never counted as successes) and ``undecided_turns`` (their golden turns not
  credited) say how much the rates could still rise. ``errors`` holds ``outcome:KIND`` once per sample
  (``outcome:undecided`` for a sample with an undecided call) and one call-error kind per wrong,
  unpaired or undecided call. A sample is ``complete`` when no response the benchmark data lost was
  shown to the policy.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterable
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


def aggregate_samples(results: Iterable[Any]) -> dict[str, dict[str, Metrics]]:
    """bucket -> domain (and ``overall``) -> metrics, from the benchmark game's sample results."""
    metrics: dict[str, dict[str, Metrics]] = {bucket: defaultdict(lambda: Metrics(errors={})) for bucket in BUCKETS}
    for result in results:
        for bucket in ("complete" if result.complete else "incomplete", "all"):
            for domain in (result.domain, OVERALL):
                metrics[bucket][domain].add_sample(result)
    return _sorted(metrics)


aggregate_official = aggregate_samples  # the name before games were registered

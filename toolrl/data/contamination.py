"""How much of a test set's golden calls a training set contains (decontamination for the study).

A call is identified by its cache key (function + canonical arguments, :func:`toolrl.env.canonical.cache_key`),
the identity the environment answers by. For the scored turns of the test samples (complete golden
history, :func:`toolrl.eval.protocol.build_turn_tasks`) three shares are reported:

* ``exact_turns``: turns whose exact golden call set (the required, non-free calls) is that of some
  golden turn of the training data (a training task that poses the same turn);
* ``any_call_turns``: turns with at least one golden call that occurs anywhere in the training data;
* ``calls``: test golden calls (free location lookups included) that occur in the training data.

The study's training data must score 0 on all three: ``exact_turns`` is the issue's figure, the other
two are stricter. :func:`drop_overlapping` removes training samples calling any test key.

CLI::

    python -m toolrl.data.contamination --train SOURCE [--train SOURCE ...] [--test eval_100] [--synth_dir DIR] [--json OUT]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from toolrl.data.golden import GoldenCall, GoldenSample, load_samples
from toolrl.env.canonical import cache_key
from toolrl.eval.protocol import build_turn_tasks


def call_key(call: GoldenCall) -> str:
    return cache_key(call.function, call.arguments)


def sample_keys(samples: Iterable[GoldenSample]) -> set[str]:
    """Every golden call key of the samples."""
    return {call_key(call) for sample in samples for call in sample.calls}


@dataclasses.dataclass(frozen=True)
class ContaminationReport:
    """Overlap of a test set's scored turns and golden calls with a training set.

    Attributes:
      train_sources, test_source: what was compared.
      train_samples, test_samples: sample counts.
      test_turns: scored turns of the test samples (complete golden history).
      exact_turns: of those, turns whose exact call-key set is a training turn's call-key set.
      any_call_turns: of those, turns with at least one call key found in the training data.
      test_calls: golden calls of the test samples; calls: how many of them occur in the training data.
      examples: up to 5 overlapping call keys, for a reader to check.
    """

    train_sources: tuple[str, ...]
    test_source: str
    train_samples: int
    test_samples: int
    test_turns: int
    exact_turns: int
    any_call_turns: int
    test_calls: int
    calls: int
    examples: tuple[str, ...] = ()

    @property
    def exact_turn_share(self) -> float:
        return self.exact_turns / self.test_turns if self.test_turns else 0.0

    def as_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["exact_turn_share"] = self.exact_turn_share
        out["any_call_turn_share"] = self.any_call_turns / self.test_turns if self.test_turns else 0.0
        out["call_share"] = self.calls / self.test_calls if self.test_calls else 0.0
        return out

    def format(self) -> str:
        d = self.as_dict()
        return (f"contamination of {self.test_source} ({self.test_samples} samples, {self.test_turns} scored turns, "
                f"{self.test_calls} golden calls) by {' + '.join(self.train_sources)} ({self.train_samples} samples):\n"
                f"  scored turns whose exact golden call set is a training turn's: {self.exact_turns} "
                f"({d['exact_turn_share']:.1%})\n"
                f"  scored turns with any golden call in training data:           {self.any_call_turns} "
                f"({d['any_call_turn_share']:.1%})\n"
                f"  golden calls found in training data:                          {self.calls} ({d['call_share']:.1%})")


def contamination_report(train: Sequence[GoldenSample], test: Sequence[GoldenSample],
                         train_sources: Sequence[str] = (), test_source: str = "") -> ContaminationReport:
    """The overlap of ``test``'s scored turns and calls with ``train`` (any turn of any training sample)."""
    train_keys = sample_keys(train)
    # A scored turn's identity is its required (non-free) calls; training turns are compared the same way.
    train_turn_sets = {frozenset(call_key(c) for c in turn.calls if not c.is_free)
                       for sample in train for turn in sample.turns}
    test_turns = exact = any_call = 0
    for sample in test:
        for task in build_turn_tasks(sample):
            if not task.complete:
                continue
            test_turns += 1
            exact += frozenset(call_key(c) for c in task.required) in train_turn_sets
            any_call += any(call_key(c) in train_keys for c in task.golden)
    test_calls = [call_key(c) for sample in test for c in sample.calls]
    found = [k for k in test_calls if k in train_keys]
    return ContaminationReport(tuple(train_sources), test_source, len(train), len(test), test_turns, exact, any_call,
                               len(test_calls), len(found), tuple(sorted(set(found))[:5]))


def drop_overlapping(train: Sequence[GoldenSample], test_keys: set[str]) -> tuple[list[GoldenSample], int]:
    """(the training samples calling no key of ``test_keys``, how many were dropped)."""
    kept = [s for s in train if not any(call_key(c) in test_keys for c in s.calls)]
    return kept, len(train) - len(kept)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m toolrl.data.contamination", description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", action="append", required=True, help="training source (repeatable), e.g. synthetic:train")
    parser.add_argument("--test", default="eval_100", help="test source")
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--synth_dir", default=None, help="TFDS directory of the synthesized traces")
    parser.add_argument("--decontaminate", action="store_true", help="drop training samples calling a test key first")
    parser.add_argument("--json", default=None, help="also write the report as JSON here")
    args = parser.parse_args(argv)
    test = load_samples(args.test, args.data_dir, synth_dir=args.synth_dir)
    train = [s for source in args.train for s in load_samples(source, args.data_dir, synth_dir=args.synth_dir)]
    if args.decontaminate:
        train, dropped = drop_overlapping(train, sample_keys(test))
        print(f"dropped {dropped} training samples calling a {args.test} golden call")
    report = contamination_report(train, test, args.train, args.test)
    print(report.format())
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report.as_dict(), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    from toolrl.cli import run_cli

    run_cli(main, prog="python -m toolrl.data.contamination")

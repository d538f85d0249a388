"""Score given predictions, so that other systems can be compared on the same protocol.

Predictions: a JSONL file, one record per line,
  ``{"sample_id": str, "turn": int, "text": str}``  -- raw model text with ``<tool_call>`` blocks, or
  ``{"sample_id": str, "turn": int, "calls": [{"name": str, "arguments": {...}}, ...]}``,
optionally with ``"round": int`` (default 0). ``turn`` is the scored-turn index of
:func:`toolrl.eval.protocol.build_turn_tasks`; ``--dump-requests FILE`` writes the round-0 prompt of
every scored turn (``sample_id``, ``turn``, ``messages``, ``tools``) so that another system can answer
exactly those. Several records for the same (sample_id, turn, round) are concatenated. A scored turn
with no record counts as a turn where the model made no call.

CLI::

  python -m toolrl.eval.score --predictions FILE [--split eval_100] [--out DIR] [--no-response-equivalence]
  python -m toolrl.eval.score --dump-requests FILE [--split eval_100]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from toolrl.eval.evaluator import evaluate, make_matcher
from toolrl.eval.match import CallMatcher
from toolrl.eval.policies import render_calls
from toolrl.eval.protocol import build_turn_tasks, history_messages
from toolrl.eval.report import EvalReport
from toolrl.data.golden import load_samples as load_eval_samples
from toolrl.eval.types import EvalSample, PolicyRequest


class PredictionFormatError(ValueError):
    """A predictions record is malformed; the message names the line and the field."""


def parse_prediction_record(record: Any, where: str) -> tuple[tuple[str, int, int], str]:
    """((sample_id, turn, round), text) of one record."""
    if not isinstance(record, dict):
        raise PredictionFormatError(f"{where}: expected an object, got {type(record).__name__}")
    sample_id, turn, round_ = record.get("sample_id"), record.get("turn"), record.get("round", 0)
    if not isinstance(sample_id, str):
        raise PredictionFormatError(f"{where}: 'sample_id' must be a string")
    for name, value in (("turn", turn), ("round", round_)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise PredictionFormatError(f"{where}: {name!r} must be a non-negative integer, got {value!r}")
    if "text" in record:
        if not isinstance(record["text"], str):
            raise PredictionFormatError(f"{where}: 'text' must be a string")
        text = record["text"]
    elif "calls" in record:
        calls = record["calls"]
        if not isinstance(calls, list) or not all(isinstance(c, dict) and isinstance(c.get("name"), str) for c in calls):
            raise PredictionFormatError(f"{where}: 'calls' must be a list of {{'name', 'arguments'}} objects")
        text = render_calls(calls)
    else:
        raise PredictionFormatError(f"{where}: a record needs 'text' or 'calls'")
    return (sample_id, turn, round_), text


def read_predictions(path: str | os.PathLike) -> dict[tuple[str, int, int], str]:
    """(sample_id, turn, round) -> text, records of the same key joined by newlines."""
    out: dict[tuple[str, int, int], list[str]] = defaultdict(list)
    with Path(path).open() as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise PredictionFormatError(f"{path}:{number}: not JSON ({err.msg})") from err
            key, text = parse_prediction_record(record, f"{path}:{number}")
            out[key].append(text)
    return {key: "\n".join(texts) for key, texts in out.items()}


class PredictionsPolicy:
    """A policy that answers from recorded predictions (empty text where none was recorded)."""

    def __init__(self, predictions: dict[tuple[str, int, int], str]):
        self.predictions = predictions

    def __call__(self, requests: list[PolicyRequest]) -> list[str]:
        return [self.predictions.get((r.sample_id, r.turn, r.round), "") for r in requests]


def score_predictions(samples: Sequence[EvalSample], predictions: dict[tuple[str, int, int], str],
                      matcher: CallMatcher, *, max_rounds: int = 3, settings: dict[str, Any] | None = None) -> EvalReport:
    """Score recorded predictions with the same protocol as a live policy."""
    known = {(t.sample_id, t.turn) for s in samples for t in build_turn_tasks(s)}
    unknown = sorted({(sid, turn) for sid, turn, _ in predictions} - known)
    settings = dict(settings or {}, unknown_prediction_keys=[list(k) for k in unknown[:20]], n_unknown=len(unknown))
    return evaluate(samples, PredictionsPolicy(predictions), matcher, max_rounds=max_rounds, settings=settings)


def iter_requests(samples: Iterable[EvalSample]) -> Iterable[dict[str, Any]]:
    """The round-0 request of every scored turn, as JSON records."""
    for sample in samples:
        for task in build_turn_tasks(sample):
            yield {"sample_id": task.sample_id, "turn": task.turn, "messages": history_messages(task),
                   "tools": list(task.tools), "complete_history": task.complete}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m toolrl.eval.score", description=__doc__.split("\n\n")[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--predictions", help="JSONL of {sample_id, turn, text|calls[, round]}")
    action.add_argument("--dump-requests", help="write the round-0 prompt of every scored turn to this JSONL")
    parser.add_argument("--split", default="eval_100", help="eval_100, bfcl_training, or a path (.jsonl = benchmark)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--max-samples", type=int, default=None)
    parser.add_argument("--max-rounds", type=int, default=3)
    parser.add_argument("--out", default=None, help="directory for eval_results.json and eval_by_domain.png")
    parser.add_argument("--no-response-equivalence", action="store_true", help="do not consult the response cache")
    parser.add_argument("--cache", default=None, help="response cache file (default: the user cache)")
    args = parser.parse_args(argv)
    samples = load_eval_samples(args.split, args.data_dir, args.max_samples)
    if args.dump_requests:
        with Path(args.dump_requests).open("w") as handle:
            for record in iter_requests(samples):
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        print(f"wrote requests to {args.dump_requests}")
        return 0
    lookup = None
    if not args.no_response_equivalence:
        from toolrl.env.cache import open_default_cache

        lookup = open_default_cache(args.data_dir, args.cache).lookup
    report = score_predictions(samples, read_predictions(args.predictions), make_matcher(args.data_dir, lookup),
                               max_rounds=args.max_rounds, settings={"split": args.split, "predictions": args.predictions})
    report.print()
    if args.out:
        print(f"wrote {report.save_json(Path(args.out) / 'eval_results.json')}")
        print(f"wrote {report.plot(Path(args.out) / 'eval_by_domain.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

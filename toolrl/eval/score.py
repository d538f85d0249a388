"""Score given predictions, so that other systems can be compared on the same protocol.

Predictions: a JSONL file, one record per line,
  ``{"sample_id": str, "turn": int, "text": str}``  -- raw model text with ``<tool_call>`` blocks, or
  ``{"sample_id": str, "turn": int, "calls": [{"name": str, "arguments": {...}}, ...]}``,
optionally with ``"round": int`` (default 0). ``turn`` is the scored-turn index of
:func:`toolrl.eval.protocol.build_turn_tasks`; ``--dump-requests FILE`` writes the round-0 prompt of
every scored turn (``sample_id``, ``turn``, ``messages``, ``tools``) so that another system can answer
exactly those. A scored turn with no record counts as a turn where the model made no call.

Nothing is scored silently wrong; each of these stops with one line naming the file (and line):
  * an empty file (no records);
  * a second record for the same (sample_id, turn, round): "line N repeats the record of line M"
    (put all calls of a turn in one record; a file appended twice would otherwise score 0);
  * a line that is not UTF-8, not JSON, nested more than ``MAX_RECORD_DEPTH`` levels, or holding a
    number too long to read;
  * predictions none of which matches a scored turn of the split (wrong --split or ids).
Predictions that match no scored turn while others do are counted and printed on stderr with
examples (they are also in the report settings, ``unknown_prediction_keys``).

CLI::

  python -m toolrl.eval.score --predictions FILE [--split eval_100] [--out DIR] [--no-response-equivalence]
  python -m toolrl.eval.score --dump-requests FILE [--split eval_100]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from toolrl.cli import UserError, run_cli
from toolrl.eval.evaluator import evaluate, make_matcher
from toolrl.eval.match import CallMatcher
from toolrl.eval.policies import render_calls
from toolrl.eval.protocol import build_turn_tasks, history_messages
from toolrl.eval.report import EvalReport
from toolrl.data.golden import load_samples as load_eval_samples
from toolrl.eval.types import EvalSample, PolicyRequest


MAX_RECORD_DEPTH = 64  # objects / arrays nested in one record (real ones nest about 6 levels)


class PredictionFormatError(UserError):
    """A predictions file is unusable; the message names the file, the line and the field."""


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


def _too_deep(value: Any, limit: int) -> bool:
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth >= limit:
                return True
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return False


def read_predictions(path: str | os.PathLike) -> dict[tuple[str, int, int], str]:
    """(sample_id, turn, round) -> text. Raises PredictionFormatError (see the module docstring)."""
    out: dict[tuple[str, int, int], str] = {}
    first_line: dict[tuple[str, int, int], int] = {}
    with Path(path).open("rb") as handle:
        for number, raw in enumerate(handle, 1):
            where = f"{path}:{number}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise PredictionFormatError(f"{where}: not UTF-8 text (byte {err.start} of the line)") from None
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise PredictionFormatError(f"{where}: not JSON ({err.msg} at column {err.colno})") from err
            except RecursionError:
                raise PredictionFormatError(f"{where}: nested more than {MAX_RECORD_DEPTH} levels deep") from None
            except ValueError as err:  # e.g. an integer over Python's 4,300-digit conversion limit
                raise PredictionFormatError(f"{where}: unreadable value ({err}; too many digits)") from err
            if _too_deep(record, MAX_RECORD_DEPTH):
                raise PredictionFormatError(f"{where}: nested more than {MAX_RECORD_DEPTH} levels deep")
            key, text = parse_prediction_record(record, where)
            if key in first_line:
                raise PredictionFormatError(
                    f"{where}: line {number} repeats the record of line {first_line[key]} (sample_id {key[0]!r}, "
                    f"turn {key[1]}, round {key[2]}); give each scored turn and round one record with all its calls")
            first_line[key] = number
            out[key] = text
    if not out:
        raise PredictionFormatError(f"{path}: no prediction records (the file is empty)")
    return out


def unknown_prediction_keys(samples: Sequence[EvalSample], predictions: dict[tuple[str, int, int], str],
                            split: str = "the split") -> list[tuple[str, int, int]]:
    """Prediction keys that match no scored turn of `samples`, sorted.

    Raises PredictionFormatError when none of the predictions matches (wrong split or ids)."""
    known = {(t.sample_id, t.turn) for s in samples for t in build_turn_tasks(s)}
    unknown = sorted(key for key in predictions if (key[0], key[1]) not in known)
    if predictions and len(unknown) == len(predictions):
        raise PredictionFormatError(
            f"none of the {len(predictions)} predictions matches a scored turn of {split} "
            f"({len(samples)} samples); e.g. {_examples(unknown)}; check --split, --max-samples and the ids")
    return unknown


def _examples(keys: Sequence[tuple[str, int, int]], n: int = 3) -> str:
    return ", ".join(f"{sid!r} turn {turn}" for sid, turn, _ in keys[:n]) + (" ..." if len(keys) > n else "")


class PredictionsPolicy:
    """A policy that answers from recorded predictions (empty text where none was recorded)."""

    def __init__(self, predictions: dict[tuple[str, int, int], str]):
        self.predictions = predictions

    def __call__(self, requests: list[PolicyRequest]) -> list[str]:
        return [self.predictions.get((r.sample_id, r.turn, r.round), "") for r in requests]


def score_predictions(samples: Sequence[EvalSample], predictions: dict[tuple[str, int, int], str],
                      matcher: CallMatcher, *, max_rounds: int = 3, settings: dict[str, Any] | None = None) -> EvalReport:
    """Score recorded predictions with the same protocol as a live policy.

    Raises PredictionFormatError when no prediction matches a scored turn; the ones that match none
    are listed in the report's settings (``unknown_prediction_keys``, ``n_unknown``)."""
    unknown = unknown_prediction_keys(samples, predictions, str((settings or {}).get("split", "the split")))
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
    predictions = read_predictions(args.predictions)
    unknown = unknown_prediction_keys(samples, predictions, f"split {args.split}")
    if unknown:
        print(f"warning: {len(unknown)} of {len(predictions)} predictions match no scored turn of split {args.split} "
              f"({len(samples)} samples) and are not scored; e.g. {_examples(unknown)}", file=sys.stderr)
    report = score_predictions(samples, predictions, make_matcher(args.data_dir, lookup),
                               max_rounds=args.max_rounds, settings={"split": args.split, "predictions": args.predictions})
    report.print()
    if args.out:
        print(f"wrote {report.save_json(Path(args.out) / 'eval_results.json')}")
        print(f"wrote {report.plot(Path(args.out) / 'eval_by_domain.png')}")
    return 0


if __name__ == "__main__":
    from toolrl.env.cache import CacheError

    run_cli(main, prog="python -m toolrl.eval.score", user_errors=(CacheError,))

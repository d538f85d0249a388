"""Score given predictions, so that other systems can be compared on the same protocol.

Predictions: a JSONL file, one record per line,
  ``{"sample_id": str, "turn": int, "text": str}``  -- raw model text with ``<tool_call>`` blocks, or
  ``{"sample_id": str, "turn": int, "calls": [{"name": str, "arguments": {...}}, ...]}``,
optionally with ``"round": int`` (default 0). ``turn`` is the scored-turn index of
:func:`toolrl.eval.protocol.build_turn_tasks`; ``--dump-requests FILE`` writes the round-0 prompt of
every scored turn (``sample_id``, ``turn``, ``messages``, ``tools``) so that another system can answer
exactly those. A scored turn with no record counts as a turn where the model made no call.

``--protocol official`` (:mod:`toolrl.eval.official`, the benchmark's own runner and rules) runs
each sample free-running, so a file can only be *replayed*: the k-th answer the protocol asks of a
sample is the sample's k-th recorded model message, and the run stops where the benchmark would.
What is scored is therefore, per sample, a sequence of model messages:
  * the benchmark's own output format (``evaluation.py``'s result JSONL, detected by its
    ``gen_convs`` field): ``{"id", "gen_convs": [...], "message", "count_dict", ...}``. The model's
    messages are the assistant entries of ``gen_convs`` in order (``function_call`` lists become
    tool calls, ``content`` is the final answer; function names are mapped to booking_api.json names
    where needed). Since the benchmark produced it free-running, the replay is that very run, and
    the report compares our counts with the record's ``count_dict`` and ``message``
    (``benchmark_agreement`` in the settings, printed). A record that ends before our run does (the
    benchmark stopped it while we would go on, e.g. a call the live API accepted and the cache cannot
    decide) ends as a final answer there and is counted in ``replay_exhausted``. A record whose
    ``message`` is an error the runner returns before appending the offending message
    (``func_hallucination``, ``decode_error``, ``name_error``: ``gen_convs`` ends early) ends with that
    error where its recorded messages end (``official.recorded_error_text``), as the benchmark ended it;
  * our format: a sample's records sorted by (``turn``, ``round``) are its successive messages, and
    when they run out the model is taken to answer without a call (its final answer). Predictions
    made with the teacher-forced ``turn`` protocol read this way are what the model would have done
    had its conversation gone as the golden one did: exact while it stays on the golden trajectory
    (e.g. the golden answers score 100 %), an approximation after it leaves it.
``--export-benchmark FILE`` writes an official run in the benchmark's format.

Nothing is scored silently wrong; each of these stops with one line naming the file (and line):
  * an empty file (no records);
  * a second record for the same (sample_id, turn, round), or the same benchmark ``id``: "line N
    repeats the record of line M" (put all calls of a turn in one record; a file appended twice would
    otherwise score 0);
  * a line that is not UTF-8, not JSON, nested more than ``MAX_RECORD_DEPTH`` levels, or holding a
    number too long to read;
  * a benchmark-format file scored with ``--protocol turn`` (it has no per-turn predictions);
  * predictions none of which matches a scored turn (a sample, in official mode) of the split.
Predictions that match no scored turn while others do are counted and printed on stderr with
examples (they are also in the report settings, ``unknown_prediction_keys``).

CLI::

  python -m toolrl.eval.score --predictions FILE [--protocol turn|official] [--split eval_100] [--out DIR]
                              [--no-response-equivalence] [--export-benchmark FILE]
  python -m toolrl.eval.score --dump-requests FILE [--split eval_100]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from toolrl import games
from toolrl.cli import UserError, run_cli
from toolrl.eval.evaluator import evaluate, make_matcher
from toolrl.eval.match import CallMatcher, bfcl_name
from toolrl.eval.official import ENDS_BEFORE_RECORDED, recorded_error_text
from toolrl.eval.policies import render_calls
from toolrl.eval.protocol import build_turn_tasks, history_messages
from toolrl.eval.report import EvalReport
from toolrl.data.golden import load_samples as load_eval_samples
from toolrl.env.cache import open_default_cache
from toolrl.eval.types import EvalSample, PolicyRequest
from toolrl.rewards.parse import CLOSE_TAG, OPEN_TAG


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


def _iter_records(path: str | os.PathLike) -> Iterable[tuple[str, int, Any]]:
    """(where, line number, record) of every non-empty line; raises PredictionFormatError (module docstring)."""
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
            yield where, number, record


def is_benchmark_record(record: Any) -> bool:
    """A line of the benchmark's own result file (``evaluation.py``): it has ``id`` and ``gen_convs``."""
    return isinstance(record, dict) and "gen_convs" in record and "id" in record


def is_benchmark_file(path: str | os.PathLike) -> bool:
    """Whether the first record of a predictions file is in the benchmark's output format."""
    for _, _, record in _iter_records(path):
        return is_benchmark_record(record)
    raise PredictionFormatError(f"{path}: no prediction records (the file is empty)")


def read_predictions(path: str | os.PathLike) -> dict[tuple[str, int, int], str]:
    """(sample_id, turn, round) -> text. Raises PredictionFormatError (see the module docstring)."""
    out: dict[tuple[str, int, int], str] = {}
    first_line: dict[tuple[str, int, int], int] = {}
    for where, number, record in _iter_records(path):
        if is_benchmark_record(record):
            raise PredictionFormatError(
                f"{where}: a record of the benchmark's own output format (gen_convs); it holds free-running "
                "conversations, not per-turn predictions: score it with --protocol official")
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


def _benchmark_calls(calls: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(calls, list):
        raise PredictionFormatError(f"{where}: 'function_call' must be a list")
    out = []
    for call in calls:
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            raise PredictionFormatError(f"{where}: every 'function_call' entry needs a string 'name'")
        arguments = call.get("arguments", {})
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except json.JSONDecodeError:
                raise PredictionFormatError(f"{where}: arguments of {call['name']!r} are not JSON") from None
        out.append({"name": call["name"], "arguments": {} if arguments is None else arguments})
    return out


def read_benchmark_results(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """id -> {"messages": the model's messages (``{"calls": [...]}`` or ``{"content": str}``), "record": the
    line as read}, from the benchmark's result JSONL. Raises PredictionFormatError."""
    out: dict[str, dict[str, Any]] = {}
    first_line: dict[str, int] = {}
    for where, number, record in _iter_records(path):
        if not is_benchmark_record(record):
            raise PredictionFormatError(f"{where}: expected a record of the benchmark's output format "
                                        "(with 'id' and 'gen_convs') like the first line")
        sample_id, conversation = record["id"], record["gen_convs"]
        if not isinstance(sample_id, str):
            raise PredictionFormatError(f"{where}: 'id' must be a string")
        if not isinstance(conversation, list) or not all(isinstance(m, dict) for m in conversation):
            raise PredictionFormatError(f"{where}: 'gen_convs' must be a list of messages")
        if sample_id in first_line:
            raise PredictionFormatError(f"{where}: line {number} repeats the record of line {first_line[sample_id]} "
                                        f"(id {sample_id!r})")
        first_line[sample_id] = number
        messages = []
        for message in conversation:
            if message.get("role") != "assistant":
                continue
            if message.get("function_call"):
                messages.append({"calls": _benchmark_calls(message["function_call"], where)})
            else:
                content = message.get("content")
                messages.append({"content": content if isinstance(content, str) else ""})
        out[sample_id] = {"messages": messages, "record": record}
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


class ReplayPolicy:
    """Official protocol: answer k of a sample is its k-th recorded message ("" -- no call, a final
    answer -- once they run out; ``exhausted`` names the samples where that happened)."""

    def __init__(self, sequences: dict[str, list[str]]):
        self.sequences = sequences
        self.exhausted: set[str] = set()

    def __call__(self, requests: list[PolicyRequest]) -> list[str]:
        out = []
        for request in requests:
            sequence = self.sequences.get(request.sample_id, [])
            if request.turn < len(sequence):
                out.append(sequence[request.turn])
            else:
                self.exhausted.add(request.sample_id)
                out.append("")
        return out


def sequences_from_predictions(predictions: dict[tuple[str, int, int], str]) -> dict[str, list[str]]:
    """Our format read for the official protocol: each sample's texts in (turn, round) order."""
    out: dict[str, list[str]] = {}
    for key in sorted(predictions):
        out.setdefault(key[0], []).append(predictions[key])
    return out


def _neutral(text: str) -> str:
    """A recorded final answer, with any tool-call tag defused (the benchmark read it as text)."""
    return text.replace(OPEN_TAG, "<tool call>").replace(CLOSE_TAG, "</tool call>")


def sequences_from_benchmark(results: dict[str, dict[str, Any]], samples: Sequence[EvalSample]) -> dict[str, list[str]]:
    """The benchmark's records as message texts; a function name unknown to the sample's tools but known
    as its booking_api.json spelling (``Get_Hotel_Reviews(Tips)`` -> ``Get_Hotel_Reviews_Tips``) is renamed."""
    tools = {s.sample_id: {t.get("name") for t in s.tools} for s in samples}
    out: dict[str, list[str]] = {}
    for sample_id, entry in results.items():
        names = tools.get(sample_id, set())
        texts = []
        for message in entry["messages"]:
            if "calls" in message:
                calls = [dict(c, name=c["name"] if c["name"] in names or bfcl_name(c["name"]) not in names
                              else bfcl_name(c["name"])) for c in message["calls"]]
                texts.append(render_calls(calls))
            else:
                texts.append(_neutral(message["content"]) if message["content"] else "")
        outcome = entry.get("record", {}).get("message")
        if isinstance(outcome, dict) and outcome.get("error_type") in ENDS_BEFORE_RECORDED:
            texts.append(recorded_error_text(outcome["error_type"]))
        out[sample_id] = texts
    return out


def benchmark_agreement(report: EvalReport, results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """How our official run of the benchmark's records compares with the counts the benchmark wrote."""
    differ: dict[str, list[str]] = {}
    for result in report.results:
        record = results.get(result.sample_id, {}).get("record", {})
        theirs = record.get("count_dict") or {}
        fields = [name for name, mine in result.count_dict().items() if name in theirs and theirs[name] != mine]
        if (record.get("message") == "Success.") != (result.outcome == "success"):
            fields.append("message")
        if fields:
            differ[result.sample_id] = fields
    return {"records": len(report.results), "agree": len(report.results) - len(differ),
            "differ": dict(list(differ.items())[:20]), "n_differ": len(differ)}


def score_official(samples: Sequence[EvalSample], sequences: dict[str, list[str]], matcher: CallMatcher, *,
                   max_rounds: int = 3, settings: dict[str, Any] | None = None,
                   benchmark_results: dict[str, dict[str, Any]] | None = None) -> EvalReport:
    """Replay per-sample message sequences through the official protocol (see the module docstring).

    Raises PredictionFormatError when no sequence names a sample of ``samples``."""
    known = {s.sample_id for s in samples}
    unknown = sorted(sid for sid in sequences if sid not in known)
    if sequences and len(unknown) == len(sequences):
        raise PredictionFormatError(
            f"none of the {len(sequences)} predicted samples is a sample of "
            f"{(settings or {}).get('split', 'the split')} ({len(samples)} samples); e.g. {unknown[:3]}; "
            "check --split, --max-samples and the ids")
    policy = ReplayPolicy(sequences)
    settings = dict(settings or {}, unknown_prediction_keys=unknown[:20], n_unknown=len(unknown),
                    predicted_samples=len(sequences) - len(unknown))
    report = evaluate(samples, policy, matcher, max_rounds=max_rounds, settings=settings, game="benchmark")
    if benchmark_results is not None:
        recorded = [r for r in report.results if r.sample_id in benchmark_results]
        report.settings["replay_exhausted"] = sorted(
            sid for sid in policy.exhausted
            if sid in benchmark_results and not any("content" in m for m in benchmark_results[sid]["messages"]))
        report.settings["benchmark_agreement"] = benchmark_agreement(
            dataclasses.replace(report, results=recorded), benchmark_results)
    return report


def iter_requests(samples: Iterable[EvalSample]) -> Iterable[dict[str, Any]]:
    """The round-0 request of every scored turn, as JSON records."""
    for sample in samples:
        for task in build_turn_tasks(sample):
            yield {"sample_id": task.sample_id, "turn": task.turn, "messages": history_messages(task),
                   "tools": list(task.tools), "complete_history": task.complete}


def _same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one file (the same path, or links to one file)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()


def _score_samples_file(args: argparse.Namespace, samples: Sequence[EvalSample], matcher: CallMatcher,
                        settings: dict[str, Any]) -> EvalReport:
    """A game played on whole samples (benchmark): replay each sample's recorded messages."""
    benchmark = None
    if is_benchmark_file(args.predictions):
        benchmark = read_benchmark_results(args.predictions)
        sequences = sequences_from_benchmark(benchmark, samples)
        settings["predictions_format"] = "benchmark"
    else:
        sequences = sequences_from_predictions(read_predictions(args.predictions))
        settings["predictions_format"] = "toolrl"
    unknown = sorted(sid for sid in sequences if sid not in {s.sample_id for s in samples})
    if unknown and len(unknown) < len(sequences):
        print(f"warning: {len(unknown)} of {len(sequences)} predicted samples are not in split {args.split} "
              f"({len(samples)} samples) and are not scored; e.g. {unknown[:3]}", file=sys.stderr)
    settings["coverage"] = require_coverage(sum(1 for s in samples if s.sample_id in sequences), len(samples),
                                            "samples", args)
    return score_official(samples, sequences, matcher, max_rounds=args.max_rounds, settings=settings,
                          benchmark_results=benchmark)


def _score_turns_file(args: argparse.Namespace, samples: Sequence[EvalSample], matcher: CallMatcher,
                      settings: dict[str, Any]) -> EvalReport:
    """The turn game: each scored turn's recorded rounds."""
    predictions = read_predictions(args.predictions)
    unknown_keys = unknown_prediction_keys(samples, predictions, f"split {args.split}")
    if unknown_keys:
        print(f"warning: {len(unknown_keys)} of {len(predictions)} predictions match no scored turn of split "
              f"{args.split} ({len(samples)} samples) and are not scored; e.g. {_examples(unknown_keys)}",
              file=sys.stderr)
    scored = [(t.sample_id, t.turn) for s in samples for t in build_turn_tasks(s)]
    predicted = {(key[0], key[1]) for key in predictions}
    settings["coverage"] = require_coverage(sum(1 for key in scored if key in predicted), len(scored),
                                            "scored turns", args)
    return score_predictions(samples, predictions, matcher, max_rounds=args.max_rounds, settings=settings)


def require_coverage(covered: int, total: int, unit: str, args: argparse.Namespace) -> dict[str, Any]:
    """How much of the split a predictions file answers: printed, recorded, and below
    ``--min-coverage`` refused (a missing turn would be scored as "no call", so a partial file reads as a
    weak system) unless ``--allow-partial``."""
    share = covered / total if total else 0.0
    print(f"coverage: predictions for {covered} of {total} {unit} ({100 * share:.1f}%)")
    if share < args.min_coverage and not args.allow_partial:
        raise UserError(f"the predictions cover {covered} of {total} {unit} of split {args.split} "
                        f"({100 * share:.1f}% < --min-coverage {args.min_coverage}); the rest would be scored as "
                        f"'no call': pass --allow-partial to score anyway")
    return {"unit": unit, "covered": covered, "total": total, "share": share}


# How a predictions file is read, by the unit of the game's results (`toolrl.games.Game.unit`).
_SCORERS = {"samples": _score_samples_file, "turns": _score_turns_file}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m toolrl.eval.score", description=__doc__.split("\n\n")[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--predictions", help="JSONL of {sample_id, turn, text|calls[, round]}, or (with "
                        "--protocol official) the benchmark's own result JSONL")
    action.add_argument("--dump-requests", help="write the round-0 prompt of every scored turn to this JSONL")
    parser.add_argument("--split", default="eval_100", help="eval_100, bfcl_training, or a path (.jsonl = benchmark)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--max-samples", type=int, default=None)
    parser.add_argument("--max-rounds", type=int, default=3)
    parser.add_argument("--out", default=None, help="directory for eval_results.json and eval_by_domain.png")
    parser.add_argument("--no-response-equivalence", action="store_true", help="do not consult the response cache")
    parser.add_argument("--cache", default=None, help="response cache file (default: the user cache)")
    parser.add_argument("--protocol", choices=("turn", "benchmark", "official"), default="turn",
                        help="the game: turn (teacher-forced scored turns, ours); benchmark (old name official: "
                             "the benchmark's runner and rules)")
    parser.add_argument("--min-coverage", type=float, default=0.95,
                        help="refuse a predictions file answering less than this share of the split's units")
    parser.add_argument("--allow-partial", action="store_true",
                        help="score a predictions file below --min-coverage (missing units count as no call)")
    parser.add_argument("--export-benchmark", default=None,
                        help="official protocol: write the run in the benchmark's result format to this JSONL")
    args = parser.parse_args(argv)
    game = games.get(args.protocol, field="--protocol", evaluable=True)
    if args.export_benchmark and not game.benchmark_records:
        parser.error("--export-benchmark needs --protocol official")
    if args.max_rounds < 1:
        raise UserError(f"--max-rounds {args.max_rounds} must be >= 1 (model calls per scored turn)")
    if args.max_samples is not None and args.max_samples < 0:
        raise UserError(f"--max-samples {args.max_samples} must be >= 0 (0 or absent = all)")
    if args.export_benchmark and args.predictions and _same_file(args.export_benchmark, args.predictions):
        raise UserError(f"--export-benchmark {args.export_benchmark} is the --predictions file: it would be "
                        "overwritten; write the export to another file")
    samples = load_eval_samples(args.split, args.data_dir, args.max_samples)
    if args.dump_requests:
        with Path(args.dump_requests).open("w") as handle:
            for record in iter_requests(samples):
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        print(f"wrote requests to {args.dump_requests}")
        return 0
    lookup = None
    if not args.no_response_equivalence:
        lookup = open_default_cache(args.data_dir, args.cache).lookup
    matcher = make_matcher(args.data_dir, lookup)
    settings = {"split": args.split, "predictions": args.predictions}
    report = _SCORERS[game.unit](args, samples, matcher, settings)
    report.print()
    agreement = report.settings.get("benchmark_agreement")
    if agreement:
        print(f"the benchmark's own counts (count_dict, message) agree with ours on {agreement['agree']} of "
              f"{agreement['records']} samples" + (f"; differ: {agreement['differ']}" if agreement["n_differ"] else ""))
    if report.settings.get("replay_exhausted"):
        print(f"{len(report.settings['replay_exhausted'])} recorded conversations end before our run does "
              f"(scored as a final answer there): {report.settings['replay_exhausted'][:10]}")
    if args.export_benchmark:
        print(f"wrote {report.save_benchmark_jsonl(args.export_benchmark)}")
    if args.out:
        print(f"wrote {report.save_json(Path(args.out) / 'eval_results.json')}")
        print(f"wrote {report.plot(Path(args.out) / 'eval_by_domain.png')}")
    return 0


if __name__ == "__main__":
    from toolrl.env.cache import CacheError

    run_cli(main, prog="python -m toolrl.eval.score", user_errors=(CacheError,))

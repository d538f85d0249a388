"""Loaders for the two original ComplexFuncBench formats that are too big to ship here.

* The benchmark JSONL (``ComplexFuncBench.jsonl``): one sample a line,
  ``{"id", "functions", "conversations": [user, assistant{function_call: [...]},
  observation{content: [...] aligned with the calls}, ..., assistant{content: final answer}]}``.
  The domain is the id without its trailing number (``Car-Rental-12`` -> ``Car-Rental``).
* The authors' response cache dump ``{function: [{"arguments", "response"}, ...]}`` (about 24 GB):
  read as a stream with ijson, one entry at a time, so it never has to fit in memory.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ijson

from toolrl.data.validation import DataFormatError, RecordReader, iter_jsonl
from toolrl.env.canonical import function_name_problem


@dataclasses.dataclass(frozen=True)
class RecordedCall:
    """A function call with the real response it received (``""`` where none was recorded)."""

    function: str
    arguments: dict[str, Any]
    response: Any


@dataclasses.dataclass(frozen=True)
class ConversationTurn:
    """One assistant turn of calls (issued together) with the observations aligned to them."""

    calls: tuple[RecordedCall, ...]


@dataclasses.dataclass(frozen=True)
class BenchmarkSample:
    sample_id: str
    query: str
    functions: tuple[dict[str, Any], ...]
    turns: tuple[ConversationTurn, ...]
    final_answer: str | None
    messages: tuple[dict[str, Any], ...]  # the raw conversation, for rendering golden history

    @property
    def domain(self) -> str:
        return domain_of(self.sample_id)

    @property
    def calls(self) -> list[RecordedCall]:
        return [call for turn in self.turns for call in turn.calls]


def domain_of(sample_id: str) -> str:
    """``Car-Rental-12`` -> ``Car-Rental``; ids without a trailing number are their own domain."""
    head, _, tail = sample_id.rpartition("-")
    return head if head and tail.isdigit() else sample_id


def _parse_arguments(reader: RecordReader, field: str) -> dict[str, Any]:
    arguments = reader.get(field, (dict, str), default={})
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError as err:
            raise reader.fail(field, f"arguments are a malformed JSON string: {err.msg}") from err
        if not isinstance(arguments, dict):
            raise reader.fail(field, "arguments JSON string does not hold an object")
    return arguments


def parse_benchmark_sample(path: str | os.PathLike, record_name: Any, record: Any) -> BenchmarkSample:
    """Validate one conversation record of the benchmark JSONL."""
    reader = RecordReader(path, record_name, record)
    sample_id = reader.get("id", str)
    reader.record = f"{record_name} ({sample_id})"
    conversations = reader.get("conversations", list)
    functions = reader.get("functions", list, default=[])
    query = None
    turns: list[ConversationTurn] = []
    final_answer = None
    pending: list[tuple[str, dict[str, Any]]] | None = None
    for position, message in enumerate(conversations):
        msg = RecordReader(path, reader.record, message, f"conversations[{position}]")
        role = msg.get("role", str)
        if role == "user":
            if query is None:
                query = msg.get("content", str)
        elif role == "assistant":
            if pending is not None:
                raise msg.fail("role", "assistant turn follows calls that got no observation")
            calls = msg.get("function_call", list, default=None, allow_none=True)
            if calls:
                pending = []
                for index, call in enumerate(calls):
                    call_reader = msg.child(f"function_call[{index}]", call)
                    pending.append((call_reader.get("name", str), _parse_arguments(call_reader, "arguments")))
            else:
                final_answer = msg.get("content", str, default="", allow_none=True)
        elif role == "observation":
            if pending is None:
                raise msg.fail("role", "observation without a preceding assistant function_call")
            content = msg.get("content", (list, str))
            if isinstance(content, str):
                try:
                    content = json.loads(content)
                except json.JSONDecodeError as err:
                    raise msg.fail("content", f"malformed JSON string: {err.msg}") from err
                if not isinstance(content, list):
                    content = [content]
            if len(content) != len(pending):
                raise msg.fail("content", f"{len(content)} observations for {len(pending)} calls")
            turns.append(ConversationTurn(tuple(RecordedCall(name, args, resp) for (name, args), resp in zip(pending, content))))
            pending = None
        elif role != "system":
            raise msg.fail("role", f"unknown role {role!r}")
    if query is None:
        raise reader.fail("conversations", "no user message")
    if pending is not None:
        turns.append(ConversationTurn(tuple(RecordedCall(name, args, "") for name, args in pending)))
    return BenchmarkSample(
        sample_id=sample_id,
        query=query,
        functions=tuple(functions),
        turns=tuple(turns),
        final_answer=final_answer,
        messages=tuple(conversations),
    )


def load_benchmark_jsonl(path: str | os.PathLike) -> Iterator[BenchmarkSample]:
    """Stream the samples of a ComplexFuncBench JSONL file, validating each."""
    for line_number, record in iter_jsonl(path):
        yield parse_benchmark_sample(path, f"line {line_number}", record)


def iter_cache_dump(path: str | os.PathLike) -> Iterator[RecordedCall]:
    """Stream ``{function: [{"arguments", "response"}, ...]}`` one entry at a time.

    Memory stays bounded by the largest single entry, whatever the file size. Nothing is skipped or
    invented: each of these is a :class:`DataFormatError` naming the file, the function and the
    entry's index (``F[3]``), so a 24 GB dump with a bad record fails loudly instead of yielding a
    silently different cache:

    * a top level that is not an object, or any content after it (trailing garbage);
    * an empty function name, or one with a control character (the cache key joins name and
      arguments with U+001F, so such a name would corrupt the function and arguments columns);
    * a function whose value is not a list of entries;
    * an entry that is not an object (a number, a string, null, a list);
    * an entry without ``arguments`` (never guessed as ``{}``) or without ``response``, or with
      ``arguments`` that are neither an object nor a JSON string holding one.

    Entries whose response is empty (``""``) are yielded as recorded; the cache build counts and
    skips them (see toolrl.env.cache).
    """
    path = Path(path)
    with path.open("rb") as handle:
        events = ijson.parse(handle, use_float=True)
        function: str | None = None
        finished = False
        try:
            first = next(events, None)
            if first is None or first[1] != "start_map":
                got = "nothing" if first is None else _event_kind(first[1], first[2])
                raise DataFormatError(path, None, None, f"expected a top-level object {{function: [entries]}}, got {got}")
            for _, event, function in events:  # inside the top-level object: keys, then each list
                if event == "end_map":
                    break
                problem = function_name_problem(function)
                if problem:
                    raise DataFormatError(path, f"function {function!r}", None, problem)
                _, event, value = next(events)
                if event != "start_array":
                    raise DataFormatError(path, function, None,
                                          f"expected a list of entries, got {_event_kind(event, value)}")
                index = 0
                for _, event, value in events:  # the list of entries
                    if event == "end_array":
                        break
                    if event != "start_map":
                        raise DataFormatError(path, f"{function}[{index}]", None,
                                              f"expected an object {{arguments, response}}, got {_event_kind(event, value)}")
                    yield _cache_entry(path, function, index, _build_object(event, value, events))
                    index += 1
            finished = True
            for _, event, value in events:
                raise DataFormatError(path, None, None,
                                      f"unexpected {_event_kind(event, value)} after the top-level object")
        except ijson.JSONError as err:
            where = "after the top-level object" if finished else "malformed JSON"
            raise DataFormatError(path, function if not finished else None, None,
                                  f"{where}: {err}" if finished else f"malformed JSON: {err}") from err


def _build_object(event: str, value: Any, events: Iterator[tuple[str, str, Any]]) -> Any:
    """The JSON value that starts with ``event`` (a start_map / start_array), read from ``events``."""
    builder = ijson.ObjectBuilder()
    builder.event(event, value)
    depth = 1
    for _, event, value in events:
        builder.event(event, value)
        if event in ("start_map", "start_array"):
            depth += 1
        elif event in ("end_map", "end_array"):
            depth -= 1
            if depth == 0:
                break
    return builder.value


def _event_kind(event: str, value: Any) -> str:
    """The Python type name of the JSON value an ijson event starts."""
    return {"start_map": "dict", "start_array": "list", "null": "NoneType", "map_key": "a key",
            "end_map": "end of object", "end_array": "end of list"}.get(event, type(value).__name__)


def _cache_entry(path: Path, function: str, index: int, entry: Any) -> RecordedCall:
    reader = RecordReader(path, f"{function}[{index}]", entry)
    if "arguments" not in entry:
        raise reader.fail("arguments", "missing (a call without arguments is recorded as \"arguments\": {})")
    arguments = _parse_arguments(reader, "arguments")
    if "response" not in entry:
        raise reader.fail("response", "missing")
    return RecordedCall(function, arguments, entry["response"])

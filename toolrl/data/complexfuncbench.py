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

    Memory stays bounded by the largest single entry, whatever the file size.
    """
    path = Path(path)
    with path.open("rb") as handle:
        events = ijson.parse(handle, use_float=True)
        function = None
        index = 0
        try:
            prefix, event, value = next(events)
            if event != "start_map":
                raise DataFormatError(path, None, None, "expected a top-level object {function: [entries]}")
            for prefix, event, value in events:
                if prefix == "" and event == "map_key":
                    function, index = value, 0
                elif prefix == function and event == "start_array":
                    continue
                elif prefix == function and event == "end_array":
                    function = None
                elif prefix == f"{function}.item" and event == "start_map":
                    builder = ijson.ObjectBuilder()
                    builder.event(event, value)
                    for prefix, event, value in events:
                        builder.event(event, value)
                        if prefix == f"{function}.item" and event == "end_map":
                            break
                    yield _cache_entry(path, function, index, builder.value)
                    index += 1
                elif prefix == function and event != "start_array":
                    raise DataFormatError(path, function, None, "expected a list of entries")
                elif prefix == "" and event == "end_map":
                    return
        except ijson.JSONError as err:
            raise DataFormatError(path, function, None, f"malformed JSON: {err}") from err


def _cache_entry(path: Path, function: str, index: int, entry: Any) -> RecordedCall:
    reader = RecordReader(path, f"{function}[{index}]", entry)
    arguments = _parse_arguments(reader, "arguments")
    if "response" not in entry:
        raise reader.fail("response", "missing")
    return RecordedCall(function, arguments, entry["response"])

"""Model text -> tool calls.

The policy writes tool calls as ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` blocks,
possibly several per assistant turn.  `parse_tool_calls` never raises: every malformed piece is
reported as a `ParseError` with a reason, in textual order with the good calls, so the reward can
charge the model for it at the right position (see `PredictedCall.unparseable`).

Accepted variants (what real checkpoints emit):
- ``arguments`` given as a dict or as a JSON string encoding a dict;
- ``parameters`` instead of ``arguments`` (Llama-style);
- no ``arguments`` at all, or ``null``: a call without arguments.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

OPEN_TAG = "<tool_call>"
CLOSE_TAG = "</tool_call>"

# One regex pass finds every marker; pairing them up is done by hand so that unbalanced markers
# (an unclosed block, a stray close tag) are reported instead of silently swallowed.
_MARKER = re.compile(re.escape(OPEN_TAG) + "|" + re.escape(CLOSE_TAG))


@dataclasses.dataclass(frozen=True)
class ToolCall:
    """A well-formed tool call."""

    name: str
    arguments: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class ParseError:
    """A malformed tool-call piece.

    Attributes:
      index: position among the tool-call blocks of the text (calls and errors share the count).
      reason: short machine-friendly reason (e.g. "invalid_json", "missing_name").
      snippet: the offending text (truncated to 200 characters).
    """

    index: int
    reason: str
    snippet: str


@dataclasses.dataclass(frozen=True)
class ParseResult:
    """Result of parsing one model message.

    Attributes:
      calls: the well-formed calls, in order.
      errors: the malformed pieces, in order.
      format_ok: True when there is no error (text without any tool call is format_ok).
      blocks: calls and errors interleaved in textual order (what the reward consumes).
    """

    calls: tuple[ToolCall, ...]
    errors: tuple[ParseError, ...]
    format_ok: bool
    blocks: tuple[ToolCall | ParseError, ...] = ()


def _parse_block(index: int, body: str) -> ToolCall | ParseError:
    """Parses the JSON body of one <tool_call> block."""
    snippet = body.strip()[:200]
    try:
        obj = json.loads(body)
    except (json.JSONDecodeError, RecursionError):
        return ParseError(index, "invalid_json", snippet)
    if not isinstance(obj, dict):
        return ParseError(index, "not_an_object", snippet)
    name = obj.get("name")
    if not isinstance(name, str) or not name.strip():
        return ParseError(index, "missing_name", snippet)
    if "arguments" in obj:
        args = obj["arguments"]
    else:
        args = obj.get("parameters")
    if args is None:
        args = {}
    if isinstance(args, str):
        # Some models double-encode the arguments; an empty string means "no arguments".
        if not args.strip():
            args = {}
        else:
            try:
                args = json.loads(args)
            except (json.JSONDecodeError, RecursionError):
                return ParseError(index, "invalid_arguments_json", snippet)
    if not isinstance(args, dict):
        return ParseError(index, "arguments_not_object", snippet)
    return ToolCall(name=name.strip(), arguments=args)


def parse_tool_calls(text: str) -> ParseResult:
    """Extracts the tool calls of one model message; never raises.

    Args:
      text: the decoded assistant message.

    Returns:
      A `ParseResult`.  Unbalanced markers are errors: an open tag without a close tag
      ("unclosed_block", the rest of the text is its body), a close tag without an open tag
      ("stray_close_tag"), a nested open tag ("nested_open_tag", the outer block is dropped).
    """
    blocks: list[ToolCall | ParseError] = []
    open_at: int | None = None  # end offset of the pending open tag
    for m in _MARKER.finditer(text):
        if m.group() == OPEN_TAG:
            if open_at is not None:
                blocks.append(ParseError(len(blocks), "nested_open_tag", text[open_at : m.start()][:200]))
            open_at = m.end()
        else:
            if open_at is None:
                blocks.append(ParseError(len(blocks), "stray_close_tag", text[max(0, m.start() - 50) : m.end()]))
            else:
                blocks.append(_parse_block(len(blocks), text[open_at : m.start()]))
                open_at = None
    if open_at is not None:
        blocks.append(ParseError(len(blocks), "unclosed_block", text[open_at:][:200]))
    calls = tuple(b for b in blocks if isinstance(b, ToolCall))
    errors = tuple(b for b in blocks if isinstance(b, ParseError))
    return ParseResult(calls=calls, errors=errors, format_ok=not errors, blocks=tuple(blocks))

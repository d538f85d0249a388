"""Model text -> tool calls.

The policy writes tool calls as ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` blocks,
possibly several per assistant turn.  `parse_tool_calls` never raises: every malformed piece is
reported as a `ParseError` with a reason, in textual order with the good calls, so the reward can
charge the model for it at the right position (see `PredictedCall.unparseable`).

Accepted variants (what real checkpoints emit):
- ``arguments`` given as a dict or as a JSON string encoding a dict;
- ``parameters`` instead of ``arguments`` (Llama-style);
- no ``arguments`` at all, or ``null``: a call without arguments.

Limits: model text enters through `safe_json_loads`, which never raises: a block nested deeper than
`MAX_JSON_DEPTH` is "too_deep", one longer than `MAX_JSON_CHARS` characters or holding an int beyond
Python's int <-> str digit limit is "too_large", broken JSON is "invalid_json".  NaN / Infinity
literals and lone surrogates are accepted (as `json.loads` does).

`parse_tool_calls_official` extracts blocks the way the authors' scorer does (non-greedy
``<tool_call>(.*?)</tool_call>`` pairs, no stray / unclosed markers, ``arguments`` only, a
non-object ``arguments`` read as no arguments); it exists so that `paper` with
``paper_compat="official"`` can be reproduced from text.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

OPEN_TAG = "<tool_call>"
CLOSE_TAG = "</tool_call>"

MAX_JSON_DEPTH = 64  # nesting of [ and { in one tool-call block (real calls need 4)
MAX_JSON_CHARS = 100_000  # characters in one tool-call block

# String literals of JSON text (for the depth pre-scan): quotes, then non-quote/backslash runs or escapes.
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_OFFICIAL_BLOCK = re.compile(re.escape(OPEN_TAG) + "(.*?)" + re.escape(CLOSE_TAG), re.DOTALL)


def json_depth(text: str) -> int:
    """Maximum nesting of ``[``/``{`` in JSON text, string literals skipped (an upper bound of what
    `json.loads` recurses into when the text is malformed).  Linear, never raises."""
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    depth = deepest = 0
    for ch in brackets:
        if ch in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
        else:
            depth -= 1
    return deepest


def safe_json_loads(text: str, max_depth: int = MAX_JSON_DEPTH, max_chars: int = MAX_JSON_CHARS) -> tuple[Any, str | None]:
    """`json.loads` for untrusted (model) text that never raises.

    Args:
      text: JSON text.
      max_depth: deepest allowed nesting of arrays/objects.
      max_chars: longest allowed text.

    Returns:
      (value, None) on success, or (None, reason) with reason one of "too_large" (longer than
      max_chars, or an int beyond Python's digit limit), "too_deep" (nesting beyond max_depth, or
      the interpreter's recursion limit), "invalid_json".
    """
    if not isinstance(text, str):
        return None, "invalid_json"
    if len(text) > max_chars:
        return None, "too_large"
    if json_depth(text) > max_depth:
        return None, "too_deep"
    try:
        return json.loads(text), None
    except json.JSONDecodeError:
        return None, "invalid_json"
    except RecursionError:
        return None, "too_deep"
    except (ValueError, OverflowError, MemoryError):
        return None, "too_large"  # e.g. "Exceeds the limit (4300 digits) for integer string conversion"


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
    obj, problem = safe_json_loads(body)
    if problem:
        return ParseError(index, problem, snippet)
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
            args, problem = safe_json_loads(args)
            if problem:
                return ParseError(index, "invalid_arguments_json" if problem == "invalid_json" else problem, snippet)
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


def _parse_block_official(index: int, body: str) -> ToolCall | ParseError:
    """One block as the authors' scorer reads it (see `parse_tool_calls_official`)."""
    snippet = body.strip()[:200]
    obj, problem = safe_json_loads(body.strip())
    if problem:
        return ParseError(index, problem, snippet)  # dropped by the official scorer
    if not isinstance(obj, dict):
        return ParseError(index, "not_an_object", snippet)  # kept, scores 0
    name = obj.get("name", "")
    if not isinstance(name, str) or not name:
        return ParseError(index, "missing_name", snippet)  # kept, matches nothing, scores 0
    args = obj.get("arguments", {})
    if isinstance(args, str):
        args, _ = safe_json_loads(args)
    if not isinstance(args, dict):
        args = {}  # the official scorer reads malformed arguments as none
    return ToolCall(name=name, arguments=args)


def parse_tool_calls_official(text: str) -> ParseResult:
    """Extracts tool calls exactly as the authors' scorer does; never raises.

    Blocks are the non-greedy matches of ``<tool_call>(.*?)</tool_call>`` (an unclosed block or a
    stray close tag is no block; a nested open tag becomes part of the body, which then fails to
    parse).  Per block: JSON that does not parse -> `ParseError` with the `safe_json_loads` reason
    (the official scorer drops the block); JSON that is not an object -> "not_an_object"; an object
    without a non-empty string ``name`` -> "missing_name" (both kept and scored 0 there); otherwise a
    `ToolCall` whose name is taken verbatim (not stripped) and whose arguments are ``arguments``
    (a dict, or a JSON string of one), anything else reading as ``{}`` (``parameters`` is ignored).
    """
    blocks = [_parse_block_official(i, m.group(1)) for i, m in enumerate(_OFFICIAL_BLOCK.finditer(text))]
    calls = tuple(b for b in blocks if isinstance(b, ToolCall))
    errors = tuple(b for b in blocks if isinstance(b, ParseError))
    return ParseResult(calls=calls, errors=errors, format_ok=not errors, blocks=tuple(blocks))

"""Size and depth limits on tool-call arguments, checked before anything recursive touches them.

A policy can write anything. Arguments nested hundreds of levels deep make recursive code
(``copy.deepcopy``, canonicalisation, ``json``) raise RecursionError, and a number with more than
4,300 digits makes ``int()`` raise ValueError (Python's integer-string conversion limit). The
environment checks every call's arguments here first, iteratively, and answers a violation with an
error response instead:

  ``too_deep``             containers (objects / arrays) nested more than ``MAX_DEPTH`` levels
                           inside the arguments object (real Booking arguments nest 2 levels:
                           flight ``legs`` are a list of objects);
  ``too_large``            a string longer than ``MAX_STRING_CHARS``, a number (or numeric string)
                           with more than ``MAX_NUMBER_DIGITS`` digits, arguments text longer than
                           ``MAX_ARGUMENT_CHARS``, or more than ``MAX_NODES`` values in all;
  ``malformed_arguments``  NaN / Infinity (not JSON values), strings with lone surrogates (not
                           encodable text), values of a non-JSON type.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

MAX_DEPTH = 32
MAX_STRING_CHARS = 100_000
MAX_NUMBER_DIGITS = 300  # floats reach 1.8e308; no real parameter needs more
MAX_ARGUMENT_CHARS = 1_000_000
MAX_NODES = 100_000

_NUMBER = re.compile(r"\s*[+-]?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?\s*")
_BITS_PER_DIGIT = math.log2(10)

Problem = tuple[str, str]  # (error code, message)


class HugeNumber:
    """Stands in for a JSON number literal with too many digits (see :func:`loads_arguments`)."""

    __slots__ = ("digits",)

    def __init__(self, literal: str):
        self.digits = sum(c.isdigit() for c in literal)

    def __repr__(self) -> str:
        return f"<number with {self.digits} digits>"


def _parse_number(literal: str, convert: type) -> Any:
    if len(literal) > MAX_NUMBER_DIGITS + 8 and sum(c.isdigit() for c in literal) > MAX_NUMBER_DIGITS:
        return HugeNumber(literal)
    return convert(literal)


def loads_arguments(text: str) -> tuple[Any, Problem | None]:
    """Parses arguments given as JSON text: (value, None) or (None, problem). Never raises."""
    if len(text) > MAX_ARGUMENT_CHARS:
        return None, ("too_large", f"arguments text has {len(text)} characters; the limit is {MAX_ARGUMENT_CHARS}")
    if not text.strip():
        return {}, None
    try:
        value = json.loads(text, parse_int=lambda s: _parse_number(s, int),
                           parse_float=lambda s: _parse_number(s, float))
    except json.JSONDecodeError as err:
        return None, ("malformed_arguments", f"arguments are not valid JSON: {err.msg} at position {err.pos}")
    except RecursionError:
        return None, ("too_deep", f"arguments are nested deeper than Python can parse; the limit is {MAX_DEPTH} levels")
    except ValueError as err:  # defensive: any other conversion limit
        return None, ("too_large", f"arguments hold a value too large to read: {err}")
    return value, None


def check_arguments(value: Any) -> Problem | None:
    """The first limit that ``value`` (an arguments object) breaks, or None. Iterative; never raises."""
    stack: list[tuple[Any, int, str]] = [(value, 0, "arguments")]
    nodes = 0
    chars = 0
    while stack:
        item, depth, where = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            return "too_large", f"arguments hold more than {MAX_NODES} values"
        if isinstance(item, (dict, list, tuple)):
            if depth >= MAX_DEPTH + 1:
                return "too_deep", f"arguments are nested more than {MAX_DEPTH} levels deep (at {where})"
            if isinstance(item, dict):
                for key, child in item.items():
                    if isinstance(key, str):
                        problem = _check_string(key, f"a key in {where}")
                        if problem:
                            return problem
                        chars += len(key)
                    elif not (key is None or isinstance(key, (bool, int, float))):
                        return "malformed_arguments", f"{where} has a key of type {type(key).__name__}"
                    stack.append((child, depth + 1, f"{where}.{_short(key)}"))
            else:
                stack.extend((child, depth + 1, f"{where}[{i}]") for i, child in enumerate(item))
            continue
        if item is None or isinstance(item, bool):
            continue
        if isinstance(item, str):
            problem = _check_string(item, where)
            if problem:
                return problem
            chars += len(item)
            if chars > MAX_ARGUMENT_CHARS:
                return "too_large", f"arguments hold more than {MAX_ARGUMENT_CHARS} characters of text"
        elif isinstance(item, int):
            if item.bit_length() > MAX_NUMBER_DIGITS * _BITS_PER_DIGIT:
                digits = int(item.bit_length() / _BITS_PER_DIGIT) + 1
                return "too_large", f"{where} is a number of about {digits} digits; the limit is {MAX_NUMBER_DIGITS}"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return "malformed_arguments", f"{where} is {item!r}, which is not a JSON value"
        elif isinstance(item, HugeNumber):
            return "too_large", f"{where} is a number with {item.digits} digits; the limit is {MAX_NUMBER_DIGITS}"
        else:
            return "malformed_arguments", f"{where} is not a JSON value ({type(item).__name__})"
    return None


def _check_string(text: str, where: str) -> Problem | None:
    if len(text) > MAX_STRING_CHARS:
        return "too_large", f"{where} is a string of {len(text)} characters; the limit is {MAX_STRING_CHARS}"
    if len(text) > MAX_NUMBER_DIGITS and _NUMBER.fullmatch(text):
        digits = sum(c.isdigit() for c in text)
        if digits > MAX_NUMBER_DIGITS:
            return "too_large", f"{where} is a number with {digits} digits; the limit is {MAX_NUMBER_DIGITS}"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        return "malformed_arguments", f"{where} holds a lone surrogate ({err.reason}); not valid text"
    return None


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def short_repr(value: Any, limit: int = 80) -> str:
    """``repr`` cut to ``limit`` characters (for messages about arbitrary model output)."""
    return _short(value, limit)

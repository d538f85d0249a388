"""Canonical form of tool-call arguments: the cache key, and value equality for the graph miner.

Normalisation, applied recursively to every value:
  * strings lose surrounding whitespace;
  * a string that spells a plain decimal number becomes that number (``"12"`` -> ``12``,
    ``"47.45"`` -> ``47.45``); strings with leading zeros (``"007"``, codes, zip codes) stay strings;
  * a float with an integral value becomes an int (``11.0`` -> ``11``), so int/float spellings agree;
  * dict keys are sorted; list order is kept (it is meaningful, e.g. flight legs);
  * booleans and null are kept as they are.
The key of a call is ``function`` + U+001F + the compact JSON of its canonical arguments, so a
function name must not be empty nor hold control characters (:func:`function_name_problem`; the
loaders and the cache build refuse such names).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

_NUMBER = re.compile(r"[+-]?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?")
KEY_SEPARATOR = "\x1f"


def canonical_value(value: Any) -> Any:
    """The canonical form of one JSON value (see module docstring)."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, str):
        stripped = value.strip()
        if _NUMBER.fullmatch(stripped):
            return canonical_value(float(stripped) if any(c in stripped for c in ".eE") else int(stripped))
        return stripped
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) < 2**53:
            return int(value)
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, dict):
        return {str(k): canonical_value(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [canonical_value(v) for v in value]
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def function_name_problem(name: object) -> str | None:
    """Why ``name`` cannot be a cached function's name (None when it can).

    A name must be a non-empty string without control characters (U+0000-U+001F, U+007F-U+009F):
    the cache key joins name and arguments with U+001F, so such a name would split wrongly."""
    if not isinstance(name, str):
        return f"expected a string, got {type(name).__name__}"
    if not name.strip():
        return "empty function name"
    bad = next((c for c in name if ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F), None)
    if bad is not None:
        return f"holds the control character U+{ord(bad):04X}"
    return None


def canonical_json(value: Any) -> str:
    """Compact, key-sorted JSON of the canonical form."""
    return json.dumps(canonical_value(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def cache_key(function: str, arguments: dict[str, Any]) -> str:
    """The cache key of a call: function name and canonical arguments."""
    return f"{function.strip()}{KEY_SEPARATOR}{canonical_json(arguments)}"

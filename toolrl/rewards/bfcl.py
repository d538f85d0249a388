"""The per-value rules of the paper's scorer: BFCL's AST value check as the authors call it, and
the structure-level type rule and the response rule of their `compute_score`.

Written from the observable behaviour of the authors' scorer (horizon-rl/ToolOrchestrationReward,
``training/reward/complex_tool.py``) and of Gorilla BFCL's ``simple_function_checker`` that it
calls; see ``docs/paper_reward_differences.md``.  Everything here is a pure function of plain JSON
values and never raises: where the official code would raise (a golden ``None`` value, a golden
dict value that is a number, a huge int converted to float), the check simply fails.

How the official scorer checks one golden argument value ``g`` against the model's value ``v``
(BFCL builds a schema from the golden value's Python type, and wraps ``g`` as the only possible
answer):
- ``g`` a str: ``v`` must be a str; both are standardised (drop `` ,./-_*^``, lower-case, ``'`` ->
  ``"``) and compared.
- ``g`` an int: ``v`` must be an int (not a float, not a bool): so ``2.0`` fails against ``2``.
- ``g`` a float: ``v`` a float, or an int (converted to float); equal by value.
- ``g`` a bool: ``v`` must be a bool, equal.
- ``g`` a list: ``v`` must be a list whose items all have the Python type of ``g[0]`` (str when ``g``
  is empty); then, unless those items are dicts, the lists compare after standardising their
  top-level strings (nested values compare with Python ``==``, so ``1 == 1.0 == True`` inside).
- ``g`` a dict, or a list of dicts: BFCL's dict check expects every golden dict value to be a LIST
  of alternatives, which it is not here; so it iterates over the characters of a golden string
  (``v`` passes only when it equals one standardised character), accepts a missing key whose
  golden value is a string, and raises on numbers.  In practice the check fails (`official`
  reproduces it; `ours` compares dicts key by key and lists of dicts element by element instead).
"""

from __future__ import annotations

import functools
import math
import re
from typing import Any, Mapping

_STRIP = re.compile(r"[ ,./\-_*^]")

# Python types the official schema builder maps to BFCL types (everything else raises there).
_SCHEMA_TYPES = (str, int, float, bool, dict, list)


@functools.lru_cache(maxsize=1 << 16)
def standardize(s: str) -> str:
    """BFCL's string standardisation: drop `` ,./-_*^``, lower-case, map ``'`` to ``"``."""
    return _STRIP.sub("", s).lower().replace("'", '"')


def types_compatible(a: Any, b: Any) -> bool:
    """The official structure-level type rule: any two of int, float and bool agree (Python's
    ``isinstance(True, int)``); otherwise the exact Python types must be equal."""
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return True
    return type(a) is type(b)


def _py_eq(a: Any, b: Any) -> bool:
    """Python's ``a in [b]`` (identity, then ``==``), guarded: never raises."""
    try:
        return a is b or bool(a == b)
    except Exception:  # noqa: BLE001 - exotic objects; JSON values never get here
        return False


def _std_item(x: Any) -> Any:
    return standardize(x) if type(x) is str else x


def _nested_type(g: list) -> type | None:
    """Python type the items of a golden list must have (BFCL's `items` type from g[0])."""
    if not g:
        return str
    t = type(g[0])
    return t if t in _SCHEMA_TYPES else None  # None: the official schema builder raises


def _item_types_ok(v: list, g: list, nested: type) -> bool:
    """BFCL's one-level nested type check: each item has the nested type or the type of the first
    golden item that is not ""."""
    alt = next((type(x) for x in g if not (type(x) is str and x == "")), None)
    return all(type(x) is nested or (alt is not None and type(x) is alt) for x in v)


def _official_dict_ok(v: Mapping, g: Mapping) -> bool:
    """BFCL's dict check with a golden dict whose values are NOT lists of alternatives (what the
    official scorer passes it): golden values are iterated as if they were; raising cases fail."""
    for key, value in v.items():
        if key not in g:
            return False
        alternatives = g[key]
        if isinstance(alternatives, str):
            options = [standardize(ch) for ch in alternatives]
        elif isinstance(alternatives, list):
            options = [_std_item(x) for x in alternatives]
        elif isinstance(alternatives, Mapping):
            if alternatives:
                return False  # indexing a dict by position raises KeyError there
            options = []
        else:
            return False  # len() of a number / bool / None raises TypeError there
        if not any(_py_eq(_std_item(value), o) for o in options):
            return False
    for key, alternatives in g.items():
        if key in v:
            continue
        if isinstance(alternatives, str):
            continue  # "" is in every string: a missing key is accepted
        if isinstance(alternatives, (list, Mapping)):
            if not any(type(x) is str and x == "" for x in alternatives):
                return False
        else:
            return False  # `"" in 5` raises TypeError there
    return True


def _fixed_dict_ok(v: Mapping, g: Mapping) -> bool:
    """Our fix: a dict compares key by key, each value with the same rule as a top-level value."""
    return set(v) == set(g) and all(value_ok(v[k], g[k], official=False) for k in g)


def value_ok(v: Any, g: Any, official: bool = False) -> bool:
    """Whether the model's value `v` passes the paper's value check against golden `g`.

    Args:
      v: the model's argument value (any JSON value).
      g: the golden argument value.
      official: True reproduces the official scorer exactly (dicts and lists of dicts go through
        BFCL's dict check, which fails in practice); False applies our one fix (dicts key by key,
        lists of dicts element by element).  Everything else is identical.

    Returns:
      bool.  Never raises.
    """
    tg = type(g)
    if tg is str:
        return type(v) is str and standardize(v) == standardize(g)
    if tg is bool:
        return type(v) is bool and v == g
    if tg is int:
        return type(v) is int and v == g
    if tg is float:
        if type(v) is int:
            try:
                v = float(v)
            except OverflowError:
                return False
        return type(v) is float and _py_eq(v, g)
    if tg is dict or isinstance(g, Mapping):
        if not isinstance(v, Mapping):
            return False
        return _official_dict_ok(v, g) if official else _fixed_dict_ok(v, g)
    if tg is list:
        nested = _nested_type(g)
        if nested is None:
            if official:
                return False
            return type(v) is list and len(v) == len(g) and all(value_ok(a, b) for a, b in zip(v, g))
        if type(v) is not list or not _item_types_ok(v, g, nested):
            return False
        if nested is dict:
            if len(v) != len(g):
                return False
            check = _official_dict_ok if official else _fixed_dict_ok
            return all(isinstance(b, Mapping) and check(a, b) for a, b in zip(v, g))
        a, b = [_std_item(x) for x in v], [_std_item(x) for x in g]
        return len(a) == len(b) and all(_py_eq(x, y) for x, y in zip(a, b))
    # A golden None (or any other type) makes the official schema builder raise.
    if official:
        return False
    return v is None and g is None


def response_ok(response: Any) -> bool:
    """The official semantic rule for a call that has a response (not None): a dict passes when it
    is non-empty, has no ``error`` key and no ``status`` equal to False (``0`` included); a list, a
    str, a number or a bool passes whatever its value (``[]``, ``""`` and ``0`` included)."""
    if isinstance(response, dict):
        if not response or "error" in response:
            return False
        return not ("status" in response and _py_eq(response["status"], False))
    return isinstance(response, (list, str, int, float, bool))


def response_no_error(response: Any) -> bool:
    """The official `tool_calling_success_rate` rule: no ``error`` key and no ``status`` equal to
    False (an empty dict passes here, unlike `response_ok`)."""
    if isinstance(response, dict):
        return "error" not in response and not ("status" in response and _py_eq(response["status"], False))
    return True


def is_nan(x: Any) -> bool:
    return type(x) is float and math.isnan(x)

"""Common pieces of the plain-Python reward oracle (docs/design.md, "Rewards", "Common pieces" and
"Modes"): the `Score` every family returns, argument value equality, the call-level checks (keys,
types, values, AST score, semantic success) and the combination of levels by mode.

The families themselves are in :mod:`toolrl.rewards.reference` (`episode`, `turn`, and the
`REFERENCES` table) and :mod:`toolrl.rewards.reference_paper` (`paper`).
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Mapping

from toolrl.rewards.types import MODES, ErrorCode, GoldenStep, PredictedCall, RewardWeights, semantic_success

_STRIP = re.compile(r"[ ,./\-_*^]")


@dataclasses.dataclass(frozen=True)
class Score:
    """A reward with its parts.

    Attributes:
      reward: the scalar reward of the requested mode.
      levels: per-level scores ("atomic", "orchestration", ... see each family).
      error_codes: one `ErrorCode` (as int) per predicted call, in order.
    """

    reward: float
    levels: dict[str, float]
    error_codes: tuple[int, ...]
    call_levels: dict[str, tuple[float, ...]] = dataclasses.field(default_factory=dict)


# ----------------------------------------------------------------------------- values


def normalize_string(s: str) -> str:
    """String normalisation of the paper: drop ` ,./-_*^` and lower-case."""
    return _STRIP.sub("", s).lower()


def value_type(v: Any) -> str:
    """Type category of a JSON value: number (int and float agree), str, bool, list, dict, null."""
    if isinstance(v, bool):  # bool is an int subclass in Python: test it first.
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "str"
    if isinstance(v, (list, tuple)):
        return "list"
    if isinstance(v, Mapping):
        return "dict"
    if v is None:
        return "null"
    return "other"


def values_equal(a: Any, b: Any) -> bool:
    """Equality of argument values: same type category, strings normalised, numbers by value,
    lists element by element, dicts key by key (keys exact), recursively."""
    ta, tb = value_type(a), value_type(b)
    if ta != tb:
        return False
    if ta == "str":
        return normalize_string(a) == normalize_string(b)
    if ta == "number":
        return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))
    if ta == "list":
        return len(a) == len(b) and all(values_equal(x, y) for x, y in zip(a, b))
    if ta == "dict":
        return set(a) == set(b) and all(values_equal(a[k], b[k]) for k in a)
    return a == b


# ----------------------------------------------------------------------------- call-level checks


def argument_error(call_args: Mapping[str, Any], golden_args: Mapping[str, Any]) -> ErrorCode:
    """First failing argument check (MISSING_KEY, EXTRA_KEY, WRONG_TYPE, WRONG_VALUE) or OK."""
    if any(k not in call_args for k in golden_args):
        return ErrorCode.MISSING_KEY
    if any(k not in golden_args for k in call_args):
        return ErrorCode.EXTRA_KEY
    if any(value_type(call_args[k]) != value_type(golden_args[k]) for k in golden_args):
        return ErrorCode.WRONG_TYPE
    if any(not values_equal(call_args[k], golden_args[k]) for k in golden_args):
        return ErrorCode.WRONG_VALUE
    return ErrorCode.OK


def values_check(call_args: Mapping[str, Any], golden_args: Mapping[str, Any]) -> bool:
    """Every golden key present, no extra key, every value equal."""
    return argument_error(call_args, golden_args) == ErrorCode.OK


def key_type_ratio(call_args: Mapping[str, Any], golden_args: Mapping[str, Any]) -> float:
    """|keys(c) ∩ keys(g)| / |keys(g)| · type_acc of the paper; with no golden arguments, 1 only
    when the call has none either.

    type_acc is the share of shared keys whose types agree, so the product simplifies to
    (#shared keys with agreeing types) / |keys(g)|: one division, which keeps ties exact (the
    episode matching compares these numbers) in float32 and float64 alike.
    """
    if not golden_args:
        return 1.0 if not call_args else 0.0
    agreeing = sum(1 for k in golden_args if k in call_args and value_type(call_args[k]) == value_type(golden_args[k]))
    return agreeing / len(golden_args)


def ast_score(call: PredictedCall, step: GoldenStep, weights: RewardWeights) -> float:
    """AST score of the paper: w_name·[name] + w_keys·key_type_ratio + w_values·[values check]."""
    if not call.format_ok or call.name != step.function:
        return 0.0
    w_name, w_keys, w_values = weights.ast
    return w_name + w_keys * key_type_ratio(call.arguments, step.arguments) + w_values * float(
        values_check(call.arguments, step.arguments)
    )


def call_success(call: PredictedCall) -> bool:
    """Semantic level: executed and the response is a success."""
    return call.format_ok and semantic_success(call.executed, call.response)


def call_value(call: PredictedCall, step: GoldenStep | None, weights: RewardWeights) -> float:
    """(AST + semantic) / 2; a call without a golden step scores 0."""
    if step is None:
        return 0.0
    return (ast_score(call, step, weights) + float(call_success(call))) / 2.0


def is_full_match(call: PredictedCall, step: GoldenStep) -> bool:
    """Format, name, and values check all pass (AST score at its maximum)."""
    return call.format_ok and call.name == step.function and values_check(call.arguments, step.arguments)


def _combine(atomic: float, orchestration: float, binary: bool, mode: str, weights: RewardWeights) -> float:
    """The ablation modes."""
    if mode == "graduated":
        return weights.atomic * atomic + weights.orchestration * orchestration
    if mode == "atomic":
        return atomic
    if mode == "orchestration":
        return orchestration
    if mode == "binary":
        return float(binary)
    raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")


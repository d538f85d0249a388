"""The official protocol's call rules: the benchmark's comparison of one predicted call with one golden call.

What THUDM/ComplexFuncBench's ``utils/compare_method.py`` and ``runner/base_runner.py`` decide per
call, written from reading them (see :mod:`toolrl.eval.official`, "Comparing one step", for the rules
and how a sample's run uses them): the format check against the sample's tool list, the rule-based
match, the value checker, the response-based comparison (offline: the cache), the judge, and the
pairing of leftover calls. :class:`OfficialRules` bundles them per upstream runner family.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from toolrl.env.canonical import cache_key
from toolrl.eval.match import CallMatcher, Judge, ResponseLookup, bfcl_name
from toolrl.eval.types import FREE_FUNCTIONS, GoldenCall
from toolrl.rewards.types import PredictedCall

CATEGORIES_FILTER = "categories_filter"


# ----------------------------------------------------------------------------- single-call rules


def is_hotel_search_free(name: str, arguments: Mapping[str, Any]) -> bool:
    """``Search_Hotels`` with ``search_type == "hotel"``: upstream treats such a turn as free."""
    return name == "Search_Hotels" and arguments.get("search_type") == "hotel"


def only_free(calls: Sequence[GoldenCall]) -> bool:
    """Upstream's ``only_free_function``: any hotel-type ``Search_Hotels``, or every name a lookup
    (true for no calls at all)."""
    if any(is_hotel_search_free(c.function, c.arguments) for c in calls):
        return True
    return all(c.function in FREE_FUNCTIONS for c in calls)


def format_error(name: str, arguments: Mapping[str, Any], tools: Sequence[Mapping[str, Any]]) -> str | None:
    """The benchmark's format check of a call against the sample's tool list; the error text, or None."""
    by_name = {t.get("name"): t for t in tools}
    if name not in by_name:
        return f"Function {name} is not defined in the function list."
    parameters = by_name[name].get("parameters") or {}
    required = list(parameters.get("required") or [])
    properties = parameters.get("properties") or {}
    missing = [p for p in required if p not in arguments]
    if missing:
        return (f"Function {name} requires parameters {required}, but {list(arguments)} do not provide "
                f"{sorted(missing)}")
    unknown = [p for p in arguments if p not in properties]
    if unknown:
        return f"Function {name} does not have parameters {sorted(unknown)}"
    expected = {"string": (str,), "number": (int, float), "boolean": (bool,), "array": (list,)}
    for parameter, value in arguments.items():
        kind = (properties[parameter] or {}).get("type")
        if kind in expected and not isinstance(value, expected[kind]):
            return (f"Parameter {parameter} of function {name} should be a {kind}, but {type(value).__name__} "
                    "is provided.")
    return None


def filter_items(value: Any) -> frozenset[str] | None:
    """``categories_filter`` as the set of its comma-separated, stripped items (None: not a string)."""
    if not isinstance(value, str):
        return None
    return frozenset(item.strip() for item in value.split(","))


def _same_filter(a: Any, b: Any) -> bool:
    items = filter_items(a)
    return items is not None and items == filter_items(b)


def rule_based(predicted: PredictedCall, golden: GoldenCall) -> bool:
    """Upstream's rule-based match: same name and keys, plain equality, ``categories_filter`` as a set."""
    if predicted.name != golden.function or set(predicted.arguments) != set(golden.arguments):
        return False
    for key, value in predicted.arguments.items():
        if key == CATEGORIES_FILTER and _same_filter(value, golden.arguments[key]):
            continue
        if value != golden.arguments[key]:
            return False
    return True


def exact_parameters(exact_params: Mapping[str, frozenset[str]], name: str) -> frozenset[str]:
    return exact_params.get(name) or exact_params.get(bfcl_name(name)) or frozenset()


def value_check(predicted: PredictedCall, golden: GoldenCall, exact_params: Mapping[str, frozenset[str]]) -> str | None:
    """Upstream's value checker: the error type, or None when the exact-match parameters agree."""
    if predicted.name != golden.function:
        return "func_error"
    params = exact_parameters(exact_params, golden.function)
    for key, value in golden.arguments.items():
        if key not in params:
            continue
        if key not in predicted.arguments:
            return "param_missing"
        if key == CATEGORIES_FILTER:
            if not _same_filter(predicted.arguments[key], value):
                return "value_error"
        elif predicted.arguments[key] != value:
            return "value_error"
    return None


def error_type(predicted: PredictedCall, golden: GoldenCall) -> str | None:
    """Upstream's ``get_error_message`` for a pair no method accepted (None when it finds nothing)."""
    for key, value in golden.arguments.items():
        if key not in predicted.arguments:
            return "param_missing"
        if value != predicted.arguments[key]:
            return "value_error"
    if any(key not in golden.arguments for key in predicted.arguments):
        return "param_hallucination"
    return None


def call_similarity(predicted: PredictedCall, golden: GoldenCall) -> float:
    """Our stand-in for upstream's embedding similarity when pairing leftover calls: 2 for the same
    name, plus the Jaccard overlap of the word tokens of the two calls' JSON."""
    def tokens(name: str, arguments: Any) -> set[str]:
        text = json.dumps({"name": name, "arguments": arguments}, sort_keys=True, ensure_ascii=False, default=str)
        return set(re.findall(r"\w+", text.lower()))

    a, b = tokens(predicted.name, predicted.arguments), tokens(golden.function, golden.arguments)
    return 2.0 * (predicted.name == golden.function) + (len(a & b) / len(a | b) if a | b else 0.0)


def pair_leftovers(predicted: Sequence[PredictedCall], golden: Sequence[GoldenCall]) -> list[tuple[int, int]]:
    """One-to-one pairs (predicted index, golden index) maximising :func:`call_similarity` (Hungarian)."""
    if not predicted or not golden:
        return []
    from scipy.optimize import linear_sum_assignment  # local: scipy (seconds to import) only for this matching

    similarity = np.array([[call_similarity(p, g) for g in golden] for p in predicted])
    rows, cols = linear_sum_assignment(-similarity)
    return sorted(zip(rows.tolist(), cols.tolist()))


def free_key(name: str, arguments: Any) -> str:
    """How upstream recognises a free lookup: the call's JSON text (so ``1`` and ``1.0`` differ)."""
    return json.dumps({"arguments": arguments, "name": name}, sort_keys=True)


def same_call(name: str, arguments: Any, golden: GoldenCall) -> bool:
    """Plain equality of a call with a golden call (upstream compares the dicts with ``==``)."""
    return name == golden.function and arguments == golden.arguments


# ----------------------------------------------------------------------------- verdicts


@dataclasses.dataclass(frozen=True)
class Verdict:
    """How one compared pair came out.

    Attributes:
      status: ``match``, ``mismatch`` or ``undecided``.
      how: for a match, the method (``rule``, ``response``, ``judge``); for an undecided call, what
        would decide it (``live_api`` or ``judge``).
      error: for a mismatch or an undecided call, upstream's error type (None if it names none).
    """

    status: str
    how: str = ""
    error: str | None = None

    @property
    def correct(self) -> bool:
        return self.status == "match"


# Per upstream runner family: its final-answer rule and its unlisted-name rule (module docstring).
RUNNER_RULES: dict[str, dict[str, Any]] = {
    "open": {"final_answer_keeps_errors": False, "unlisted_name_error": None},  # Qwen, Llama, GLM
    "gpt": {"final_answer_keeps_errors": True, "unlisted_name_error": "decode_error"},
    "claude": {"final_answer_keeps_errors": False, "unlisted_name_error": "name_error"},
    "mistral": {"final_answer_keeps_errors": True, "unlisted_name_error": "name_error"},
}


@dataclasses.dataclass
class OfficialRules:
    """The benchmark's call comparison, with the cache and the judge as offline stand-ins.

    Attributes:
      exact_params: function -> parameters compared exactly (``exact_match_values.json``).
      lookup: ``(function, arguments) -> response or None`` (the response cache); None: never decides.
      judge: a :data:`toolrl.eval.match.Judge`, or an object with
        ``decide(predicted, golden, context) -> bool | None`` (None: no answer) such as
        :class:`toolrl.eval.judge.HttpJudge`; None: off.
      final_answer_keeps_errors: the GPT / Mistral runners' rule (see the module docstring).
      unlisted_name_error: the error a call naming a function outside the tool list ends the sample
        with ("decode_error": GPT, "name_error": Claude / Mistral), or None: it goes on (Qwen / Llama
        / GLM). See :data:`RUNNER_RULES`.
    """

    exact_params: Mapping[str, frozenset[str]]
    lookup: ResponseLookup | None = None
    judge: Judge | Any | None = None
    final_answer_keeps_errors: bool = False
    unlisted_name_error: str | None = None

    @classmethod
    def for_runner(cls, family: str, exact_params: Mapping[str, frozenset[str]], **kwargs: Any) -> "OfficialRules":
        """The rules of one upstream runner family (a key of :data:`RUNNER_RULES`)."""
        if family not in RUNNER_RULES:
            raise ValueError(f"unknown runner family {family!r}; expected one of {sorted(RUNNER_RULES)}")
        return cls(exact_params, **{**RUNNER_RULES[family], **kwargs})

    @classmethod
    def from_matcher(cls, matcher: CallMatcher, **kwargs: Any) -> "OfficialRules":
        """The same exact parameters, cache and judge as a turn-protocol matcher."""
        return cls(matcher.exact_params, matcher.lookup, matcher.judge, **kwargs)

    def _lookup(self, function: str, arguments: dict[str, Any]) -> Any:
        if self.lookup is None:
            return None
        try:
            response = self.lookup(function, arguments)
        except (TypeError, ValueError):
            return None
        return None if response == "" else response

    def responses_equal(self, predicted: PredictedCall, golden: GoldenCall) -> bool | None:
        """Response-based comparison through the cache: True / False when it holds both responses of two
        calls with different keys, None when it cannot tell."""
        if self.lookup is None:
            return None
        try:
            if cache_key(predicted.name, predicted.arguments) == cache_key(golden.function, golden.arguments):
                return None  # one key for both: the cache cannot see the difference the live API might
        except (TypeError, AttributeError):
            return None
        mine = self._lookup(predicted.name, predicted.arguments)
        if mine is None:
            return None
        theirs = self._lookup(golden.function, golden.arguments)
        if theirs is None and golden.has_response:
            theirs = golden.response
        if theirs is None:
            return None
        return mine == theirs

    def ask_judge(self, predicted: PredictedCall, golden: GoldenCall, context: Mapping[str, Any]) -> bool | None:
        if self.judge is None:
            return None
        decide = getattr(self.judge, "decide", None)
        if decide is not None:
            return decide(predicted, golden, context)
        if "context" in inspect.signature(self.judge).parameters:
            return bool(self.judge(predicted, golden, context=context))
        return bool(self.judge(predicted, golden))

    def compare(self, predicted: PredictedCall, golden: GoldenCall,
                context: Mapping[str, Any] | None = None) -> Verdict:
        """``compare_single_call``: rule-based, value checker, response-based, judge (module docstring)."""
        if rule_based(predicted, golden):
            return Verdict("match", "rule")
        wrong = value_check(predicted, golden, self.exact_params)
        if wrong:
            return Verdict("mismatch", "value_check", wrong)
        same_response = self.responses_equal(predicted, golden)
        if same_response:
            return Verdict("match", "response")
        judged = self.ask_judge(predicted, golden, context or {})
        if judged:
            return Verdict("match", "judge")
        if judged is False and same_response is False:
            return Verdict("mismatch", "judge", error_type(predicted, golden))
        return Verdict("undecided", "live_api" if same_response is None else "judge", error_type(predicted, golden))

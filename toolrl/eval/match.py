"""When is a predicted call right? Call equality, one-to-one turn matching, and the error taxonomy.

A predicted call p is correct for a golden call g when the names are equal and
  1. every parameter of g listed for its function in ``exact_match_values.json`` is present in p with
     the same canonical value (:func:`toolrl.env.canonical.canonical_value`: ``"12"`` == ``12``,
     surrounding whitespace ignored; otherwise exact: case and punctuation matter), and
  2. either (a) p and g have the same keys and every other value is equal after canonicalisation
     and string normalisation (:func:`toolrl.rewards.reference_common.normalize_string`: drop `` ,./-_*^``,
     lower-case; applied to every string in nested values), or (b) p is *response-equivalent*: the
     cache answers p with a response equal to g's (g's recorded response, else the cache's answer for
     g), or (c) an optional judge (:mod:`toolrl.eval.judge`) accepts it.

Within a turn, predicted and golden calls are matched one to one (maximum bipartite matching, so the
order of calls inside a turn never matters). Whatever is left gets one error code each (first failing
check, BFCL-style): see :data:`ERROR_KINDS`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from toolrl.data import paths
from toolrl.env.canonical import canonical_value
from toolrl.eval.types import GoldenCall
from toolrl.rewards.reference_common import normalize_string
# The one predicted-call type (rewards and evaluation share it); importable from here as before.
from toolrl.rewards.types import PredictedCall

ERROR_KINDS = (
    "format_error",  # a <tool_call> block that did not parse
    "wrong_name",  # a predicted call standing where a golden call of another name was expected
    "missing_parameter",  # right name, a golden key is absent
    "extra_parameter",  # right name, a key the golden call does not have
    "wrong_value",  # right name and keys, a value differs (after normalisation / not response-equivalent)
    "hallucinated_call",  # a predicted call with no golden counterpart left in the turn
    "stopped_early",  # a golden call with no predicted counterpart (the model stopped short)
)


def bfcl_name(name: str) -> str:
    """Benchmark API name -> booking_api.json name: ``Get_Hotel_Reviews(Tips)_Sort_Option`` ->
    ``Get_Hotel_Reviews_Tips__Sort_Option`` (each parenthesis becomes an underscore, trailing ones dropped)."""
    return name.replace("(", "_").replace(")", "_").rstrip("_")


def load_exact_match_values(data_dir: str | os.PathLike | None = None) -> dict[str, frozenset[str]]:
    """Per function (booking_api.json names), the parameters that must match exactly."""
    with paths.data_file(paths.EXACT_MATCH_VALUES, data_dir).open() as handle:
        raw = json.load(handle)
    return {bfcl_name(name): frozenset(parameters) for name, parameters in raw.items()}


def normalized(value: Any) -> Any:
    """Canonical form with every string normalised (see the module docstring), for loose equality."""
    value = canonical_value(value)
    if isinstance(value, str):
        return normalize_string(value)
    if isinstance(value, dict):
        return {normalize_string(k): normalized(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalized(v) for v in value]
    return value


def _canonical_or_none(value: Any) -> Any:
    try:
        return canonical_value(value)
    except TypeError:  # not a JSON value: never equal to a golden value
        return object()


ResponseLookup = Callable[[str, dict[str, Any]], Any]
Judge = Callable[[PredictedCall, GoldenCall], bool]


@dataclasses.dataclass
class CallMatcher:
    """Decides call correctness (see the module docstring).

    Attributes:
      exact_params: function -> parameters that must match exactly.
      lookup: ``(function, arguments) -> response or None`` (e.g. ``ResponseCache.lookup``); None
        disables response equivalence.
      judge: optional last resort for calls that pass the exact parameters but differ elsewhere.
    """

    exact_params: Mapping[str, frozenset[str]]
    lookup: ResponseLookup | None = None
    judge: Judge | None = None

    def _golden_response(self, golden: GoldenCall) -> Any:
        if golden.has_response:
            return golden.response
        return self._safe_lookup(golden.function, golden.arguments)

    def _safe_lookup(self, function: str, arguments: dict[str, Any]) -> Any:
        if self.lookup is None:
            return None
        try:
            return self.lookup(function, arguments)
        except (TypeError, ValueError):
            return None

    def exact_ok(self, predicted: PredictedCall, golden: GoldenCall) -> bool:
        for parameter in self.exact_params.get(golden.function, ()):
            if parameter not in golden.arguments:
                continue
            if parameter not in predicted.arguments:
                return False
            if _canonical_or_none(predicted.arguments[parameter]) != canonical_value(golden.arguments[parameter]):
                return False
        return True

    def arguments_equal(self, predicted: PredictedCall, golden: GoldenCall) -> bool:
        if set(predicted.arguments) != set(golden.arguments):
            return False
        try:
            return all(normalized(predicted.arguments[k]) == normalized(v) for k, v in golden.arguments.items())
        except TypeError:
            return False

    def response_equivalent(self, predicted: PredictedCall, golden: GoldenCall) -> bool:
        if self.lookup is None:
            return False
        response = self._safe_lookup(predicted.name, predicted.arguments)
        if response is None:
            return False
        expected = self._golden_response(golden)
        return expected is not None and expected != "" and response == expected

    def matches(self, predicted: PredictedCall, golden: GoldenCall) -> bool:
        """Whether ``predicted`` is a correct call for ``golden``."""
        if predicted.name != golden.function or not self.exact_ok(predicted, golden):
            return False
        if self.arguments_equal(predicted, golden) or self.response_equivalent(predicted, golden):
            return True
        return self.judge is not None and bool(self.judge(predicted, golden))


def maximum_matching(n_left: int, n_right: int, edge: Callable[[int, int], bool]) -> dict[int, int]:
    """Maximum bipartite matching (augmenting paths; turns are small). Returns left -> right.

    Left vertices are tried in order and each takes the lowest-index free right vertex it can, so
    among maximum matchings the result favours the natural pairing by position.
    """
    adjacency = [[j for j in range(n_right) if edge(i, j)] for i in range(n_left)]
    right_of: dict[int, int] = {}  # right -> left

    def augment(i: int, seen: set[int]) -> bool:
        for j in adjacency[i]:
            if j in seen:
                continue
            seen.add(j)
            if j not in right_of or augment(right_of[j], seen):
                right_of[j] = i
                return True
        return False

    for i in range(n_left):
        augment(i, set())
    return {i: j for j, i in right_of.items()}


def classify_pair(predicted: PredictedCall, golden: GoldenCall) -> str:
    """The first failing check of a wrong predicted call against the golden call it stands for."""
    if predicted.name != golden.function:
        return "wrong_name"
    if set(golden.arguments) - set(predicted.arguments):
        return "missing_parameter"
    if set(predicted.arguments) - set(golden.arguments):
        return "extra_parameter"
    return "wrong_value"


def _overlap(predicted: PredictedCall, golden: GoldenCall) -> tuple[int, int]:
    """How alike two same-name calls are: (equal values, shared keys)."""
    shared = set(predicted.arguments) & set(golden.arguments)
    equal = 0
    for key in shared:
        try:
            equal += normalized(predicted.arguments[key]) == normalized(golden.arguments[key])
        except TypeError:
            pass
    return equal, len(shared)


def diagnose(unmatched_predicted: Sequence[PredictedCall], unmatched_golden: Sequence[GoldenCall]) -> tuple[
        list[tuple[int, int, str]], list[int], list[int]]:
    """Pair the leftovers of a turn to name what went wrong.

    Same-name pairs first (most alike first), then the remaining ones by position (``wrong_name``).
    Returns (pairs (predicted index, golden index, error), unpaired predicted indices ->
    ``hallucinated_call``, unpaired golden indices -> ``stopped_early``).
    """
    free_p = list(range(len(unmatched_predicted)))
    free_g = list(range(len(unmatched_golden)))
    pairs: list[tuple[int, int, str]] = []
    candidates = sorted(
        ((-_overlap(unmatched_predicted[i], unmatched_golden[j])[0], -_overlap(unmatched_predicted[i], unmatched_golden[j])[1], i, j)
         for i in free_p for j in free_g if unmatched_predicted[i].name == unmatched_golden[j].function))
    for _, _, i, j in candidates:
        if i in free_p and j in free_g:
            pairs.append((i, j, classify_pair(unmatched_predicted[i], unmatched_golden[j])))
            free_p.remove(i)
            free_g.remove(j)
    for i, j in zip(list(free_p), list(free_g)):
        pairs.append((i, j, "wrong_name"))
        free_p.remove(i)
        free_g.remove(j)
    return pairs, free_p, free_g

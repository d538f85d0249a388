"""Golden rollouts and their corruptions: the sanity checks of a reward (docs/design.md, "Rewards",
`episode`).

A reward that trains orchestration must rank the golden rollout of a sample strictly above every
corrupted variant.  `golden_episode` turns golden steps (anything with ``function``, ``arguments``,
``depends_on`` and ``response`` attributes, e.g. `toolrl.data.traces.TraceStep`) into the
rollout that makes exactly those calls; `CORRUPTIONS` maps each of the eleven corruptions of
docs/design.md ("Rewards", `episode`) to a function `(episode, position) -> EpisodeInput | None`
(None: not applicable at that position, e.g. no step depends on it).  Used by the tests and by
`benchmarks/rewards.py`.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Callable, Iterable, Protocol

from toolrl.rewards.types import EpisodeInput, GoldenStep, PredictedCall

# ComplexFuncBench lost 293 of 465 responses of eval_100.json ("").  For the golden-rollout property
# a golden call with a lost response is treated as a success: it is the call the benchmark made and
# that succeeded, only the recording is missing.
MISSING_RESPONSE_STANDIN = {"status": True, "data": "response missing from the benchmark recording"}
FAILED_RESPONSE = {"error": "corrupted: simulated failure"}
DISTRACTOR_NAME = "Distractor_Function"


class StepLike(Protocol):
    function: str
    arguments: dict[str, Any]
    depends_on: tuple[int, ...]
    response: Any


def golden_episode(steps: Iterable[StepLike]) -> EpisodeInput:
    """The rollout that makes exactly the golden calls, executed, with the recorded responses."""
    steps = list(steps)
    golden = tuple(GoldenStep(s.function, dict(s.arguments), tuple(s.depends_on)) for s in steps)
    calls = tuple(
        PredictedCall(
            s.function,
            dict(s.arguments),
            executed=True,
            response=MISSING_RESPONSE_STANDIN if s.response in ("", None) else s.response,
        )
        for s in steps
    )
    return EpisodeInput(calls, golden)


def _with_call(ep: EpisodeInput, i: int, call: PredictedCall) -> EpisodeInput:
    calls = list(ep.calls)
    calls[i] = call
    return dataclasses.replace(ep, calls=tuple(calls))


def _other_value(v: Any) -> Any:
    """A value of the same type that differs after normalisation."""
    if isinstance(v, bool):
        return not v
    if isinstance(v, (int, float)):
        return v + 1
    if isinstance(v, str):
        return v + "zz"
    if isinstance(v, list):
        return v + [v[0]] if v else [0]
    if isinstance(v, dict):
        return {**v, "zz": 1}
    return "zz"


def _other_type(v: Any) -> Any:
    """A value of another type category (int/float count as one)."""
    if isinstance(v, str):
        return 7
    return str(v)


def _args_change(ep: EpisodeInput, i: int, change: Callable[[dict], dict | None]) -> EpisodeInput | None:
    c = ep.calls[i]
    args = change(dict(c.arguments))
    return None if args is None else _with_call(ep, i, dataclasses.replace(c, arguments=args))


def _first_key(args: dict) -> str | None:
    return next(iter(args), None)


def wrong_name(ep: EpisodeInput, i: int) -> EpisodeInput:
    return _with_call(ep, i, dataclasses.replace(ep.calls[i], name=ep.calls[i].name + "_wrong"))


def missing_key(ep: EpisodeInput, i: int) -> EpisodeInput | None:
    return _args_change(ep, i, lambda a: {k: v for k, v in a.items() if k != _first_key(a)} if a else None)


def extra_key(ep: EpisodeInput, i: int) -> EpisodeInput:
    return _args_change(ep, i, lambda a: {**a, "corrupted_extra_key": 1})  # type: ignore[return-value]


def wrong_type(ep: EpisodeInput, i: int) -> EpisodeInput | None:
    return _args_change(ep, i, lambda a: {**a, _first_key(a): _other_type(a[_first_key(a)])} if a else None)


def wrong_value(ep: EpisodeInput, i: int) -> EpisodeInput | None:
    return _args_change(ep, i, lambda a: {**a, _first_key(a): _other_value(a[_first_key(a)])} if a else None)


def distractor_call(ep: EpisodeInput, i: int) -> EpisodeInput:
    calls = list(ep.calls)
    calls.insert(i, PredictedCall(DISTRACTOR_NAME, {"query": "x"}, executed=True, response={"status": True, "data": [1]}))
    return dataclasses.replace(ep, calls=tuple(calls))


def dropped_call(ep: EpisodeInput, i: int) -> EpisodeInput:
    return dataclasses.replace(ep, calls=ep.calls[:i] + ep.calls[i + 1 :])


def swapped_dependent_calls(ep: EpisodeInput, i: int) -> EpisodeInput | None:
    """Swaps call i with the first later call whose golden step depends on step i."""
    j = next((j for j in range(i + 1, len(ep.steps)) if i in ep.steps[j].depends_on), None)
    if j is None or ep.calls[i] == ep.calls[j]:
        return None
    calls = list(ep.calls)
    calls[i], calls[j] = calls[j], calls[i]
    return dataclasses.replace(ep, calls=tuple(calls))


def failed_execution(ep: EpisodeInput, i: int) -> EpisodeInput:
    return _with_call(ep, i, dataclasses.replace(ep.calls[i], response=FAILED_RESPONSE))


def unparseable_call(ep: EpisodeInput, i: int) -> EpisodeInput:
    return _with_call(ep, i, PredictedCall.unparseable())


def repeated_call(ep: EpisodeInput, i: int) -> EpisodeInput:
    return dataclasses.replace(ep, calls=ep.calls[: i + 1] + ep.calls[i:])


CORRUPTIONS: dict[str, Callable[[EpisodeInput, int], EpisodeInput | None]] = {
    "wrong_name": wrong_name,
    "missing_key": missing_key,
    "extra_key": extra_key,
    "wrong_type": wrong_type,
    "wrong_value": wrong_value,
    "distractor_call": distractor_call,
    "dropped_call": dropped_call,
    "swapped_dependent_calls": swapped_dependent_calls,
    "failed_execution": failed_execution,
    "unparseable_call": unparseable_call,
    "repeated_call": repeated_call,
}


def episode_to_text(ep: EpisodeInput) -> tuple[str, list[Any]]:
    """The assistant text that makes the episode's calls, and the responses of its well-formed
    calls in order (None: not executed), so that `episode_from_text(text, responses, ep.steps)`
    gives `ep` back (an unparseable call becomes a block with broken JSON)."""
    parts, responses = [], []
    for c in ep.calls:
        if not c.format_ok:
            parts.append('<tool_call>{"name": </tool_call>')
            continue
        parts.append("<tool_call>" + json.dumps({"name": c.name, "arguments": dict(c.arguments)}) + "</tool_call>")
        responses.append(c.response if c.executed else None)
    return "\n".join(parts), responses

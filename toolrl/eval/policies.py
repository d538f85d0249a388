"""Reference policies: the golden answer, a policy that never calls, and corruptions of the golden one.

They serve as baselines and as checks of the evaluator: the golden policy must score 100% on turns
with a complete history, and each corruption must lower exactly the metrics it should.

The golden policy answers round r of a scored turn with the calls of its r-th golden sub-turn (the
merged free-only turns first, then the turn itself), which is what the benchmark's own trajectory did.
A corruption rewrites the golden calls of the *last* sub-turn (the one holding the required calls) of
the targeted turns; other turns are answered correctly.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from toolrl.eval.protocol import TurnTask, build_turn_tasks
from toolrl.eval.types import FREE_FUNCTIONS, EvalSample, Policy, PolicyRequest

Calls = list[dict[str, Any]]
Corruption = Callable[[Calls], Calls]


def render_calls(calls: Iterable[dict[str, Any]]) -> str:
    """Calls as the ``<tool_call>`` text a model writes (the inverse of ``parse_tool_calls``)."""
    return "\n".join(
        "<tool_call>" + json.dumps({"name": c["name"], "arguments": c.get("arguments", {})}, ensure_ascii=False)
        + "</tool_call>" for c in calls)


def no_calls_policy(requests: list[PolicyRequest]) -> list[str]:
    """A policy that never calls a tool (answers in prose): the floor of every metric."""
    return ["I cannot help with that." for _ in requests]


def _task_index(samples: Iterable[EvalSample]) -> dict[tuple[str, int], TurnTask]:
    return {(task.sample_id, task.turn): task for sample in samples for task in build_turn_tasks(sample)}


@dataclasses.dataclass
class GoldenPolicy:
    """Answers each request with the golden calls of the sub-turn for its round, optionally corrupted.

    Attributes:
      tasks: (sample_id, turn) -> scored turn.
      corruption: applied to the calls of the last sub-turn of targeted turns (None: none).
      targets: which (sample_id, turn) to corrupt; None means every turn.
    """

    tasks: dict[tuple[str, int], TurnTask]
    corruption: Corruption | None = None
    targets: frozenset[tuple[str, int]] | None = None

    def golden_calls(self, request: PolicyRequest) -> Calls:
        task = self.tasks.get((request.sample_id, request.turn))
        if task is None or request.round >= len(task.subturns):
            return []
        calls = [call.as_dict() for call in task.subturns[request.round].calls]
        is_last = request.round == len(task.subturns) - 1
        targeted = self.targets is None or (request.sample_id, request.turn) in self.targets
        if self.corruption is not None and is_last and targeted:
            calls = self.corruption(copy.deepcopy(calls))
        return calls

    def __call__(self, requests: list[PolicyRequest]) -> list[str]:
        return [render_calls(self.golden_calls(request)) for request in requests]


def golden_policy(samples: Sequence[EvalSample]) -> Policy:
    """The policy that answers every scored turn of ``samples`` exactly as the golden trajectory."""
    return GoldenPolicy(_task_index(samples))


def corrupted_policy(samples: Sequence[EvalSample], corruption: Corruption,
                     targets: Iterable[tuple[str, int]] | None = None) -> Policy:
    """The golden policy with ``corruption`` applied to the targeted (sample_id, turn) pairs (None: all)."""
    return GoldenPolicy(_task_index(samples), corruption, None if targets is None else frozenset(targets))


# ----------------------------------------------------------------------------- corruptions
# Each acts on the first required (non-free) call of the turn, so that it changes a scored call.

def _first_required(calls: Calls) -> int:
    for index, call in enumerate(calls):
        if call["name"] not in FREE_FUNCTIONS:
            return index
    return 0


def wrong_value(calls: Calls) -> Calls:
    """Change the value of the first argument of the first required call to something else."""
    call = calls[_first_required(calls)]
    key = sorted(call["arguments"])[0]
    value = call["arguments"][key]
    call["arguments"][key] = value + 1 if isinstance(value, (int, float)) and not isinstance(value, bool) else f"{value}_wrong"
    return calls


def missing_parameter(calls: Calls) -> Calls:
    """Drop the first argument (sorted) of the first required call."""
    call = calls[_first_required(calls)]
    del call["arguments"][sorted(call["arguments"])[0]]
    return calls


def extra_parameter(calls: Calls) -> Calls:
    """Add an argument the golden call does not have."""
    calls[_first_required(calls)]["arguments"]["unexpected_parameter"] = "x"
    return calls


def wrong_name(calls: Calls) -> Calls:
    """Rename the first required call to a function that exists nowhere."""
    calls[_first_required(calls)]["name"] = "Not_A_Function"
    return calls


def reverse_order(calls: Calls) -> Calls:
    """Reverse the calls of the turn (order inside a turn does not matter: nothing should change)."""
    return list(reversed(calls))


def extra_call(calls: Calls) -> Calls:
    """Append a call no golden turn has."""
    return calls + [{"name": "Not_A_Function", "arguments": {"q": 1}}]


def drop_call(calls: Calls) -> Calls:
    """Drop the first required call."""
    del calls[_first_required(calls)]
    return calls


def drop_all(calls: Calls) -> Calls:
    """Stop: make no call at all."""
    return []


CORRUPTIONS: dict[str, Corruption] = {
    "wrong_value": wrong_value,
    "missing_parameter": missing_parameter,
    "extra_parameter": extra_parameter,
    "wrong_name": wrong_name,
    "reverse_order": reverse_order,
    "extra_call": extra_call,
    "drop_call": drop_call,
    "drop_all": drop_all,
}

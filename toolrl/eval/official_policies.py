"""Scripted free-running policies for the official protocol (no model): the golden trajectory, optionally corrupted."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from toolrl.eval.policies import render_calls
from toolrl.eval.types import EvalSample, PolicyRequest

Calls = list[dict[str, Any]]
FINAL_ANSWER = "Here is everything I found for your request."


@dataclasses.dataclass
class OfficialGoldenPolicy:
    """Free-running reference policy: answer k of a sample is its golden turn k (optionally rewritten
    by ``corruption``, e.g. :func:`toolrl.eval.policies.extra_call`), then a final answer.

    Attributes:
      samples: sample_id -> sample.
      corruption: applied to the calls of every golden turn (None: none).
      repeat_last: after the last golden turn, repeat it once before the final answer.
    """

    samples: Mapping[str, EvalSample]
    corruption: Callable[[Calls], Calls] | None = None
    repeat_last: bool = False

    def answer(self, request: PolicyRequest) -> str:
        sample = self.samples.get(request.sample_id)
        if sample is None:
            return FINAL_ANSWER
        k = request.turn
        if self.repeat_last and k == len(sample.turns) and sample.turns:
            k = len(sample.turns) - 1
        if k >= len(sample.turns):
            return FINAL_ANSWER
        calls = [call.as_dict() for call in sample.turns[k].calls]
        if self.corruption is not None:
            calls = self.corruption(json.loads(json.dumps(calls)))
        return render_calls(calls)

    def __call__(self, requests: list[PolicyRequest]) -> list[str]:
        return [self.answer(request) for request in requests]


def official_golden_policy(samples: Sequence[EvalSample], corruption: Callable[[Calls], Calls] | None = None,
                           repeat_last: bool = False) -> OfficialGoldenPolicy:
    """The golden trajectory as a free-running policy (see :class:`OfficialGoldenPolicy`)."""
    return OfficialGoldenPolicy({s.sample_id: s for s in samples}, corruption, repeat_last)

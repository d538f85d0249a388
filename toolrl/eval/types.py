"""Plain data of the evaluator: golden samples cut into assistant turns, and what a policy is asked.

A *policy* is any ``Callable[[list[PolicyRequest]], list[str]]``: it gets a batch of requests (the chat
messages so far and the candidate tool schemas) and returns the assistant text for each, in which
tool calls are written as ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` blocks (the
format of :mod:`toolrl.rewards.parse`). The evaluator knows nothing about models or tokenisers.

Message format (OpenAI-style dicts, which a chat renderer maps onto any template):
  ``{"role": "user", "content": query}``
  ``{"role": "assistant", "content": "", "tool_calls": [{"name": str, "arguments": dict}, ...]}``
  ``{"role": "tool", "name": function, "content": rendered response text}`` -- one per call, in the
  order of the calls of the preceding assistant message.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from toolrl.data.golden import FREE_FUNCTIONS, GoldenCall, GoldenSample, GoldenTurn

# The evaluator reads the one golden-sample type of toolrl.data.golden (training reads it too).
EvalSample = GoldenSample

@dataclasses.dataclass(frozen=True)
class PolicyRequest:
    """What a policy is asked for one scored turn (one round of it).

    Attributes:
      sample_id, turn, round: which scored turn (``turn`` counts scored turns of the sample from 0) and
        which round within it (rounds > 0 happen only after the policy made nothing but free calls).
      messages: the conversation so far (see the module docstring for the format).
      tools: candidate tool schemas (raw JSON dicts).
    """

    sample_id: str
    turn: int
    round: int
    messages: tuple[dict[str, Any], ...]
    tools: tuple[dict[str, Any], ...]


Policy = Callable[[list[PolicyRequest]], list[str]]

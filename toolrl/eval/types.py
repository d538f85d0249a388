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

# The six location-lookup functions of the benchmark (names as in booking_api.json). They turn a place
# name into an id or coordinates; the benchmark treats them as optional ("free"): a model may or may not
# call them, a matched call is consumed and answered, and a turn made only of them merges into the next.
FREE_FUNCTIONS: frozenset[str] = frozenset({
    "Search_Hotel_Destination",
    "Search_Attraction_Location",
    "Search_Car_Location",
    "Search_Flight_Location",
    "Location_to_Lat_Long",
    "Taxi_Search_Location",
})


@dataclasses.dataclass(frozen=True)
class GoldenCall:
    """One golden call of a sample, with its recorded response.

    Attributes:
      index: position of the call in the sample (step index for trace files, running call number for
        the benchmark JSONL); unique within the sample.
      function: function name.
      arguments: golden arguments.
      response: the real recorded response, ``""`` when the benchmark lost it.
    """

    index: int
    function: str
    arguments: dict[str, Any]
    response: Any = ""

    @property
    def has_response(self) -> bool:
        return not (self.response == "" or self.response is None)

    @property
    def is_free(self) -> bool:
        return self.function in FREE_FUNCTIONS

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.function, "arguments": self.arguments}


@dataclasses.dataclass(frozen=True)
class GoldenTurn:
    """The calls of one golden assistant turn (issued together, answered together)."""

    calls: tuple[GoldenCall, ...]

    @property
    def only_free(self) -> bool:
        return all(call.is_free for call in self.calls)


@dataclasses.dataclass(frozen=True)
class EvalSample:
    """A benchmark sample as the evaluator sees it: query, tools, golden turns.

    Attributes:
      sample_id: e.g. ``Car-Rental-70``.
      domain: ``Car-Rental``, ``Hotels``, ``Flights``, ``Attraction``, ``Cross``, or ``synthetic``.
      query: the user query.
      tools: the candidate tool schemas (raw JSON dicts) shown to the policy.
      turns: golden assistant turns with calls, in order.
      source: where the sample came from (file name).
    """

    sample_id: str
    domain: str
    query: str
    tools: tuple[dict[str, Any], ...]
    turns: tuple[GoldenTurn, ...]
    source: str = ""

    @property
    def calls(self) -> list[GoldenCall]:
        return [call for turn in self.turns for call in turn.calls]


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

"""Golden traces as Python objects: what the synthesizer writes and the trainer/evaluator read.

A :class:`Trace` is a user query plus its golden solution: a list of assistant *turns*, each a list
of calls that are independent of each other (they may run in parallel), every call with its real
cached response. Calls are numbered flat, turn by turn (``trace.calls`` gives that order), and
``depends_on[i]`` / ``bindings[i]`` refer to those flat indices. ``bindings`` say exactly where
each dependent argument comes from: the argument leaf ``parameter`` (``legs[0].fromId``) equals
the value at ``from_path`` in the payload of call ``from_call``'s response (payload = ``data`` of
the API envelope, see :func:`toolrl.env.graph.payload`).

``to_json`` / ``from_json`` round-trip exactly (JSON values only).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class Call:
    """One tool call with the real response it gets from the cache."""

    name: str
    arguments: dict[str, Any]
    response: Any

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "arguments": self.arguments, "response": self.response}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Call":
        return cls(data["name"], dict(data["arguments"]), data.get("response"))


@dataclasses.dataclass(frozen=True)
class Binding:
    """Argument leaf ``parameter`` of a call = value at ``from_path`` in call ``from_call``'s payload."""

    parameter: str
    from_call: int
    from_path: str

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Binding":
        return cls(data["parameter"], int(data["from_call"]), data["from_path"])


@dataclasses.dataclass(frozen=True)
class Trace:
    """A query with its golden multi-step solution (see module docstring)."""

    query: str
    candidate_tools: tuple[str, ...]  # tool names shown to the model (solution tools + distractors)
    turns: tuple[tuple[Call, ...], ...]
    depends_on: tuple[tuple[int, ...], ...]  # per flat call index: earlier calls it needs
    workflow_id: str
    domain: str
    bindings: tuple[tuple[Binding, ...], ...] = ()  # per flat call index; () when unknown
    template_id: str = ""  # workflow template the trace was grown from, "" when none
    source: str = "synthetic"  # "synthetic", or the authors' file it was imported from
    trace_id: str = ""

    # ------------------------------------------------------------------ derived
    @property
    def calls(self) -> tuple[Call, ...]:
        """All calls in flat order (turn by turn)."""
        return tuple(call for turn in self.turns for call in turn)

    @property
    def n_calls(self) -> int:
        return sum(len(turn) for turn in self.turns)

    @property
    def depth(self) -> int:
        """Calls on the longest dependency chain (1 when no call depends on another)."""
        return max(call_levels(self.depends_on), default=0)

    @property
    def width(self) -> int:
        """Most calls in one turn."""
        return max((len(turn) for turn in self.turns), default=0)

    @property
    def pattern(self) -> tuple[tuple[str, ...], ...]:
        """Tool names per turn, sorted within a turn: the trace's workflow shape."""
        return tuple(tuple(sorted(call.name for call in turn)) for turn in self.turns)

    def dependency_matrix(self) -> np.ndarray:
        """``[n, n]`` int8 matrix, ``M[i, j] = 1`` when call ``i`` depends on call ``j``."""
        matrix = np.zeros((self.n_calls, self.n_calls), dtype=np.int8)
        for i, deps in enumerate(self.depends_on):
            for j in deps:
                matrix[i, j] = 1
        return matrix

    def fingerprint(self) -> str:
        """Identity for deduplication: the calls (name + arguments) and their dependencies."""
        body = json.dumps([[c.name, c.arguments] for c in self.calls] + [list(self.depends_on)],
                          sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.blake2b(body.encode(), digest_size=10).hexdigest()

    # ------------------------------------------------------------------ JSON
    def to_json(self) -> dict[str, Any]:
        return {
            "trace_id": self.trace_id,
            "query": self.query,
            "candidate_tools": list(self.candidate_tools),
            "turns": [[call.to_json() for call in turn] for turn in self.turns],
            "depends_on": [list(deps) for deps in self.depends_on],
            "bindings": [[b.to_json() for b in call] for call in self.bindings],
            "workflow_id": self.workflow_id,
            "template_id": self.template_id,
            "domain": self.domain,
            "source": self.source,
            "n_calls": self.n_calls,
            "depth": self.depth,
            "width": self.width,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | str) -> "Trace":
        if isinstance(data, str):
            data = json.loads(data)
        return cls(
            query=data["query"],
            candidate_tools=tuple(data["candidate_tools"]),
            turns=tuple(tuple(Call.from_json(c) for c in turn) for turn in data["turns"]),
            depends_on=tuple(tuple(int(d) for d in deps) for deps in data["depends_on"]),
            workflow_id=data["workflow_id"],
            domain=data["domain"],
            bindings=tuple(tuple(Binding.from_json(b) for b in call) for call in data.get("bindings", [])),
            template_id=data.get("template_id", ""),
            source=data.get("source", "synthetic"),
            trace_id=data.get("trace_id", ""),
        )


def call_levels(depends_on: tuple[tuple[int, ...], ...] | list) -> list[int]:
    """Level of every call: 1 + the highest level among its dependencies (1 for independent calls)."""
    levels: list[int] = []
    for i, deps in enumerate(depends_on):
        if any(d >= i for d in deps):
            raise ValueError(f"call {i} depends on a later call: {deps}")
        levels.append(1 + max((levels[d] for d in deps), default=0))
    return levels


def workflow_id_of(pattern: tuple[tuple[str, ...], ...]) -> str:
    """Stable short id of a tool pattern (per-turn sorted tool names): ``wf-`` + 10 hex digits."""
    text = "|".join(",".join(turn) for turn in pattern)
    return "wf-" + hashlib.blake2b(text.encode(), digest_size=5).hexdigest()

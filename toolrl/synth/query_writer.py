"""User queries for synthesized traces, written the way ComplexFuncBench's users write them
(docs/design.md, "User queries"): the writers' interface, the validator and the chain of writers.

A query states what the person wants and every value they give (the trace's *free* values, see
:func:`toolrl.synth.query.free_values`), in the forms people use (:mod:`toolrl.synth.surface`: dates in
words, "2 pm", "highest-rated"); it never names a tool, an id or a step. Values that later calls take
from earlier responses are never stated: the model has to read them from the responses.

Writers share one interface, :class:`QueryWriter` (``write(trace, rng) -> str | None``; None when the
writer has nothing for this trace), and one validator, :func:`missing_values`: a query is kept only
when every free value is recoverable from it. :class:`WriterChain` tries writers in order and counts
what each wrote and rejected (the synthesis report prints the counts).

* :class:`toolrl.synth.phrasebook.PhrasebookWriter` (offline, always available): one clause per call,
  written by us per tool (:mod:`toolrl.synth.phrasebook_clauses`), that refers to places by the lookup
  strings that feed the call ("flights from Berlin to Barcelona") and to earlier results by position
  ("the second car in the results"), joined into one request.
* ``llm`` (:mod:`toolrl.synth.llm_writer`): an OpenAI-compatible endpoint, opt-in.

:func:`is_step_list` recognises the numbered-instruction style ("(1) ... (2) ...") that the first
synthesizer wrote, so its share can be measured and kept out.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from toolrl.synth import surface
from toolrl.synth.query import free_values
from toolrl.synth.types import Trace


class QueryWriter(Protocol):
    """Writes a user query for a trace, or None when it has none for it."""

    name: str

    def write(self, trace: Trace, rng: np.random.Generator) -> str | None: ...


def missing_values(trace: Trace, query: str) -> list[tuple[int, str, Any]]:
    """(call index, leaf path, value) of every free value ``query`` does not state in a known form."""
    return [(index, path, value) for index, path, value in free_values(trace)
            if not surface.stated(path, value, query)]


_STEP_LIST = re.compile(r"(?:^|\s)\(?(?:\d{1,2}|[ivx]{1,4})[.)]\s+\S.*(?:^|\s)\(?(?:\d{1,2}|[ivx]{1,4})[.)]\s+\S",
                        re.S | re.I)
_STEP_WORDS = re.compile(r"\bstep \d+\b|\bresult of step\b", re.I)


def is_step_list(query: str) -> bool:
    """A numbered list of instructions ("(1) ... (2) ...", "1) ... 2) ...", "1. ... 2. ...", "step 2")."""
    return bool(_STEP_LIST.search(query) or _STEP_WORDS.search(query))


def names_a_tool(query: str, tools: Sequence[str]) -> bool:
    """Whether the query spells a tool's name (``Search_Hotels``), which no user would."""
    return any(tool in query for tool in tools)


@dataclasses.dataclass
class WriterChain:
    """Tries each writer in turn and keeps the first query that states every free value, names no tool and
    is not a step list. ``counts`` has ``<writer>/written`` and ``<writer>/rejected``; ``unwritten`` is the
    number of traces no writer could write (the sampler drops them)."""

    writers: Sequence[QueryWriter]
    validate: Callable[[Trace, str], list] = missing_values
    counts: Counter = dataclasses.field(default_factory=Counter)
    unwritten: int = 0

    def render(self, trace: Trace, rng: np.random.Generator) -> str | None:
        tools = [c.name for c in trace.calls] + list(trace.candidate_tools)
        for writer in self.writers:
            query = writer.write(trace, rng)
            if query is None:
                continue
            if self.validate(trace, query) or is_step_list(query) or names_a_tool(query, tools):
                self.counts[f"{writer.name}/rejected"] += 1
                continue
            self.counts[f"{writer.name}/written"] += 1
            return query
        self.unwritten += 1
        return None

    def stats(self) -> dict[str, int]:
        return {**dict(sorted(self.counts.items())), "unwritten": self.unwritten}

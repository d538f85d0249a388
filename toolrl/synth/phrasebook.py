"""The phrasebook writer (docs/design.md, "User queries"): a user query composed from the per-tool
clauses of :mod:`toolrl.synth.phrasebook_clauses`, one clause per call (lookups are said through the
calls they feed), behind an opener and joined into one request or a request and follow-ups.
Offline and always available; it implements :class:`toolrl.synth.query_writer.QueryWriter`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from toolrl.synth import surface
from toolrl.synth.phrasebook_clauses import CLAUSES, LOOKUPS, _Context, _generic, _lookup
from toolrl.synth.query import free_values
from toolrl.synth.types import Trace

OPENERS = {
    "Attraction": ("We're planning a family trip.", "I'm going sightseeing soon.", "My friend loves museums and tours.", ""),
    "Car-Rental": ("I need a car for an upcoming trip.", "My colleague is flying in and needs to drive.", ""),
    "Flights": ("I'm planning a trip.", "My friend is traveling for work.", "We're flying out soon.", ""),
    "Hotels": ("I'm looking for somewhere to stay.", "We need accommodation for a short trip.", ""),
    "Cross": ("I'm planning a trip and need some help.", "We're organising a vacation.", ""),
}
ASKS = ("Could you {c}?", "Can you {c}?", "Please {c}.", "I'd like you to {c}.")
FOLLOW_UPS = ("Then {c}.", "After that, {c}.", "Also {c}.", "I'd also like you to {c}.", "And please {c}.")


class PhrasebookWriter:
    """Queries composed from per-tool clauses written by us (see the module docstring)."""

    name = "phrasebook"

    def write(self, trace: Trace, rng: np.random.Generator) -> str | None:
        free: dict[int, dict[str, Any]] = {}
        for index, path, value in free_values(trace):
            free.setdefault(index, {})[path] = value
        bound = [{b.parameter: b for b in call} for call in trace.bindings] if trace.bindings \
            else [{} for _ in trace.calls]
        years = {d.year for values in free.values() for v in values.values()
                 if (d := surface.parse_iso_date(v)) is not None}
        state: dict[str, Any] = {"mixed_years": len(years) > 1}
        clauses = []
        consumed = {b.from_call for call in bound for b in call.values()}
        for index, call in enumerate(trace.calls):
            context = _Context(trace, index, rng, free.get(index, {}), bound[index], state)
            if call.name in LOOKUPS:
                continue  # said through the calls it feeds; a lookup nothing reads gets its own clause below
            clause = CLAUSES.get(call.name)
            text = clause(context) if clause else _generic(context)
            clauses.append(text)
        for index, call in enumerate(trace.calls):
            if call.name in LOOKUPS and index not in state.get("places_said", set()):
                context = _Context(trace, index, rng, free.get(index, {}), bound[index], state)
                clauses.insert(0 if index not in consumed else len(clauses), _lookup(context))
        if not clauses:
            return None
        return _join(trace.domain, clauses, rng)


def _join(domain: str, clauses: list[str], rng: np.random.Generator) -> str:
    openers = OPENERS.get(domain, OPENERS["Cross"])
    opener = openers[int(rng.integers(len(openers)))]
    if len(clauses) > 1 and rng.random() < 0.5:
        body = ", ".join(clauses[:-1]) + ", and " + clauses[-1] if len(clauses) > 2 else " and ".join(clauses)
        sentences = [ASKS[int(rng.integers(len(ASKS)))].replace("{c}", body)]
    else:
        sentences = [ASKS[int(rng.integers(len(ASKS)))].replace("{c}", clauses[0])]
        sentences += [FOLLOW_UPS[int(rng.integers(len(FOLLOW_UPS)))].replace("{c}", c) for c in clauses[1:]]
    text = " ".join(s for s in [opener, *sentences] if s)
    return text[0].upper() + text[1:]

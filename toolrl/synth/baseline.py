"""The unconstrained baseline: tools and argument values drawn independently, kept only when valid.

One attempt draws ``n_calls`` calls. Each call draws a tool uniformly among the tools that have
observed argument values (the cached tools; a tool with no recorded value could only be given
schema defaults, which never hit), then an argument key set among the key sets recorded for that
tool, then every value independently from the observed pool of that ``(tool, parameter)``. The
attempt is kept when the trace is valid under the same rules as the constrained sampler
(:mod:`toolrl.synth.validate`): every call hits, every opaque argument is grounded in an earlier
response at a dependency-graph edge path (bindings are inferred: the earliest earlier response
holding the value), the calls form one connected task, and the depth/width/domain knobs hold.
A call that misses ends the attempt at once: that only makes the baseline faster, never less valid.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from toolrl.env.canonical import canonical_json
from toolrl.synth.pool import CROSS_DOMAIN, EntryPool
from toolrl.synth.query import QueryRenderer
from toolrl.synth.sampler import SynthKnobs, assemble_trace
from toolrl.synth.types import Binding, Trace, call_levels
from toolrl.synth.validate import _connected


class UnconstrainedSampler:
    """Independent draws + rejection (see module docstring)."""

    def __init__(self, pool: EntryPool, knobs: SynthKnobs, seed: int = 0, renderer: Any | None = None):
        knobs.validate()
        self.pool = pool
        self.knobs = knobs
        self.seed = seed
        if renderer is None:
            renderer = QueryRenderer()
        self.renderer = renderer
        self.tools = sorted(pool.by_function)
        # Observed key sets (with multiplicity) and value pools per (tool, parameter), deduplicated.
        self.key_sets: dict[str, list[tuple[str, ...]]] = defaultdict(list)
        pools: dict[tuple[str, str], dict[str, Any]] = defaultdict(dict)
        for entry in pool.entries:
            self.key_sets[entry.function].append(tuple(sorted(entry.arguments)))
            for name, value in entry.arguments.items():
                pools[(entry.function, name)].setdefault(canonical_json(value), value)
        self.values = {key: list(values.values()) for key, values in pools.items()}
        self._attempt = 0

    def _tools_for(self, rng: np.random.Generator) -> list[str]:
        domains = set(self.knobs.domains)
        if not domains or CROSS_DOMAIN in domains:
            return self.tools
        domain = sorted(domains)[int(rng.integers(len(domains)))]
        return [t for t in self.tools if self.pool.domains.get(t) == domain]

    def sample(self, attempt: int | None = None) -> Trace | None:
        if attempt is None:
            attempt = self._attempt
            self._attempt += 1
        rng = np.random.default_rng((self.seed, attempt, 0xBA5E))
        pool = self.pool
        tools = self._tools_for(rng)
        entries: list[int] = []
        for _ in range(self.knobs.n_calls):
            tool = tools[int(rng.integers(len(tools)))]
            keys = self.key_sets[tool][int(rng.integers(len(self.key_sets[tool])))]
            arguments = {}
            for key in keys:
                values = self.values[(tool, key)]
                arguments[key] = values[int(rng.integers(len(values)))]
            entry = pool.lookup(tool, arguments)
            if entry is None or entry in entries:
                return None  # a miss (or a repeated call): the trace can never be valid
            entries.append(entry)
        bindings = infer_entry_bindings(pool, entries)
        for position, entry in enumerate(entries):
            bound = {b.parameter for b in bindings[position]}
            if any(leaf.path not in bound for leaf in pool.must_bind_leaves(entry)):
                return None
        deps = [tuple(sorted({b.from_call for b in call})) for call in bindings]
        if len(entries) > 1 and not _connected(tuple(deps)):
            return None
        levels = call_levels(deps)
        if self.knobs.depth is not None and max(levels) != self.knobs.depth:
            return None
        if self.knobs.max_width is not None and max(levels.count(l) for l in set(levels)) > self.knobs.max_width:
            return None
        trace = assemble_trace(pool, entries, deps, bindings, rng, self.knobs.n_distractors, self.renderer)
        if trace is None or (self.knobs.domains and trace.domain not in self.knobs.domains):
            return None
        return trace


def infer_entry_bindings(pool: EntryPool, entries: list[int]) -> list[tuple[Binding, ...]]:
    """For each call and each argument leaf: the earliest earlier call whose response holds its value at
    a dependency-graph edge path (from the pool's provider join)."""
    out = []
    for position, entry in enumerate(entries):
        earlier = {e: i for i, e in enumerate(entries[:position])}
        found = []
        for path, providers in pool.providers[entry].items():
            inside = [(earlier[p.entry], p.path) for p in providers if p.entry in earlier]
            if inside:
                source, source_path = min(inside)
                found.append(Binding(path, source, source_path))
        out.append(tuple(found))
    return out

"""Constrained trace synthesis: grow a trace along the entry graph so that every call is valid.

The state is a set of cached calls (entries of :class:`~toolrl.synth.pool.EntryPool`). A *move*
adds one entry ``b`` that is grounded by the trace: at least one of its argument leaves takes its
value from an earlier response at a dependency-graph edge path (the entry is found through the
``providers`` join, so the value really occurs there), and each of its opaque leaves is grounded,
either by a call already in the trace or by a *helper*: a root entry (one that needs nothing from
upstream, e.g. a location search) added in the same move. The first move has no trace to bind to:
it is a root, or an entry together with the helpers that ground it (two ``Search_Flight_Location``
calls and the ``Search_Flights`` they feed). Every call is a cache entry, so every call hits.

A depth-first search with random move order and a bounded number of expansions finds a trace of
exactly ``n_calls`` calls that satisfies the knobs (exact depth, maximum width, domains, template);
one :meth:`ConstrainedSampler.sample` call is one *attempt* (``None`` when the budget runs out).
Calls are then scheduled as early as their dependencies allow: a turn holds the calls of one level.

Determinism: attempt ``i`` of a sampler with seed ``s`` draws from ``numpy.random.default_rng((s, i))``,
so a dataset is a pure function of (cache, graph, config, seed), independent of worker scheduling.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from toolrl.data.workflows import WorkflowTemplate
from toolrl.synth.pool import CROSS_DOMAIN, DOMAINS, EntryPool, Provider
from toolrl.synth.query import QueryRenderer
from toolrl.synth.types import Binding, Call, Trace, call_levels, workflow_id_of

TEMPLATE_CHOICES = ("none", "uniform", "frequency")
BIND_CHOICES = ("all", "opaque")
_POSITION = re.compile(r"\[(\d+)\]")


@dataclasses.dataclass(frozen=True)
class SynthKnobs:
    """What a synthesized trace must look like."""

    n_calls: int = 4  # exact number of calls
    depth: int | None = None  # exact length of the longest dependency chain, in calls; None: any
    max_width: int | None = None  # most calls in one turn; None: any
    domains: tuple[str, ...] = ()  # allowed trace domains (Hotels, Flights, Car-Rental, Attraction, Cross); (): all
    n_distractors: int = 2  # same-domain tools added to the candidate list (fewer when the domain has fewer)
    template_choice: str = "none"  # none: free walk on the graph; uniform / frequency: follow a workflow template
    max_expansions: int = 800  # search budget of one attempt (states expanded); 8-call yield is 100% at 800
    # "all": any argument leaf with a provider in the trace is bound to it; "opaque": only the leaves that
    # must be bound (ids, tokens, coordinates: EntryPool.must_bind). With "opaque" a user states every other
    # value (a lookup string, a sort order, a date), as ComplexFuncBench's users do, so no trace asks for
    # a search string copied out of an earlier response.
    bind: str = "all"
    # Largest list position a bound value may come from (products[1].slug: position 1); None: any. A prompt
    # that shows only the first k items of a list (data.response_max_list_items) can pose only traces
    # whose values sit at positions < k; the rest would be unsolvable by construction.
    max_position: int | None = None

    def validate(self) -> None:
        if self.n_calls < 1:
            raise ValueError(f"n_calls must be >= 1, got {self.n_calls}")
        if self.depth is not None and not 1 <= self.depth <= self.n_calls:
            raise ValueError(f"depth must be in [1, n_calls={self.n_calls}], got {self.depth}")
        if self.max_width is not None and self.max_width < 1:
            raise ValueError(f"max_width must be >= 1, got {self.max_width}")
        if self.depth is not None and self.max_width is not None and self.depth * self.max_width < self.n_calls:
            raise ValueError(f"depth={self.depth} x max_width={self.max_width} cannot hold n_calls={self.n_calls}")
        unknown = set(self.domains) - set(DOMAINS) - {CROSS_DOMAIN}
        if unknown:
            raise ValueError(f"unknown domains {sorted(unknown)}; known: {DOMAINS + (CROSS_DOMAIN,)}")
        if self.template_choice not in TEMPLATE_CHOICES:
            raise ValueError(f"template_choice must be one of {TEMPLATE_CHOICES}, got {self.template_choice!r}")
        if self.n_distractors < 0:
            raise ValueError("n_distractors must be >= 0")
        if self.max_position is not None and self.max_position < 0:
            raise ValueError(f"max_position must be >= 0 or None, got {self.max_position}")
        if self.bind not in BIND_CHOICES:
            raise ValueError(f"bind must be one of {BIND_CHOICES}, got {self.bind!r}")


@dataclasses.dataclass
class _State:
    """A partial trace in growth order."""

    entries: list[int]
    deps: list[tuple[int, ...]]  # per position: positions it depends on
    bindings: list[tuple[Binding, ...]]  # from_call are growth positions here
    levels: list[int]
    level_counts: Counter
    function_counts: Counter

    @classmethod
    def empty(cls) -> "_State":
        return cls([], [], [], [], Counter(), Counter())

    def copy(self) -> "_State":
        return _State(list(self.entries), list(self.deps), list(self.bindings), list(self.levels),
                      Counter(self.level_counts), Counter(self.function_counts))

    @property
    def depth(self) -> int:
        return max(self.levels, default=0)


@dataclasses.dataclass(frozen=True)
class _Move:
    helpers: tuple[int, ...]  # root entries added first (level 1)
    entry: int
    bindings: tuple[tuple[str, int, str], ...]  # (leaf path, provider entry, provider path)


class ConstrainedSampler:
    """Samples valid traces from an :class:`EntryPool` (see module docstring)."""

    def __init__(self, pool: EntryPool, knobs: SynthKnobs, seed: int = 0, renderer: Any | None = None):
        knobs.validate()
        self.pool = pool
        self.knobs = knobs
        self.seed = seed
        if renderer is None:
            renderer = QueryRenderer()
        self.renderer = renderer
        # Entries that can start a trace: all of their opaque leaves have some root provider.
        self._starts = [e.index for e in pool.entries if all(
            any(pool.is_root(p.entry) for p in pool.providers[e.index].get(leaf.path, ()))
            for leaf in pool.must_bind_leaves(e.index))]
        self._pair_cache: dict[str, frozenset[tuple[str, str]]] = {}
        self._attempt = 0
        self._templates = self._eligible_templates(pool.templates)
        if knobs.template_choice != "none":
            self._templates = self._probe_templates(self._templates)

    # ------------------------------------------------------------------ public
    def sample(self, attempt: int | None = None) -> Trace | None:
        """One attempt: a valid trace with the knobs, or None when the search budget runs out (or the
        renderer writes no query for the trace found)."""
        if attempt is None:
            attempt = self._attempt
            self._attempt += 1
        rng = np.random.default_rng((self.seed, attempt))
        found = self._attempt_state(rng)
        if found is None:
            return None
        state, template = found
        return self._finish(state, rng, template)

    def sample_parts(self, attempt: int) -> tuple[list[int], list[tuple[int, ...]], list[tuple[Binding, ...]]] | None:
        """One attempt's calls before scheduling and rendering: (entries, dependencies, bindings) in growth
        order, or None. Used to join single-domain parts into one Cross trace (:class:`CrossSampler`)."""
        found = self._attempt_state(np.random.default_rng((self.seed, attempt)))
        if found is None:
            return None
        state = found[0]
        return list(state.entries), list(state.deps), list(state.bindings)

    def _attempt_state(self, rng: np.random.Generator) -> tuple[_State, WorkflowTemplate | None] | None:
        template = self._choose_template(rng)
        if self.knobs.template_choice != "none" and template is None:
            return None
        allowed = self._allowed_functions(rng, template)
        self._budget = self.knobs.max_expansions
        state = self._search(_State.empty(), rng, allowed, template)
        return None if state is None else (state, template)

    def iter_traces(self, n_attempts: int, start: int = 0) -> Iterator[tuple[int, Trace | None]]:
        for attempt in range(start, start + n_attempts):
            yield attempt, self.sample(attempt)

    # ------------------------------------------------------------------ templates and domains
    def _eligible_templates(self, templates: list[WorkflowTemplate]) -> list[WorkflowTemplate]:
        allowed_domains = set(self.knobs.domains)
        eligible = []
        for template in templates:
            if len(template.pattern) < self.knobs.n_calls:
                continue
            if not all(f in self.pool.by_function for f in set(template.pattern)):
                continue  # a tool with no cached response can never be called
            domains = set(template.domains) or {CROSS_DOMAIN}
            if allowed_domains and not domains & allowed_domains:
                continue
            eligible.append(template)
        return eligible

    def _probe_templates(self, templates: list[WorkflowTemplate], probes: int = 4) -> list[WorkflowTemplate]:
        """Templates the cache can instantiate with these knobs (one success in a few probe searches).

        Most templates cannot be filled from a small cache: a tool without a cached response, or no
        cached chain whose values line up. Probing once up front keeps them from wasting attempts;
        the probes use their own random streams, so sampling stays a function of the seed.
        """
        feasible = []
        for number, template in enumerate(templates):
            allowed = frozenset(template.pattern)
            for probe in range(probes):
                rng = np.random.default_rng((self.seed, number, probe, 0x7E57))
                self._budget = self.knobs.max_expansions
                if self._search(_State.empty(), rng, allowed, template) is not None:
                    feasible.append(template)
                    break
        return feasible

    def _choose_template(self, rng: np.random.Generator) -> WorkflowTemplate | None:
        if self.knobs.template_choice == "none" or not self._templates:
            return None
        if self.knobs.template_choice == "uniform":
            return self._templates[int(rng.integers(len(self._templates)))]
        weights = np.array([max(1, t.frequency) for t in self._templates], dtype=float)
        return self._templates[int(rng.choice(len(self._templates), p=weights / weights.sum()))]

    def _allowed_functions(self, rng: np.random.Generator, template: WorkflowTemplate | None) -> frozenset[str] | None:
        """Tools a trace may use; None means any. A single-domain request pins the tools to it."""
        if template is not None:
            return frozenset(template.pattern)
        domains = set(self.knobs.domains)
        if not domains or CROSS_DOMAIN in domains:
            return None
        # Several single domains allowed: this attempt draws one (a trace has one domain).
        domain = sorted(domains)[int(rng.integers(len(domains)))]
        return frozenset(f for f in self.pool.by_function if self.pool.domains.get(f) == domain)

    def _template_pairs(self, template: WorkflowTemplate) -> frozenset[tuple[str, str]]:
        pairs = set()
        for step in template.steps:
            for dep in step.depends_on:
                pairs.add((template.steps[dep].function, step.function))
            for link in step.dependency_args:
                pairs.add((template.steps[link.from_step].function, step.function))
        return frozenset(pairs)

    # ------------------------------------------------------------------ search
    def _search(self, state: _State, rng: np.random.Generator, allowed: frozenset[str] | None,
                template: WorkflowTemplate | None) -> _State | None:
        if len(state.entries) == self.knobs.n_calls:
            return state if self._accept(state) else None
        if self._budget <= 0:
            return None
        self._budget -= 1
        # Moves are grounded lazily in a random order: the first ones usually succeed, so most
        # candidates are never grounded at all.
        for move in self._moves(state, rng, allowed, template):
            following = self._apply(state, move)
            if following is None:
                continue
            found = self._search(following, rng, allowed, template)
            if found is not None:
                return found
            if self._budget <= 0:
                return None
        return None

    def _accept(self, state: _State) -> bool:
        if self.knobs.depth is not None and state.depth != self.knobs.depth:
            return False
        if self.knobs.domains:
            return self._trace_domain([self.pool.entries[e].function for e in state.entries]) in self.knobs.domains
        return True

    def _moves(self, state: _State, rng: np.random.Generator, allowed: frozenset[str] | None,
               template: WorkflowTemplate | None) -> Iterator[_Move]:
        """Moves from ``state``, in random order."""
        pool = self.pool
        in_trace = set(state.entries)
        if state.entries:
            candidates = sorted({b for a in state.entries for b in pool.consumers[a]} - in_trace)
        else:
            # Any entry can start a trace: a root alone, or an entry with the helpers grounding it.
            candidates = self._starts
        pairs = self._pairs(template)
        limits = Counter(template.pattern) if template is not None else None
        for position in rng.permutation(len(candidates)):
            b = candidates[int(position)]
            function = pool.entries[b].function
            if allowed is not None and function not in allowed:
                continue
            if limits is not None and state.function_counts[function] >= limits[function]:
                continue
            move = self._ground(b, in_trace, rng, allowed, pairs)
            if move is None:
                continue
            if limits is not None:
                added = Counter(pool.entries[e].function for e in (*move.helpers, move.entry))
                if any(state.function_counts[f] + k > limits[f] for f, k in added.items()):
                    continue  # the template has fewer calls of this tool
            yield move

    def _pairs(self, template: WorkflowTemplate | None) -> frozenset[tuple[str, str]] | None:
        if template is None:
            return None
        if template.workflow_id not in self._pair_cache:
            self._pair_cache[template.workflow_id] = self._template_pairs(template)
        return self._pair_cache[template.workflow_id]

    def _ground(self, b: int, in_trace: set[int], rng: np.random.Generator, allowed: frozenset[str] | None,
                pairs: frozenset[tuple[str, str]] | None) -> _Move | None:
        """The move adding entry ``b``, with its bindings and helpers; None when it cannot be grounded."""
        pool = self.pool
        function = pool.entries[b].function
        providers = pool.providers[b]

        def usable(provider: Provider, in_state: bool) -> bool:
            if (provider.entry in in_trace) != in_state:
                return False
            if self.knobs.max_position is not None and any(
                    int(i) > self.knobs.max_position for i in _POSITION.findall(provider.path)):
                return False
            source = pool.entries[provider.entry].function
            return pairs is None or (source, function) in pairs

        bindings: list[tuple[str, int, str]] = []
        required = {leaf.path for leaf in pool.must_bind_leaves(b)}
        for path, options in providers.items():
            if self.knobs.bind == "opaque" and path not in required:
                continue  # the user states this value
            inside = [p for p in options if usable(p, True)]
            if inside:
                chosen = inside[int(rng.integers(len(inside)))]
                bindings.append((path, chosen.entry, chosen.path))
        if in_trace and not bindings:
            return None  # not connected to the trace
        bound = {path for path, _, _ in bindings}
        helpers: list[int] = []
        for leaf in pool.must_bind_leaves(b):
            if leaf.path in bound:
                continue
            options = [p for p in providers.get(leaf.path, ()) if usable(p, False) and p.entry != b
                       and pool.is_root(p.entry)]
            if allowed is not None:
                options = [p for p in options if pool.entries[p.entry].function in allowed]
            # Reuse a helper already chosen for another leaf when it can ground this one too.
            reuse = [p for p in options if p.entry in helpers]
            if reuse:
                options = reuse
            if not options:
                return None
            chosen = options[int(rng.integers(len(options)))]
            if chosen.entry not in helpers:
                helpers.append(chosen.entry)
            bindings.append((leaf.path, chosen.entry, chosen.path))
        return _Move(tuple(helpers), b, tuple(bindings))

    def _apply(self, state: _State, move: _Move) -> _State | None:
        knobs = self.knobs
        if len(state.entries) + len(move.helpers) + 1 > knobs.n_calls:
            return None
        following = state.copy()
        for helper in move.helpers:
            self._append(following, helper, (), ())
        position = {entry: i for i, entry in enumerate(following.entries)}
        bindings = tuple(Binding(path, position[source], source_path) for path, source, source_path in move.bindings)
        deps = tuple(sorted({b.from_call for b in bindings}))
        self._append(following, move.entry, deps, bindings)
        if knobs.max_width is not None and max(following.level_counts.values()) > knobs.max_width:
            return None
        if knobs.depth is not None:
            remaining = knobs.n_calls - len(following.entries)
            # Each further call can lengthen the longest chain by at most one.
            if following.depth > knobs.depth or following.depth + remaining < knobs.depth:
                return None
        return following

    def _append(self, state: _State, entry: int, deps: tuple[int, ...], bindings: tuple[Binding, ...]) -> None:
        level = 1 + max((state.levels[d] for d in deps), default=0)
        state.entries.append(entry)
        state.deps.append(deps)
        state.bindings.append(bindings)
        state.levels.append(level)
        state.level_counts[level] += 1
        state.function_counts[self.pool.entries[entry].function] += 1

    # ------------------------------------------------------------------ output
    def _trace_domain(self, functions: list[str]) -> str:
        domains = {self.pool.domains.get(f, CROSS_DOMAIN) for f in functions}
        return domains.pop() if len(domains) == 1 else CROSS_DOMAIN

    def _finish(self, state: _State, rng: np.random.Generator, template: WorkflowTemplate | None) -> Trace:
        return assemble_trace(self.pool, state.entries, state.deps, state.bindings, rng, self.knobs.n_distractors,
                              self.renderer, template_id=template.workflow_id if template else "")


def assemble_trace(pool: EntryPool, entries: list[int], deps: list[tuple[int, ...]],
                   bindings: list[tuple[Binding, ...]], rng: np.random.Generator, n_distractors: int,
                   renderer: Any, template_id: str = "", source: str = "synthetic") -> Trace | None:
    """Schedule calls into turns (a call runs in the turn after its last dependency), renumber flat,
    pick distractor tools and render the query; None when the renderer writes no query for it."""
    levels = call_levels(deps)
    order = sorted(range(len(entries)), key=lambda i: (levels[i], i))
    new_index = {old: new for new, old in enumerate(order)}
    flat_deps = tuple(tuple(sorted(new_index[d] for d in deps[old])) for old in order)
    flat_bindings = tuple(tuple(Binding(b.parameter, new_index[b.from_call], b.from_path) for b in bindings[old])
                          for old in order)
    calls = [Call(pool.entries[entries[old]].function, pool.entries[entries[old]].arguments,
                  pool.entries[entries[old]].response) for old in order]
    turns: list[list[Call]] = []
    for old, call in zip(order, calls):
        if len(turns) < levels[old]:
            turns.append([])
        turns[-1].append(call)
    functions = [call.name for call in calls]
    domains = {pool.domains.get(f, CROSS_DOMAIN) for f in functions}
    domain = next(iter(domains)) if len(domains) == 1 else CROSS_DOMAIN
    candidates = choose_candidate_tools(pool, functions, domains, n_distractors, rng)
    pattern = tuple(tuple(sorted(c.name for c in turn)) for turn in turns)
    trace = Trace(
        query="",
        candidate_tools=candidates,
        turns=tuple(tuple(turn) for turn in turns),
        depends_on=flat_deps,
        workflow_id=workflow_id_of(pattern),
        domain=domain,
        bindings=flat_bindings,
        template_id=template_id,
        source=source,
    )
    query = renderer.render(trace, rng)
    if query is None:
        return None
    trace = dataclasses.replace(trace, query=query)
    return dataclasses.replace(trace, trace_id=trace.fingerprint())


def choose_candidate_tools(pool: EntryPool, functions: list[str], domains: set[str], n_distractors: int,
                           rng: np.random.Generator) -> tuple[str, ...]:
    """The solution's tools plus ``n_distractors`` other tools of the same domain(s), shuffled."""
    needed = sorted(set(functions))
    others = sorted(name for name in pool.schemas if name not in needed and pool.domains.get(name) in domains)
    picked = [others[int(i)] for i in rng.permutation(len(others))[:n_distractors]]
    tools = needed + picked
    return tuple(tools[int(i)] for i in rng.permutation(len(tools)))


def trace_complexity(trace: Trace) -> Mapping[str, int]:
    return {"n_calls": trace.n_calls, "depth": trace.depth, "width": trace.width}


class CrossSampler:
    """Cross-domain traces as ComplexFuncBench poses them: independent requests of two domains in one
    query ("find flights to Barcelona, and rent a car at its airport"), each part grown by a single-domain
    :class:`ConstrainedSampler`. Parts share no binding, so their calls run side by side turn by turn.

    ``knobs.n_calls`` is split between the parts (the first gets at least as many); attempt ``i`` draws the
    two domains and the split from ``default_rng((seed, i))``, so a dataset stays a function of the seed.
    """

    def __init__(self, pool: EntryPool, knobs: SynthKnobs, seed: int = 0, renderer: Any | None = None,
                 domains: tuple[str, ...] = DOMAINS):
        knobs.validate()
        if knobs.n_calls < 2:
            raise ValueError(f"a Cross trace needs n_calls >= 2, got {knobs.n_calls}")
        self.pool, self.knobs, self.seed = pool, knobs, seed
        if renderer is None:
            renderer = QueryRenderer()
        self.renderer = renderer
        self.domains = tuple(d for d in domains if any(pool.domains.get(f) == d for f in pool.by_function))
        self._parts: dict[tuple[str, int], ConstrainedSampler] = {}

    def _part(self, domain: str, n_calls: int) -> ConstrainedSampler:
        key = (domain, n_calls)
        if key not in self._parts:
            knobs = dataclasses.replace(self.knobs, n_calls=n_calls, domains=(domain,), template_choice="none",
                                        depth=None, max_width=None)
            self._parts[key] = ConstrainedSampler(self.pool, knobs, seed=self.seed, renderer=self.renderer)
        return self._parts[key]

    def sample(self, attempt: int) -> Trace | None:
        rng = np.random.default_rng((self.seed, attempt, 0xC055))
        if len(self.domains) < 2:
            return None
        first, second = (self.domains[int(i)] for i in rng.permutation(len(self.domains))[:2])
        head = int(rng.integers((self.knobs.n_calls + 1) // 2, self.knobs.n_calls))
        parts = [self._part(first, head).sample_parts(attempt), self._part(second, self.knobs.n_calls - head)
                 .sample_parts(attempt)]
        if any(part is None for part in parts):
            return None
        entries, deps, bindings = list(parts[0][0]), list(parts[0][1]), list(parts[0][2])
        shift = len(entries)
        if set(entries) & set(parts[1][0]):
            return None  # the same cached call in both parts
        entries += parts[1][0]
        deps += [tuple(d + shift for d in dep) for dep in parts[1][1]]
        bindings += [tuple(Binding(b.parameter, b.from_call + shift, b.from_path) for b in call)
                     for call in parts[1][2]]
        levels = call_levels(deps)
        if self.knobs.depth is not None and max(levels) != self.knobs.depth:
            return None
        if self.knobs.max_width is not None and max(Counter(levels).values()) > self.knobs.max_width:
            return None
        return assemble_trace(self.pool, entries, deps, bindings, rng, self.knobs.n_distractors, self.renderer)

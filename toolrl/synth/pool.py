"""The entry pool: the response cache as a graph of cached calls, for constrained trace synthesis.

A trace is valid when every call hits the cache and every *opaque* argument (an id, key, token,
slug, coordinate: a value a user cannot know) is grounded in the response of an earlier call of
the same trace. This module turns the cache and the dependency graph into the structures the
samplers need:

* ``Entry``: one cached call (function, canonical arguments, real response) with its argument
  leaves (``legs[0].fromId`` for list-of-object arguments, as the graph miner writes them);
* the *join index* ``(function, parameter, value) -> entries``: which cached calls of a tool were
  recorded with a given argument value;
* ``providers``: for every entry ``b`` and argument leaf, the entries ``a`` whose response holds
  that leaf's value at a path ``P`` such that ``(A, P) -> (B, parameter)`` is an edge of the
  dependency graph. This is the join that makes every synthesized call a cache hit by construction:
  a candidate next call is an existing cache entry, and it is only taken when its dependent values
  really occur at an edge path in an earlier response;
* ``must_bind``: the parameters that must be grounded. A parameter is *opaque* when the dependency
  graph has an incoming edge to it and either its name says it is an identifier
  (:data:`OPAQUE_NAME`) or the traces show it fed from upstream more often than typed by the user.
  Everything else is *free*: it comes from the user query (or, optionally, from an earlier
  response when an edge and an equal value say so).

The pool is built once per (cache, graph) and is read-only afterwards.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from toolrl.data.schemas import ToolSchema
from toolrl.data.traces import TraceSample
from toolrl.data.workflows import WorkflowTemplate
from toolrl.env.cache import ResponseCache
from toolrl.env.canonical import canonical_json, canonical_value
from toolrl.env.graph import (DependencyGraph, Edge, MiningConfig, build_graph, is_informative, iter_leaves,
                              payload, wildcard)

# Parameter names that denote values only an API hands out (ids, keys, tokens, slugs, coordinates).
OPAQUE_NAME = re.compile(
    r"(^|[._])(id|slug|token|offerToken|search_key|searchKey|latitude|longitude|categories_filter|search_type)$"
    r"|(Id|_id|_key|Token|_latitude|_longitude)$"
)

DOMAINS = ("Hotels", "Flights", "Car-Rental", "Attraction")
CROSS_DOMAIN = "Cross"


@dataclasses.dataclass(frozen=True)
class Leaf:
    """One scalar of an argument: ``path`` is concrete (``legs[1].fromId``), ``parameter`` wildcarded."""

    path: str
    parameter: str
    value: Any


@dataclasses.dataclass(frozen=True)
class Provider:
    """Entry ``entry`` grounds a leaf: its response payload holds the leaf's value at ``path``."""

    entry: int
    path: str  # concrete path into payload(response), e.g. "destinations[0].id"


@dataclasses.dataclass(frozen=True)
class Entry:
    """One cached call."""

    index: int
    function: str
    arguments: dict[str, Any]  # canonical, exactly as the cache keys them
    response: Any
    leaves: tuple[Leaf, ...]


def argument_leaves(arguments: Mapping[str, Any]) -> tuple[Leaf, ...]:
    """Scalar leaves of a call's arguments, named like the graph miner names parameters."""
    leaves = []
    for name, value in arguments.items():
        if isinstance(value, (dict, list)):
            leaves.extend(Leaf(path, wildcard(path), leaf) for path, leaf in iter_leaves(value, name))
        else:
            leaves.append(Leaf(name, name, value))
    return tuple(leaves)


def tool_domains(templates: Iterable[WorkflowTemplate], tool_names: Iterable[str]) -> dict[str, str]:
    """Benchmark domain of every tool: its most frequent single-domain template domain, else by name."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for template in templates:
        for example in template.examples:
            if example.domain in DOMAINS:
                for function in set(template.pattern):
                    counts[function][example.domain] += 1
    domains = {}
    for name in tool_names:
        if counts.get(name):
            # Ties broken by DOMAINS order so the mapping is deterministic.
            domains[name] = max(DOMAINS, key=lambda d: (counts[name][d], -DOMAINS.index(d)))
        else:
            domains[name] = _domain_from_name(name)
    return domains


def _domain_from_name(name: str) -> str:
    lowered = name.lower()
    if "flight" in lowered or "seat" in lowered:
        return "Flights"
    if "car" in lowered or "vehicle" in lowered or "taxi" in lowered:
        return "Car-Rental"
    if "attraction" in lowered:
        return "Attraction"
    return "Hotels"


class EntryPool:
    """Cached calls, their leaves, who grounds whom, and which parameters must be grounded."""

    def __init__(self, cache: ResponseCache, graph: DependencyGraph, schemas: Mapping[str, ToolSchema],
                 templates: Iterable[WorkflowTemplate] = (), mining: MiningConfig = MiningConfig()):
        self.graph = graph
        self.schemas = dict(schemas)
        self.mining = mining
        self.templates = list(templates)
        self.domains = tool_domains(self.templates, sorted(set(self.schemas) | set(cache.functions())))
        self.entries: list[Entry] = []
        self._value_path_cache: dict[int, dict[tuple, list[str]]] = {}
        self.by_key: dict[str, int] = {}
        for function, arguments, response in cache.iter_entries():
            entry = Entry(len(self.entries), function, arguments, response, argument_leaves(arguments))
            self.entries.append(entry)
            self.by_key[_entry_key(function, arguments)] = entry.index
        self.by_function: dict[str, list[int]] = defaultdict(list)
        for entry in self.entries:
            self.by_function[entry.function].append(entry.index)
        # The join index: (function, parameter, canonical value) -> entries recorded with it.
        self.join: dict[tuple[str, str, tuple], list[int]] = defaultdict(list)
        for entry in self.entries:
            for leaf in entry.leaves:
                self.join[(entry.function, leaf.parameter, value_key(leaf.value))].append(entry.index)
        self.incoming: dict[tuple[str, str], list[Edge]] = defaultdict(list)
        for edge in graph.edges():
            self.incoming[(edge.to_function, edge.to_parameter)].append(edge)
        self.must_bind: dict[str, frozenset[str]] = {
            function: frozenset(p for p in self._parameters(function) if self._is_opaque(function, p))
            for function in self.by_function
        }
        self.providers: list[dict[str, tuple[Provider, ...]]] = [self._find_providers(e) for e in self.entries]
        # consumers[a] = entries with at least one leaf grounded by a (the forward edges of the entry graph).
        self.consumers: list[set[int]] = [set() for _ in self.entries]
        for entry in self.entries:
            for providers in self.providers[entry.index].values():
                for provider in providers:
                    self.consumers[provider.entry].add(entry.index)

    # ------------------------------------------------------------------ parameters
    def _parameters(self, function: str) -> set[str]:
        return {leaf.parameter for index in self.by_function[function] for leaf in self.entries[index].leaves}

    def _is_opaque(self, function: str, parameter: str) -> bool:
        if not self.incoming.get((function, parameter)):
            return False
        last = re.split(r"[.\]\[*]+", parameter)[-1] or parameter
        if OPAQUE_NAME.search(parameter) or OPAQUE_NAME.search(last):
            return True
        dependent = self.graph.dependent_parameters.get(function, Counter())[parameter]
        free = self.graph.free_parameters.get(function, Counter())[parameter]
        return dependent > free

    def is_bindable(self, leaf: Leaf) -> bool:
        """Values too generic to witness provenance (small ints, short strings) never bind."""
        return is_informative(leaf.value, self.mining)

    def must_bind_leaves(self, index: int) -> tuple[Leaf, ...]:
        entry = self.entries[index]
        required = self.must_bind.get(entry.function, frozenset())
        return tuple(leaf for leaf in entry.leaves if leaf.parameter in required)

    def is_root(self, index: int) -> bool:
        """A root needs nothing from earlier calls: all its arguments can come from the user."""
        return not self.must_bind_leaves(index)

    # ------------------------------------------------------------------ grounding
    def _find_providers(self, entry: Entry) -> dict[str, tuple[Provider, ...]]:
        found: dict[str, tuple[Provider, ...]] = {}
        for leaf in entry.leaves:
            if not self.is_bindable(leaf):
                continue
            target = value_key(leaf.value)
            providers = []
            for edge in self.incoming.get((entry.function, leaf.parameter), ()):
                for source in self.by_function.get(edge.from_function, ()):
                    if source == entry.index:
                        continue
                    for path in self._value_paths(source).get(target, ()):
                        if wildcard(path) == edge.from_path:
                            providers.append(Provider(source, path))
            if providers:
                found[leaf.path] = tuple(sorted(set(providers), key=lambda p: (p.entry, p.path)))
        return found

    def paths_of_value(self, index: int, value: Any) -> list[str]:
        """Concrete payload paths of entry ``index``'s response that hold ``value`` (canonical equality)."""
        return self._value_paths(index).get(value_key(value), [])

    def _value_paths(self, index: int) -> dict[tuple, list[str]]:
        """value_key -> concrete payload paths, for the informative leaves of one response (memoised)."""
        table = self._value_path_cache.get(index)
        if table is None:
            table = defaultdict(list)
            for path, leaf in iter_leaves(payload(self.entries[index].response)):
                if is_informative(leaf, self.mining):
                    table[value_key(leaf)].append(path)
            table = self._value_path_cache[index] = dict(table)
        return table

    def lookup(self, function: str, arguments: Mapping[str, Any]) -> int | None:
        """The entry a call hits, or None (exact canonical key, as the cache looks up)."""
        try:
            return self.by_key.get(_entry_key(function, dict(arguments)))
        except TypeError:
            return None

    def edge_exists(self, from_function: str, from_path: str, to_function: str, parameter: str) -> bool:
        return any(e.from_function == from_function and e.from_path == wildcard(from_path)
                   for e in self.incoming.get((to_function, parameter), ()))

    def summary(self) -> dict[str, Any]:
        roots = sum(self.is_root(e.index) for e in self.entries)
        linked = sum(bool(self.consumers[e.index]) or bool(self.providers[e.index]) for e in self.entries)
        groundable = sum(self.is_root(e.index) or all(
            leaf.path in self.providers[e.index] for leaf in self.must_bind_leaves(e.index)) for e in self.entries)
        return {"entries": len(self.entries), "functions": len(self.by_function), "roots": roots,
                "linked_entries": linked, "groundable_entries": groundable,
                "must_bind": {f: sorted(p) for f, p in sorted(self.must_bind.items()) if p}}


def value_key(value: Any) -> tuple:
    """Hashable key of a scalar under canonical equality (cheaper than canonical JSON; ``1 == 1.0``)."""
    value = canonical_value(value)
    if isinstance(value, bool) or value is None:
        return ("b", value)
    if isinstance(value, (int, float)):
        return ("n", value)
    if isinstance(value, str):
        return ("s", value)
    return ("j", canonical_json(value))


def _entry_key(function: str, arguments: dict[str, Any]) -> str:
    return f"{function}\x1f{canonical_json(arguments)}"


def build_pool(cache: ResponseCache, samples: Iterable[TraceSample], templates: Iterable[WorkflowTemplate],
               schemas: Mapping[str, ToolSchema]) -> EntryPool:
    """The pool for a cache, mining the dependency graph from the samples and templates."""
    templates = list(templates)
    return EntryPool(cache, build_graph(samples, templates), schemas, templates)

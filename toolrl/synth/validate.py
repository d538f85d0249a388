"""What makes a trace valid, checked the same way for both samplers and in the tests.

A trace (calls in order, with dependency bindings) is valid when
  1. every call hits the cache (exact canonical key) — checked against the pool's in-memory index
     here, and against the real :class:`~toolrl.env.booking.BookingEnvironment` by :func:`replay`;
  2. every binding holds: the argument leaf equals (canonical equality) the value at ``from_path`` in
     the payload of the earlier call's response, and ``(earlier tool, path) -> (tool, parameter)``
     is an edge of the dependency graph;
  3. every opaque argument leaf (``pool.must_bind``) is bound;
  4. the calls form one task: the dependency graph over the calls is weakly connected (no call that
     nothing depends on and that depends on nothing, beside other calls), and no call repeats.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from toolrl.env.canonical import canonical_value
from toolrl.env.graph import iter_leaves, payload, values_at, wildcard
from toolrl.synth.pool import EntryPool, argument_leaves
from toolrl.synth.types import Binding, Trace


@dataclasses.dataclass(frozen=True)
class Verdict:
    valid: bool
    reason: str = ""  # the first failed check, "" when valid

    def __bool__(self) -> bool:
        return self.valid


def leaf_value(arguments: dict[str, Any], path: str) -> list[Any]:
    """Value(s) of an argument leaf path such as ``legs[1].fromId``."""
    return values_at(arguments, path)


def binding_holds(trace_calls: list, call_index: int, binding: Binding) -> bool:
    if not 0 <= binding.from_call < call_index:
        return False
    found = values_at(payload(trace_calls[binding.from_call].response), binding.from_path)
    wanted = leaf_value(trace_calls[call_index].arguments, binding.parameter)
    return bool(found) and len(wanted) == 1 and canonical_value(found[0]) == canonical_value(wanted[0])


def check_trace(pool: EntryPool, trace: Trace) -> Verdict:
    """Checks 1-4 of the module docstring on a trace with bindings."""
    calls = list(trace.calls)
    if len(trace.bindings) != len(calls) or len(trace.depends_on) != len(calls):
        return Verdict(False, "bindings/depends_on do not cover every call")
    keys = set()
    for index, call in enumerate(calls):
        entry = pool.lookup(call.name, call.arguments)
        if entry is None:
            return Verdict(False, f"call {index} ({call.name}) misses the cache")
        if entry in keys:
            return Verdict(False, f"call {index} repeats an earlier call")
        keys.add(entry)
        bound = set()
        for binding in trace.bindings[index]:
            if not binding_holds(calls, index, binding):
                return Verdict(False, f"call {index} binding {binding} does not hold")
            if not pool.edge_exists(calls[binding.from_call].name, binding.from_path, call.name,
                                    wildcard(binding.parameter)):
                return Verdict(False, f"call {index} binding {binding} is not a dependency-graph edge")
            if binding.from_call not in trace.depends_on[index]:
                return Verdict(False, f"call {index} binding {binding} missing from depends_on")
            bound.add(binding.parameter)
        for leaf in pool.must_bind_leaves(entry):
            if leaf.path not in bound:
                return Verdict(False, f"call {index} ({call.name}) opaque argument {leaf.path} is not grounded")
    if len(calls) > 1 and not _connected(trace.depends_on):
        return Verdict(False, "calls do not form one connected task")
    return Verdict(True)


def _connected(depends_on: tuple[tuple[int, ...], ...]) -> bool:
    parent = list(range(len(depends_on)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, deps in enumerate(depends_on):
        for j in deps:
            parent[find(i)] = find(j)
    return len({find(i) for i in range(len(depends_on))}) == 1


def infer_bindings(pool: EntryPool, calls: list) -> tuple[tuple[Binding, ...], ...]:
    """Bindings of a trace that carries none (the baseline's): for every bindable argument leaf, the
    earliest earlier call whose response holds the value at an edge path."""
    out = []
    for index, call in enumerate(calls):
        found = []
        for leaf in argument_leaves(call.arguments):
            if not pool.is_bindable(leaf):
                continue
            edges = pool.incoming.get((call.name, leaf.parameter), ())
            hit = None
            for earlier in range(index):
                sources = {e.from_path for e in edges if e.from_function == calls[earlier].name}
                if not sources:
                    continue
                for path in pool_paths(pool, calls[earlier].response, leaf.value):
                    if wildcard(path) in sources:
                        hit = Binding(leaf.path, earlier, path)
                        break
                if hit:
                    break
            if hit:
                found.append(hit)
        out.append(tuple(found))
    return tuple(out)


def pool_paths(pool: EntryPool, response: Any, value: Any) -> list[str]:
    """Payload paths of a response holding ``value``; uses the pool's memo when it is a cached response."""
    wanted = canonical_value(value)
    return [path for path, leaf in iter_leaves(payload(response))
            if not isinstance(leaf, bool) and canonical_value(leaf) == wanted]


def replay(env: Any, trace: Trace) -> list[str]:
    """Run every call of the trace against a :class:`BookingEnvironment`; the problems found (empty: ok).

    Checks that each call hits with the trace's recorded response, and each binding holds on the
    responses the environment returned.
    """
    problems = []
    calls = list(trace.calls)
    responses = []
    for index, call in enumerate(calls):
        result = env.execute_detailed({"name": call.name, "arguments": call.arguments})
        if not result.hit:
            problems.append(f"call {index} {call.name}: {result.error}")
        elif result.response != call.response:
            problems.append(f"call {index} {call.name}: response differs from the recorded one")
        responses.append(result.response)
    for index, bindings in enumerate(trace.bindings):
        for binding in bindings:
            found = values_at(payload(responses[binding.from_call]), binding.from_path) \
                if binding.from_call < index else []
            wanted = leaf_value(calls[index].arguments, binding.parameter)
            if not found or len(wanted) != 1 or canonical_value(found[0]) != canonical_value(wanted[0]):
                problems.append(f"call {index} {binding.parameter}: not the value at {binding.from_path} "
                                f"of call {binding.from_call}")
    return problems

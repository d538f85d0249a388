"""The ONE turn rule: golden steps -> assistant turns, for every source (training, SFT, evaluation).

The benchmark JSONL gives its turns (one assistant message with ``function_call`` = one turn). The trace
files (``eval_100.json``, ``bfcl_training_*.json``) give a flat list of steps, in the order the benchmark
issued them, so the turns have to be recovered. The rule:

**Contiguous dependency segmentation.** Walk the steps in order; a step opens a new turn exactly when it
depends on a step of the current turn; otherwise it joins the current turn. Steps are recorded in the
benchmark's order (a turn's calls are adjacent), so cutting only at dependencies keeps every golden turn
whole, and independent neighbours share a turn (e.g. two ``Search_Car_Location`` lookups, then
``Search_Car_Rentals``, then the three vehicle calls that all read its response).

Which steps a step depends on (its dependencies, the union of):
  1. the declared ``depends_on`` of the file (bfcl_training has it; eval_100 declares none at all);
  2. value provenance: an informative argument value of the step (see
     :func:`toolrl.env.graph.is_informative`: no booleans, small counts or short strings) equals a leaf
     of an earlier step's recorded response;
  3. where the earlier response was lost (293 of eval_100's 465): typed dependencies
     (:class:`TypedDependencies`), mined from the dependency graph of every recorded trace plus the
     workflow templates. An argument leaf of a (function, parameter) that is typically dependent, and
     that provenance could not explain, depends on the earlier step with a lost response whose
     function feeds that parameter (highest graph support; ties to the nearest step).
"""

from __future__ import annotations

import dataclasses
import functools
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from toolrl.data import paths
from toolrl.data.traces import TraceSample, load_trace_files
from toolrl.data.workflows import load_workflow_templates
from toolrl.env.canonical import canonical_json
from toolrl.env.graph import (DependencyGraph, MiningConfig, build_graph, is_informative, iter_leaves,
                              payload, wildcard)

_MINING = MiningConfig()


@functools.lru_cache(maxsize=4)
def default_typed_dependencies(data_dir: str | None = None) -> TypedDependencies:
    """Typed dependencies mined from both bundled trace files and the workflow templates (built once)."""
    traces = load_trace_files(data_dir)
    samples = [sample for file_samples in traces.values() for sample in file_samples]
    templates = load_workflow_templates(paths.data_file(paths.WORKFLOW_TEMPLATES, data_dir))
    return TypedDependencies.mine(samples, build_graph(samples, templates, _MINING))


def _argument_leaves(arguments: dict[str, Any]) -> list[tuple[str, Any]]:
    """(wildcarded parameter path, value) for every scalar argument, e.g. ``legs[*].fromId``."""
    leaves = []
    for parameter, value in arguments.items():
        if isinstance(value, (dict, list)):
            leaves.extend((wildcard(path), leaf) for path, leaf in iter_leaves(value, parameter))
        else:
            leaves.append((parameter, value))
    return leaves


def _response_values(step) -> set[str]:
    """Canonical JSON of every informative leaf of a step's recorded response (empty when lost)."""
    if not step.has_response:
        return set()
    return {canonical_json(leaf) for _, leaf in iter_leaves(payload(step.response)) if is_informative(leaf, _MINING)}


@dataclasses.dataclass(frozen=True)
class TypedDependencies:
    """Which (function, parameter) leaves take their value from which upstream functions.

    ``sources[(function, parameter)]`` maps an upstream function to its edge support in the graph; a
    pair is kept only when, over the traces where an upstream response of such a function WAS
    recorded before the call, the value was found in it more often than not. (The graph's own free
    counts cannot decide this: they count as "free" every value whose upstream response was lost.)
    """

    sources: dict[tuple[str, str], dict[str, int]]

    @classmethod
    def mine(cls, samples: Iterable[TraceSample], graph: DependencyGraph) -> "TypedDependencies":
        into: dict[tuple[str, str], dict[str, int]] = {}
        for edge, counts in graph.support.items():
            sources = into.setdefault((edge.to_function, edge.to_parameter), {})
            sources[edge.from_function] = max(sources.get(edge.from_function, 0), sum(counts.values()))
        witnessed: Counter = Counter()
        chances: Counter = Counter()
        for sample in samples:
            values = [_response_values(step) for step in sample.steps]
            for position, step in enumerate(sample.steps):
                for parameter, leaf in _argument_leaves(step.arguments):
                    sources = into.get((step.function, parameter))
                    upstream = [e for e in range(position) if sample.steps[e].has_response
                                and sources and sample.steps[e].function in sources]
                    if not upstream:
                        continue
                    chances[(step.function, parameter)] += 1
                    key = canonical_json(leaf)
                    if is_informative(leaf, _MINING) and any(key in values[e] for e in upstream):
                        witnessed[(step.function, parameter)] += 1
        kept = {pair: sources for pair, sources in into.items() if witnessed[pair] * 2 > chances[pair]}
        return cls(kept)


def infer_dependencies(sample: TraceSample, typed: TypedDependencies | None) -> list[frozenset[int]]:
    """Positions of the steps each step depends on (see the module docstring for the three sources)."""
    response_values = [_response_values(step) for step in sample.steps]
    dependencies = []
    for position, step in enumerate(sample.steps):
        deps = {d for d in step.depends_on if 0 <= d < position}
        for parameter, leaf in _argument_leaves(step.arguments):
            explained = False
            if is_informative(leaf, _MINING):
                key = canonical_json(leaf)
                for earlier in range(position):
                    if key in response_values[earlier]:
                        deps.add(earlier)
                        explained = True
            sources = typed.sources.get((step.function, parameter)) if typed is not None else None
            if explained or not sources:
                continue
            candidates = [(sources[sample.steps[e].function], e) for e in range(position)
                          if not sample.steps[e].has_response and sample.steps[e].function in sources]
            if candidates:
                deps.add(max(candidates)[1])  # highest support, then the nearest (largest index)
        dependencies.append(frozenset(deps))
    return dependencies


def segment_steps(dependencies: Sequence[Iterable[int]]) -> list[list[int]]:
    """Contiguous segmentation: step i opens a new turn iff it depends on a step of the current turn."""
    turns: list[list[int]] = []
    for position, deps in enumerate(dependencies):
        if not turns or set(deps) & set(turns[-1]):
            turns.append([position])
        else:
            turns[-1].append(position)
    return turns

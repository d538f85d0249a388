"""The dependency graph: which response field of which tool feeds which parameter of another.

Mined from value provenance in real traces: for every call B of a sample and every argument leaf of
B (``legs[*].fromId`` for list-of-object arguments), each earlier call A with a recorded response
whose payload holds an equal value (canonical equality, see :mod:`toolrl.env.canonical`) at some
JSON path gives an edge ``(A, path) -> (B, parameter)``, list indices wildcarded (``data[*].id``
is written ``[*].id``: paths are relative to the payload, the ``data`` field of the API envelope
``{status, message, data}``, or the whole response when it has no envelope). Support = the number of
(sample, call, parameter) occurrences that witness the edge. Argument values that no earlier response
holds are "free" (given by the user); their counts per (function, parameter) are kept too.

Values too generic to say anything about provenance never count as dependent (they are free):
booleans, null, integers with ``|x| < min_abs_int`` (counts such as ``adults=2``) and strings
shorter than ``min_string_chars``.

The workflow templates' ``dependency_args`` are a second source: each edge records its sources
(``traces``, ``templates``) and its support in each.

CLI: ``python -m toolrl.env.graph --out DIR`` writes ``dependency_graph.json`` and
``dependency_graph.png`` and prints a summary.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from toolrl.data.traces import TraceSample, load_trace_files
from toolrl.data.workflows import WorkflowTemplate, load_workflow_templates
from toolrl.env.canonical import canonical_json, canonical_value

_INDEX = re.compile(r"\[\d+\]")
_PATH_TOKEN = re.compile(r"\[(\d+|\*)\]|([^.\[\]]+)")


@dataclasses.dataclass(frozen=True, order=True)
class Edge:
    """``to_function``'s ``to_parameter`` takes the value at ``from_path`` of ``from_function``'s response."""

    from_function: str
    from_path: str
    to_function: str
    to_parameter: str


@dataclasses.dataclass
class DependencyGraph:
    support: dict[Edge, Counter]  # edge -> {source: count}
    free_parameters: dict[str, Counter]  # function -> {parameter: occurrences given by the user}
    dependent_parameters: dict[str, Counter]  # function -> {parameter: occurrences found upstream}

    def edges(self, source: str | None = None, min_support: int = 1) -> list[Edge]:
        return sorted(e for e, c in self.support.items()
                      if (c[source] if source else sum(c.values())) >= min_support)

    def incoming(self, function: str) -> list[Edge]:
        return [e for e in self.edges() if e.to_function == function]

    def to_json(self) -> dict[str, Any]:
        return {
            "edges": [
                {**dataclasses.asdict(e), "support": dict(sorted(self.support[e].items())),
                 "sources": sorted(self.support[e])}
                for e in self.edges()
            ],
            "free_parameters": {f: dict(sorted(c.items())) for f, c in sorted(self.free_parameters.items())},
            "dependent_parameters": {f: dict(sorted(c.items())) for f, c in sorted(self.dependent_parameters.items())},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "DependencyGraph":
        support = {}
        for row in data["edges"]:
            edge = Edge(row["from_function"], row["from_path"], row["to_function"], row["to_parameter"])
            support[edge] = Counter(row["support"])
        return cls(support,
                   {f: Counter(c) for f, c in data["free_parameters"].items()},
                   {f: Counter(c) for f, c in data["dependent_parameters"].items()})


def wildcard(path: str) -> str:
    """``hotels[0].property.id`` -> ``hotels[*].property.id``."""
    return _INDEX.sub("[*]", path)


def payload(response: Any) -> Any:
    """The part of a response that paths address: ``data`` of the API envelope, else the response."""
    if isinstance(response, dict) and "data" in response and ("status" in response or "message" in response):
        return response["data"]
    return response


def iter_leaves(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(concrete path, leaf value) for every scalar in a JSON tree."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from iter_leaves(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from iter_leaves(item, f"{path}[{index}]")
    else:
        yield path, value


def values_at(value: Any, path: str) -> list[Any]:
    """Every value at a path; ``[*]`` matches every index. Empty when the path does not exist."""
    current = [value]
    for index, key in _PATH_TOKEN.findall(path):
        following = []
        for item in current:
            if index == "*" and isinstance(item, list):
                following.extend(item)
            elif index and index != "*" and isinstance(item, list) and int(index) < len(item):
                following.append(item[int(index)])
            elif key and isinstance(item, dict) and key in item:
                following.append(item[key])
        current = following
    return current


@dataclasses.dataclass(frozen=True)
class MiningConfig:
    min_abs_int: int = 10
    min_string_chars: int = 3


def is_informative(value: Any, config: MiningConfig) -> bool:
    value = canonical_value(value)
    if isinstance(value, bool) or value is None:
        return False
    if isinstance(value, int):
        return abs(value) >= config.min_abs_int
    if isinstance(value, float):
        return True
    return isinstance(value, str) and len(value) >= config.min_string_chars


def _value_key(value: Any) -> str:
    return canonical_json(value)


def mine_trace_edges(samples: Iterable[TraceSample], config: MiningConfig = MiningConfig()):
    """Edges with support from value provenance in the samples; and free/dependent parameter counts."""
    support: Counter = Counter()
    free: dict[str, Counter] = defaultdict(Counter)
    dependent: dict[str, Counter] = defaultdict(Counter)
    for sample in samples:
        # value -> {(function, wildcarded path)} of every earlier response, built step by step.
        index: dict[str, set[tuple[str, str]]] = defaultdict(set)
        for step in sample.steps:
            for parameter, value in step.arguments.items():
                leaves = list(iter_leaves(value, parameter)) if isinstance(value, (dict, list)) else [(parameter, value)]
                for leaf_path, leaf in leaves:
                    target = wildcard(leaf_path)
                    sources = index.get(_value_key(leaf), set()) if is_informative(leaf, config) else set()
                    if sources:
                        dependent[step.function][target] += 1
                        for function, path in sources:
                            support[Edge(function, path, step.function, target)] += 1
                    else:
                        free[step.function][target] += 1
            if step.has_response:
                for path, leaf in iter_leaves(payload(step.response)):
                    if is_informative(leaf, config):
                        index[_value_key(leaf)].add((step.function, wildcard(path)))
    return support, free, dependent


def template_edges(templates: Iterable[WorkflowTemplate]) -> Counter:
    """The templates' ``dependency_args`` as wildcarded edges, counted over templates."""
    edges: Counter = Counter()
    for template in templates:
        for step in template.steps:
            for link in step.dependency_args:
                source = template.steps[link.from_step].function
                edges[Edge(source, wildcard(link.from_field), step.function, link.parameter)] += 1
    return edges


def build_graph(samples: Iterable[TraceSample], templates: Iterable[WorkflowTemplate] = (),
                config: MiningConfig = MiningConfig()) -> DependencyGraph:
    traced, free, dependent = mine_trace_edges(samples, config)
    support: dict[Edge, Counter] = defaultdict(Counter)
    for edge, count in traced.items():
        support[edge]["traces"] += count
    for edge, count in template_edges(templates).items():
        support[edge]["templates"] += count
    return DependencyGraph(dict(support), dict(free), dict(dependent))


def concrete_template_edges(templates: Iterable[WorkflowTemplate]) -> set[tuple[str, str, str, str]]:
    """The templates' distinct edges (A, concrete from_field, B, parameter), list indices kept."""
    return {(t.steps[link.from_step].function, link.from_field, step.function, link.parameter)
            for t in templates for step in t.steps for link in step.dependency_args}


def witnessed_template_edges(templates: Iterable[WorkflowTemplate], samples: Iterable[TraceSample]) -> set[tuple[str, str, str, str]]:
    """Template edges (A, concrete from_field, B, parameter) that some trace shows: B's argument equals
    the value at that path in an earlier recorded response of A."""
    by_pair = defaultdict(list)
    for a, path, b, parameter in concrete_template_edges(templates):
        by_pair[(a, b)].append((path, parameter))
    witnessed = set()
    for sample in samples:
        for later in sample.steps:
            for earlier in sample.steps[: later.index]:
                if not earlier.has_response:
                    continue
                for path, parameter in by_pair.get((earlier.function, later.function), []):
                    if parameter not in later.arguments:
                        continue
                    found = values_at(payload(earlier.response), path)
                    if found and canonical_value(found[0]) == canonical_value(later.arguments[parameter]):
                        witnessed.add((earlier.function, path, later.function, parameter))
    return witnessed


def draw(graph: DependencyGraph, out: Path, min_support: int = 1) -> None:
    """Function-level picture: an arrow A -> B when some field of A feeds some parameter of B."""
    # Local: matplotlib and networkx (several seconds to import) serve this picture only.
    import matplotlib
    import networkx as nx

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # local, like matplotlib; after choosing the Agg backend

    digraph = nx.DiGraph()
    for edge in graph.edges(min_support=min_support):
        weight = sum(graph.support[edge].values())
        if digraph.has_edge(edge.from_function, edge.to_function):
            digraph[edge.from_function][edge.to_function]["weight"] += weight
        else:
            digraph.add_edge(edge.from_function, edge.to_function, weight=weight)
    figure, axis = plt.subplots(figsize=(18, 14))
    layout = nx.spring_layout(digraph, seed=0, k=1.2)
    widths = [0.5 + min(4.0, d["weight"] / 10) for _, _, d in digraph.edges(data=True)]
    nx.draw_networkx(digraph, layout, ax=axis, node_size=500, font_size=8, width=widths,
                     arrowsize=12, node_color="#9ecae1", edge_color="#555555")
    axis.set_title(f"Booking tool dependency graph ({digraph.number_of_nodes()} functions, "
                   f"{digraph.number_of_edges()} function pairs, {len(graph.edges(min_support=min_support))} field edges)")
    axis.axis("off")
    figure.tight_layout()
    figure.savefig(out, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m toolrl.env.graph", description="Mine the tool dependency graph.")
    parser.add_argument("--out", default="artifacts/graph", help="output directory")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    samples = [s for group in load_trace_files(args.data_dir).values() for s in group]
    templates = load_workflow_templates(None if args.data_dir is None else Path(args.data_dir) / "workflow_templates.json")
    graph = build_graph(samples, templates)
    (out / "dependency_graph.json").write_text(json.dumps(graph.to_json(), indent=1))
    draw(graph, out / "dependency_graph.png")
    witnessed = witnessed_template_edges(templates, samples)
    mined = set(graph.edges("traces"))
    covered = sum(Edge(a, wildcard(p), b, q) in mined for a, p, b, q in witnessed)
    n_raw = len(concrete_template_edges(templates))
    print(f"edges from traces     {len(graph.edges('traces'))}")
    print(f"edges from templates  {len(graph.edges('templates'))}")
    print(f"edges in both         {sum(1 for c in graph.support.values() if len(c) == 2)}")
    print(f"functions with edges  {len({e.to_function for e in graph.edges()} | {e.from_function for e in graph.edges()})}")
    print(f"template edges        {n_raw} distinct, {len(witnessed)} witnessed by the traces, "
          f"{covered} of those mined ({covered / max(1, len(witnessed)):.1%})")
    print(f"wrote {out / 'dependency_graph.json'} and {out / 'dependency_graph.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Queries from the benchmark's own queries: a real query with its values replaced by the trace's.

ComplexFuncBench's workflow templates (``workflow_templates.json``) keep, for each workflow, the
golden arguments of its first example and that example's query. :func:`align` finds, in the query,
where each value the user gave is written (:mod:`toolrl.synth.surface`: "December 5, 2024" for
``2024-12-05``, "cheapest" for ``CHEAPEST``, "Beijing" for a lookup string) and how it is written; the
result is a :class:`QueryTemplate`, the query with those spans as slots.

:class:`RealQueryWriter` writes a trace's query from a template whose calls are the trace's calls (the
same tools, as many of each) and whose slots are exactly the trace's free values: each slot is filled
with the trace's value in the style the original used. A value written in a way this module cannot
rewrite (a relative date, "two hours after I land") leaves that template unusable for a trace that
states it. The validator (:func:`toolrl.synth.query_writer.missing_values`) still checks every query.

No eval_100 query is ever used: templates whose example is an eval_100 sample are skipped, and so are
those whose template family (:func:`toolrl.data.coverage.family_key`) equals an eval_100 query's, so no
training query shares a family with a benchmark test query.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from toolrl.data import paths
from toolrl.data.coverage import _values, family_key
from toolrl.data.golden import load_samples
from toolrl.data.workflows import load_workflow_templates
from toolrl.synth import surface
from toolrl.synth.pool import OPAQUE_NAME, argument_leaves
from toolrl.synth.query import free_values
from toolrl.synth.types import Trace


@dataclasses.dataclass(frozen=True)
class Slot:
    """A span of the template's query that writes the value of (step, leaf path), in ``style``."""

    start: int
    end: int
    targets: tuple[tuple[int, str], ...]  # (step index, leaf path): the steps' values this span states
    kind: str  # "text", "date", "time", "number", "enum"
    style: str


@dataclasses.dataclass(frozen=True)
class QueryTemplate:
    """A real query with the spans of its user-given values as slots."""

    template_id: str
    query: str
    functions: tuple[str, ...]  # per step
    slots: tuple[Slot, ...]
    sources: tuple[tuple[int, str, int], ...] = ()  # (step, parameter, step it takes the value from)

    @property
    def signature(self) -> tuple[tuple[str, int], ...]:
        return tuple(sorted(Counter(self.functions).items()))


def _find_value(query: str, path: str, value: Any, taken: list[tuple[int, int]]) -> tuple[int, int, str, str] | None:
    """(start, end, kind, style) of where ``query`` writes ``value``, outside the spans already taken."""

    def free(start: int, end: int) -> bool:
        return all(end <= a or start >= b for a, b in taken)

    date = surface.parse_iso_date(value)
    if date is not None:
        for start, end, iso, style in surface.date_spans(query):
            if iso == value and style != "relative" and free(start, end):
                return start, end, "date", style
        return None
    clock = surface.parse_clock(value)
    if clock is not None:
        for start, end, found, style in surface.time_spans(query):
            if found == f"{clock[0]:02d}:{clock[1]:02d}" and free(start, end):
                return start, end, "time", style
        return None
    for index, phrase in enumerate(surface.enum_phrases(path, value)):
        for match in re.finditer(rf"\b{re.escape(phrase)}\b", query, re.I):
            if free(match.start(), match.end()):
                return match.start(), match.end(), "enum", str(index)
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        words = [str(value)] + ([surface.number_word(value)] if 0 <= value <= 20 else [])
        for style, word in zip(("digit", "word"), words):
            for match in re.finditer(rf"(?<![\w.]){re.escape(word)}(?![\w.]\w)", query, re.I):
                if free(match.start(), match.end()):
                    return match.start(), match.end(), "number", style
        return None
    text = str(value).strip()
    if len(text) < 2:
        return None
    for match in re.finditer(re.escape(text), query, re.I):
        if free(match.start(), match.end()):
            return match.start(), match.end(), "text", "verbatim"
    return None


def align(template_id: str, query: str, steps: Sequence[tuple[str, dict[str, Any], set[str]]],
          sources: Sequence[tuple[int, str, int]] = ()) -> QueryTemplate | None:
    """The template of ``query`` for ``steps`` = (function, arguments, dependent leaf paths); None when a
    user-given value is not found in the query (the query does not state it the way this module reads).
    ``sources`` (step, parameter, source step) say which step feeds which dependent value; a trace filled
    from the template must take those values from the same calls ("return it in San Diego" = the drop-off
    coordinates come from the San Diego lookup)."""
    taken: list[tuple[int, int]] = []
    spans: dict[tuple[int, int], list[tuple[int, str]]] = defaultdict(list)
    kinds: dict[tuple[int, int], tuple[str, str]] = {}
    for index, (function, arguments, dependent) in enumerate(steps):
        for leaf in argument_leaves(arguments):
            if leaf.path in dependent or leaf.parameter in dependent:
                continue
            # A value another step already wrote (the same date twice) shares that span.
            shared = [key for key, targets in spans.items()
                      if any(_value(steps, t) == leaf.value for t in targets)]
            if shared:
                spans[shared[0]].append((index, leaf.path))
                continue
            found = _find_value(query, leaf.path, leaf.value, taken)
            if found is None and (OPAQUE_NAME.search(leaf.parameter) or OPAQUE_NAME.search(leaf.path.split(".")[-1])):
                continue  # an id or coordinate the template file does not mark dependent: a response gave it
            if found is None:
                return None
            start, end, kind, style = found
            taken.append((start, end))
            spans[(start, end)].append((index, leaf.path))
            kinds[(start, end)] = (kind, style)
    slots = tuple(Slot(start, end, tuple(targets), *kinds[(start, end)])
                  for (start, end), targets in sorted(spans.items()))
    return QueryTemplate(template_id, query, tuple(f for f, _, _ in steps), slots, tuple(sources))


def _value(steps: Sequence[tuple[str, dict[str, Any], set[str]]], target: tuple[int, str]) -> Any:
    index, path = target
    for leaf in argument_leaves(steps[index][1]):
        if leaf.path == path:
            return leaf.value
    return None


def _render(slot: Slot, value: Any, original: str) -> str | None:
    if slot.kind == "date":
        date = surface.parse_iso_date(value)
        return surface.say_date_as(date, slot.style) if date else None
    if slot.kind == "time":
        clock = surface.parse_clock(value)
        return surface.say_time_as(*clock, slot.style) if clock else None
    if slot.kind == "enum":
        phrases = surface.enum_phrases(slot.targets[0][1], value)
        if not phrases:
            return None
        phrase = phrases[min(int(slot.style), len(phrases) - 1)]
        return phrase.capitalize() if original[:1].isupper() else phrase
    if slot.kind == "number":
        if not isinstance(value, int):
            return None
        return surface.number_word(value) if slot.style == "word" else str(value)
    return str(value)


class RealQueryWriter:
    """Writes a trace's query from a benchmark query template with the same tools and free values."""

    name = "real"

    def __init__(self, templates: Iterable[QueryTemplate]):
        self.by_signature: dict[tuple[tuple[str, int], ...], list[QueryTemplate]] = defaultdict(list)
        for template in templates:
            self.by_signature[template.signature].append(template)

    def __len__(self) -> int:
        return sum(len(v) for v in self.by_signature.values())

    def write(self, trace: Trace, rng: np.random.Generator) -> str | None:
        candidates = self.by_signature.get(tuple(sorted(Counter(c.name for c in trace.calls).items())), [])
        for position in rng.permutation(len(candidates)) if candidates else ():
            query = self._fill(candidates[int(position)], trace)
            if query is not None:
                return query
        return None

    @staticmethod
    def _fill(template: QueryTemplate, trace: Trace) -> str | None:
        # k-th step of a tool <-> k-th call of that tool in the trace (flat order).
        calls_of: dict[str, list[int]] = defaultdict(list)
        for index, call in enumerate(trace.calls):
            calls_of[call.name].append(index)
        seen: Counter = Counter()
        step_to_call = {}
        for step, function in enumerate(template.functions):
            step_to_call[step] = calls_of[function][seen[function]]
            seen[function] += 1
        for step, parameter, source in template.sources:
            bindings = trace.bindings[step_to_call[step]] if trace.bindings else ()
            if not any(b.parameter == parameter and b.from_call == step_to_call[source] for b in bindings):
                return None  # the trace takes this value from another call than the query says
        free = {(index, path): value for index, path, value in free_values(trace)}
        filled_targets: set[tuple[int, str]] = set()
        pieces: list[tuple[int, int, str]] = []
        for slot in template.slots:
            values = []
            for step, path in slot.targets:
                key = (step_to_call[step], path)
                if key not in free:
                    return None  # the template states a value this trace takes from a response
                values.append(free[key])
                filled_targets.add(key)
            if any(v != values[0] for v in values):
                return None  # one span, two different values in this trace
            text = _render(slot, values[0], template.query[slot.start:slot.end])
            if text is None:
                return None
            pieces.append((slot.start, slot.end, text))
        if set(free) != filled_targets:
            return None  # the trace has a free value the template never states
        query = template.query
        for start, end, text in sorted(pieces, reverse=True):
            query = query[:start] + text + query[end:]
        # "the most trending" filled with "highest-rated" reads "the most highest-rated": drop the extra "most".
        return re.sub(r"\bmost (most |\w+est\b|\w+-rated\b|top-rated\b|least\b|currently\b)", r"\1", query)


def benchmark_templates(data_dir: Any = None, exclude_queries: Sequence[Any] = ()) -> list[QueryTemplate]:
    """Aligned templates from ``workflow_templates.json`` (first example of each workflow), without the
    eval_100 samples' queries and without any template whose family equals one of ``exclude_queries``'
    (samples with ``query`` and ``calls``; default: eval_100)."""
    exclude = list(exclude_queries) or load_samples("eval_100", data_dir)
    excluded_ids = {s.sample_id.split("#")[0] for s in exclude}
    excluded_queries = {s.query for s in exclude}
    excluded_families = {family_key(s.query, _values(s)) for s in exclude}
    out = []
    for workflow in load_workflow_templates(paths.data_file(paths.WORKFLOW_TEMPLATES, data_dir)):
        if not workflow.examples or not workflow.steps:
            continue
        example = workflow.examples[0]
        if example.entry_id in excluded_ids or example.query in excluded_queries:
            continue
        steps = [(s.function, dict(s.arguments), {d.parameter for d in s.dependency_args}) for s in workflow.steps]
        values = sorted({str(leaf.value) for _, args, dep in steps for leaf in argument_leaves(args)
                         if isinstance(leaf.value, str) and len(leaf.value) >= 3}, key=len, reverse=True)
        if family_key(example.query, values) in excluded_families:
            continue
        sources = [(s.index, d.parameter, d.from_step) for s in workflow.steps for d in s.dependency_args]
        template = align(workflow.workflow_id, example.query, steps, sources)
        if template is not None:
            out.append(template)
    return out

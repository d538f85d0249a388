"""Constrained synthesis: every trace replays against the environment, knobs hold, seeds determine output."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from toolrl.data.workflows import load_workflow_templates
from toolrl.env.canonical import canonical_value
from toolrl.env.graph import payload, values_at
from toolrl.synth.pool import build_pool
from toolrl.synth.query import QueryRenderer, free_values, missing_free_values
from toolrl.synth.sampler import ConstrainedSampler, SynthKnobs
from toolrl.synth.types import Trace
from toolrl.synth.validate import check_trace, replay


@pytest.fixture(scope="module")
def pool(response_cache, all_samples, tool_schemas, data_dir):
    return build_pool(response_cache, all_samples, load_workflow_templates(data_dir / "workflow_templates.json"),
                      tool_schemas)


def _sample(pool, attempts=20, seed=0, **knobs):
    sampler = ConstrainedSampler(pool, SynthKnobs(**knobs), seed=seed)
    return [t for t in (sampler.sample(i) for i in range(attempts)) if t is not None]


def test_pool_joins_cache(pool, response_cache):
    assert len(pool.entries) == len(response_cache) == 467
    # Every opaque parameter of the flight search comes from upstream.
    assert {"fromId", "toId"} <= pool.must_bind["Search_Flights"]
    assert "query" not in pool.must_bind.get("Search_Flight_Location", frozenset())
    # The join index finds a cached entry by one of its argument values.
    entry = pool.entries[pool.by_function["Search_Flight_Location"][0]]
    from toolrl.synth.pool import value_key

    assert entry.index in pool.join[("Search_Flight_Location", "query", value_key(entry.arguments["query"]))]


@pytest.mark.parametrize("n_calls", [2, 3, 4, 6, 8])
def test_every_trace_replays_with_grounded_dependencies(pool, booking_env, n_calls):
    traces = _sample(pool, attempts=15, n_calls=n_calls)
    assert len(traces) >= 14  # >= 99% in the report; a few attempts here
    for trace in traces:
        assert trace.n_calls == n_calls
        assert replay(booking_env, trace) == []
        assert check_trace(pool, trace).valid, check_trace(pool, trace).reason
        calls = trace.calls
        for index, bindings in enumerate(trace.bindings):
            assert set(trace.depends_on[index]) == {b.from_call for b in bindings}
            for binding in bindings:
                assert binding.from_call < index
                found = values_at(payload(calls[binding.from_call].response), binding.from_path)
                wanted = values_at(calls[index].arguments, binding.parameter)
                assert canonical_value(found[0]) == canonical_value(wanted[0])
            # Every opaque argument is bound.
            entry = pool.lookup(calls[index].name, calls[index].arguments)
            assert {leaf.path for leaf in pool.must_bind_leaves(entry)} <= {b.parameter for b in bindings}
        if n_calls > 1:
            assert any(trace.depends_on)  # a multi-step task, not independent calls


def test_turns_group_independent_calls(pool):
    for trace in _sample(pool, attempts=10, n_calls=5):
        first_of_turn = 0
        for turn in trace.turns:
            members = range(first_of_turn, first_of_turn + len(turn))
            for i in members:
                # Dependencies are all in earlier turns, and at least one in the previous turn.
                assert all(d < first_of_turn for d in trace.depends_on[i])
            first_of_turn += len(turn)
        assert trace.depth == len(trace.turns)


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_depth_knob(pool, depth):
    n_calls = 4 if depth > 1 else 1
    traces = _sample(pool, attempts=10, n_calls=n_calls, depth=depth)
    assert traces
    assert all(t.depth == depth and t.n_calls == n_calls for t in traces)


@pytest.mark.parametrize("max_width", [1, 2])
def test_width_knob(pool, max_width):
    traces = _sample(pool, attempts=10, n_calls=4, max_width=max_width)
    assert traces
    assert all(t.width <= max_width for t in traces)
    if max_width == 1:
        assert all(t.depth == 4 for t in traces)  # a chain


def test_wide_traces_have_parallel_turns(pool):
    traces = _sample(pool, attempts=20, n_calls=6)
    assert any(t.width >= 2 for t in traces)


@pytest.mark.parametrize("n_distractors", [0, 1, 3])
def test_distractor_knob(pool, n_distractors):
    for trace in _sample(pool, attempts=8, n_calls=3, n_distractors=n_distractors):
        needed = {call.name for call in trace.calls}
        extra = set(trace.candidate_tools) - needed
        assert needed <= set(trace.candidate_tools)
        assert len(trace.candidate_tools) == len(set(trace.candidate_tools))
        available = {name for name in pool.schemas if name not in needed
                     and pool.domains[name] in {pool.domains[f] for f in needed}}
        assert len(extra) == min(n_distractors, len(available))
        assert extra <= available  # same-domain distractors


@pytest.mark.parametrize("domain", ["Flights", "Car-Rental", "Attraction", "Hotels"])
def test_domain_knob(pool, domain):
    traces = _sample(pool, attempts=8, n_calls=3, domains=(domain,))
    assert traces
    assert all(t.domain == domain for t in traces)
    assert all(pool.domains[c.name] == domain for t in traces for c in t.calls)


@pytest.mark.parametrize("choice", ["uniform", "frequency"])
def test_template_guided_sampling(pool, booking_env, choice):
    traces = _sample(pool, attempts=10, n_calls=3, template_choice=choice)
    assert len(traces) >= 9
    templates = {t.workflow_id: t for t in pool.templates}
    for trace in traces:
        template = templates[trace.template_id]
        assert {c.name for c in trace.calls} <= set(template.pattern)
        assert replay(booking_env, trace) == []


def test_same_seed_same_traces_other_seed_differs(pool):
    first = [t.to_json() for t in _sample(pool, attempts=6, seed=3, n_calls=4)]
    again = [t.to_json() for t in _sample(pool, attempts=6, seed=3, n_calls=4)]
    other = [t.to_json() for t in _sample(pool, attempts=6, seed=4, n_calls=4)]
    assert first == again
    assert first != other


def test_queries_state_every_free_value(pool):
    traces = _sample(pool, attempts=30, n_calls=4) + _sample(pool, attempts=10, n_calls=8)
    for trace in traces:
        assert trace.query
        assert missing_free_values(trace) == []
        # Dependent values are never given away in the query (long opaque ones, at least), unless
        # the same value is also a free value of another call.
        stated = {str(value) for _, _, value in free_values(trace)}
        for index, bindings in enumerate(trace.bindings):
            for binding in bindings:
                value = values_at(trace.calls[index].arguments, binding.parameter)[0]
                if isinstance(value, str) and len(value) > 20 and not any(value in s for s in stated):
                    assert value not in trace.query


def test_paraphraser_off_by_default(pool):
    renderer = QueryRenderer()
    assert renderer.paraphraser is None
    sampler = ConstrainedSampler(pool, SynthKnobs(n_calls=2), seed=0)
    assert sampler.renderer.paraphraser is None


def test_paraphrase_dropping_a_value_is_rejected(pool):
    class Lossy:
        def paraphrase(self, query: str) -> str:
            return "Help me plan a trip."

    trace = _sample(pool, attempts=1, n_calls=2)[0]
    renderer = QueryRenderer(paraphraser=Lossy())
    query = renderer.render(trace, np.random.default_rng(0))
    assert missing_free_values(trace, query) == [] and renderer.paraphrase_rejected == 1


def test_trace_json_round_trip(pool):
    for trace in _sample(pool, attempts=5, n_calls=5):
        assert Trace.from_json(trace.to_json()) == trace
        matrix = trace.dependency_matrix()
        assert matrix.shape == (5, 5) and np.all(np.triu(matrix) == 0)


def test_validator_rejects_broken_traces(pool):
    def opaque(call):
        return bool(pool.must_bind_leaves(pool.lookup(call.name, call.arguments)))

    trace = next(t for t in _sample(pool, attempts=10, n_calls=3) if any(opaque(c) for c in t.calls))
    index = next(i for i, c in enumerate(trace.calls) if opaque(c))
    # Drop the bindings of a dependent call: its opaque argument is no longer grounded.
    broken = dataclasses.replace(trace, bindings=tuple(() if i == index else b for i, b in enumerate(trace.bindings)))
    assert not check_trace(pool, broken).valid
    # Change an argument: the call misses the cache.
    calls = [list(turn) for turn in trace.turns]
    call = calls[0][0]
    calls[0][0] = dataclasses.replace(call, arguments={**call.arguments, "zzz": "nope"})
    missed = dataclasses.replace(trace, turns=tuple(tuple(t) for t in calls))
    assert "misses the cache" in check_trace(pool, missed).reason

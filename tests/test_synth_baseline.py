"""The unconstrained baseline and the efficiency report."""

from __future__ import annotations

import csv

import pytest

from toolrl.data.workflows import load_workflow_templates
from toolrl.synth.baseline import UnconstrainedSampler
from toolrl.synth.pool import build_pool
from toolrl.synth.report import count_call_sets, measure, run_report
from toolrl.synth.sampler import ConstrainedSampler, SynthKnobs
from toolrl.synth.validate import check_trace, replay


@pytest.fixture(scope="module")
def pool(response_cache, all_samples, tool_schemas, data_dir):
    return build_pool(response_cache, all_samples, load_workflow_templates(data_dir / "workflow_templates.json"),
                      tool_schemas)


def test_baseline_keeps_only_valid_traces(pool, booking_env):
    sampler = UnconstrainedSampler(pool, SynthKnobs(n_calls=2), seed=0)
    kept = [t for t in (sampler.sample(i) for i in range(30_000)) if t is not None]
    assert kept  # the 2-call yield is about 1e-4
    for trace in kept:
        assert check_trace(pool, trace).valid
        assert replay(booking_env, trace) == []
        assert trace.n_calls == 2


def test_baseline_draws_from_observed_pools(pool):
    sampler = UnconstrainedSampler(pool, SynthKnobs(n_calls=3), seed=0)
    assert set(sampler.tools) == set(pool.by_function)
    assert all(values for values in sampler.values.values())
    # Deterministic per attempt.
    assert [sampler.sample(i) for i in range(200)] == [sampler.sample(i) for i in range(200)]


def test_constrained_is_far_more_efficient(pool):
    knobs = SynthKnobs(n_calls=3)
    constrained = measure("constrained", 3, ConstrainedSampler(pool, knobs).sample, 100, 5.0)
    baseline = measure("unconstrained", 3, UnconstrainedSampler(pool, knobs).sample, 3000, 5.0)
    assert constrained.yield_ >= 0.99
    assert baseline.yield_ < 0.01


def test_exhaustive_counts_match_sampled_distinct_sets(pool):
    counts = count_call_sets(pool, 3)
    assert counts[1] == sum(pool.is_root(e.index) for e in pool.entries)
    sampler = ConstrainedSampler(pool, SynthKnobs(n_calls=2), seed=0)
    sets = {frozenset(pool.lookup(c.name, c.arguments) for c in t.calls)
            for t in (sampler.sample(i) for i in range(600)) if t is not None}
    assert len(sets) <= counts[2]  # the sampler never finds a set the enumeration misses
    assert len(sets) > 0.8 * counts[2]


def test_report_writes_table_and_plot(pool, tmp_path):
    lines = []
    cells = run_report(pool, tmp_path, complexities=(2, 4), seconds_per_cell=0.3, max_attempts=500,
                       constrained_attempts=50, enumerate_up_to=2, printer=lines.append,
                       reach_sizes=(10,), chain_depths=(2,))
    assert (tmp_path / "efficiency.png").stat().st_size > 0
    rows = list(csv.DictReader((tmp_path / "efficiency.csv").open()))
    assert [(r["sampler"], int(r["n_calls"])) for r in rows] == [
        ("constrained", 2), ("unconstrained", 2), ("constrained", 4), ("unconstrained", 4)]
    assert all(c.yield_ >= 0.99 for c in cells if c.sampler == "constrained")
    assert any("valid/s" in line for line in lines)

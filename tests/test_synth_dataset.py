"""The TFDS dataset: write -> read round trip, held-out workflows, determinism, the authors' splits."""

from __future__ import annotations

import numpy as np
import pytest

from toolrl.data.workflows import load_workflow_templates
from toolrl.synth.build import Mix, authors_traces, split_by_workflow, synthesize
from toolrl.synth.pool import build_pool
from toolrl.synth.sampler import SynthKnobs
from toolrl.synth.tfds_builder import (build_dataset, decode_example, load_golden_traces, load_trace_dataset,
                                       trace_pipeline)


@pytest.fixture(scope="module")
def pool(response_cache, all_samples, tool_schemas, data_dir):
    return build_pool(response_cache, all_samples, load_workflow_templates(data_dir / "workflow_templates.json"),
                      tool_schemas)


MIXES = [Mix(SynthKnobs(n_calls=2), 10), Mix(SynthKnobs(n_calls=4, template_choice="frequency"), 8),
         Mix(SynthKnobs(n_calls=5, n_distractors=1), 12)]


@pytest.fixture(scope="module")
def traces(pool):
    return synthesize(pool, MIXES, seed=7)


def test_synthesis_is_deterministic_and_deduplicated(pool, traces):
    assert len(traces) == 30
    assert len({t.trace_id for t in traces}) == 30
    again = synthesize(pool, MIXES, seed=7)
    assert [t.to_json() for t in again] == [t.to_json() for t in traces]
    assert [t.to_json() for t in synthesize(pool, MIXES, seed=8)] != [t.to_json() for t in traces]


def test_split_holds_out_whole_workflows(traces):
    splits = split_by_workflow(traces, test_fraction=0.3, validation_fraction=0.2, seed=1)
    assert sum(len(s) for s in splits.values()) == len(traces)
    assert splits["test"] and splits["train"]
    test_workflows = {t.workflow_id for t in splits["test"]}
    assert not test_workflows & {t.workflow_id for t in splits["train"] + splits["validation"]}
    assert split_by_workflow(traces, 0.3, 0.2, seed=1) == splits


def test_tfds_round_trip(traces, tmp_path):
    splits = split_by_workflow(traces, test_fraction=0.3, validation_fraction=0.2, seed=1)
    build_dataset(tmp_path, config="synthetic", splits=splits)
    for name, expected in splits.items():
        source = load_trace_dataset(name, tmp_path)
        assert len(source) == len(expected)
        read = {t.trace_id: t for t in load_golden_traces(name, tmp_path)}
        assert read == {t.trace_id: t for t in expected}
    # Held-out workflows never appear in train, as read back from disk.
    train = {t.workflow_id for t in load_golden_traces("train", tmp_path)}
    assert not train & {t.workflow_id for t in load_golden_traces("test", tmp_path)}
    # The grain pipeline decodes JSON back to Python values and the matrix to [n, n].
    example = next(iter(trace_pipeline("train", tmp_path, seed=0)))
    assert isinstance(example["turns"], list) and isinstance(example["turns"][0][0]["arguments"], dict)
    assert example["dependency_matrix"].shape == (example["n_calls"], example["n_calls"])
    original = {t.trace_id: t for t in traces}[example["trace_id"]]
    np.testing.assert_array_equal(example["dependency_matrix"], original.dependency_matrix())
    assert (example["depth"], example["width"]) == (original.depth, original.width)
    as_traces = list(trace_pipeline("validation", tmp_path, as_trace=True))
    assert sorted(t.trace_id for t in as_traces) == sorted(t.trace_id for t in splits["validation"])


def test_same_seed_same_dataset_bytes(pool, tmp_path):
    def write(directory, seed):
        splits = split_by_workflow(synthesize(pool, MIXES[:1], seed=seed), seed=seed)
        build_dataset(directory, splits=splits)
        return {name: [decode_example(r)["turns"] for r in load_trace_dataset(name, directory)]
                for name, traces in splits.items() if traces}

    assert write(tmp_path / "a", 3) == write(tmp_path / "b", 3)


@pytest.mark.parametrize("name,split,count", [("bfcl_training", "train", 101), ("eval_100", "test", 100)])
def test_authors_samples_as_configs(tmp_path, data_dir, name, split, count):
    build_dataset(tmp_path, config=name)
    read = load_golden_traces(split, tmp_path, config=name)
    assert len(read) == count
    expected = {t.trace_id: t for t in authors_traces(name, data_dir)}
    by_id = {t.trace_id: t for t in read}
    sample_id = sorted(expected)[0]
    assert [c.name for c in by_id[sample_id].calls] == [c.name for c in expected[sample_id].calls]
    assert by_id[sample_id].query == expected[sample_id].query
    assert all(t.domain for t in read)


def test_cli_config_defaults_and_validation():
    import importlib.util
    from pathlib import Path

    from toolrl.synth.build import validate_config

    path = Path(__file__).resolve().parents[1] / "configs" / "synth.py"
    spec = importlib.util.spec_from_file_location("synth_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    validate_config(config)
    assert config.output_dir == "" and config.paraphrase.enabled is False  # no network by default
    config.paraphrase.enabled = True
    with pytest.raises(ValueError, match="paraphrase.base_url"):
        validate_config(config)

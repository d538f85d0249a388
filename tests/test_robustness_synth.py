"""Synthesis never writes an empty dataset (TFDS would reuse it): it refuses, naming the knob."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from toolrl.cli import UserError
from toolrl.data.workflows import load_workflow_templates
from toolrl.synth.build import Mix, SynthConfigError, default_mixes, require_traces, synthesize
from toolrl.synth.pool import build_pool
from toolrl.synth.sampler import SynthKnobs
from toolrl.synth.tfds_builder import build_dataset

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pool(response_cache, all_samples, tool_schemas, data_dir):
    return build_pool(response_cache, all_samples, load_workflow_templates(data_dir / "workflow_templates.json"),
                      tool_schemas)


def test_impossible_complexity_is_refused_naming_the_knob(pool):
    mixes = [Mix(SynthKnobs(n_calls=1000), 1)]
    traces = synthesize(pool, mixes, seed=0, max_attempt_factor=3)
    assert traces == []
    with pytest.raises(SynthConfigError, match=r"0 traces synthesized.*complexities=\(1000,\).*--config\.complexities"):
        require_traces(traces, mixes)
    assert issubclass(SynthConfigError, UserError)


def test_shortfall_is_reported_not_silent(pool):
    mixes = [Mix(SynthKnobs(n_calls=2), 3), Mix(SynthKnobs(n_calls=1000), 1)]
    traces = synthesize(pool, mixes, seed=0, max_attempt_factor=3)
    assert len(traces) == 3
    warnings = require_traces(traces, mixes)
    assert len(warnings) == 1 and warnings[0].startswith("complexity 1000: 0 of 1")


def test_builder_refuses_empty_splits(tmp_path):
    with pytest.raises(SynthConfigError, match="refusing to write an empty"):
        build_dataset(tmp_path, "synthetic", splits={"train": [], "validation": [], "test": []})
    assert not list(tmp_path.rglob("*.array_record*")) and not list(tmp_path.rglob("dataset_info.json"))


def test_cli_config_error_is_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "toolrl.synth", "--config=configs/synth.py",
                             "--config.complexities=(0,)", f"--config.output_dir={tmp_path}"],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("python -m toolrl.synth: error: complexities") and "Traceback" not in result.stderr
    assert default_mixes  # imported API stays

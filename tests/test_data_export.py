"""toolrl.data.export: a config's tasks as JSONL, the same samples its trainer and evaluator load."""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from toolrl.cli import UserError
from toolrl.data.export import build_command, eval_source, export_records

REPO = Path(__file__).resolve().parents[1]
REQUIRED = ("query", "domain", "workflow_id", "sample_id", "source", "calls", "turns")


def config_of(name: str):
    return runpy.run_path(str(REPO / "configs" / name))["get_config"]()


def export(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "toolrl.data.export", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu", **(env or {})})


def read_jsonl(path: Path) -> list[dict]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def check_record(record: dict) -> None:
    for key in REQUIRED:
        assert key in record, key
    assert record["query"] and record["calls"]
    for position, call in enumerate(record["calls"]):
        assert call["index"] == position and set(call) >= {"name", "arguments", "response"}
        assert isinstance(call["arguments"], dict)
    assert sorted(i for turn in record["turns"] for i in turn) == list(range(len(record["calls"])))


def test_train_export_of_tiny_matches_the_trainer_loader(tmp_path):
    from toolrl.rl.trainer import load_training_samples

    samples = load_training_samples(config_of("tiny.py"))
    out = tmp_path / "out" / "train.jsonl"
    result = export("--config=configs/tiny.py", "--split=train", f"--out={out}")
    assert result.returncode == 0, result.stderr
    records = read_jsonl(out)
    assert len(records) == len(samples) == 4
    assert [r["sample_id"] for r in records] == [s.sample_id for s in samples]
    for record, sample in zip(records, samples):
        check_record(record)
        assert record["split"] == "train" and record["source"] == sample.source
        assert record["query"] == sample.query
        assert [c["name"] for c in record["calls"]] == [c.function for c in sample.calls]
        assert [c["response"] for c in record["calls"]] == [c.response for c in sample.calls]
        assert record["turns"] == [list(t) for t in sample.turn_indices]
        assert record["workflow_id"] == sample.sample_id.partition("#")[0]
        assert [t["name"] for t in record["tools"]] == [t["name"] for t in sample.tools]


def test_test_export_matches_the_evaluator_selection():
    from toolrl.eval.evaluator import Evaluation

    config = config_of("tiny.py")
    config.eval.max_turns = 30  # a subset: samples whose turns are not scored are left out
    config.eval.response_equivalence = False
    evaluation = Evaluation(config)
    records = export_records(config, "test")
    scored = {t.sample_id for t in evaluation.tasks}
    assert [r["sample_id"] for r in records] == [s.sample_id for s in evaluation.samples if s.sample_id in scored]
    assert sum(len(r["scored_turns"]) for r in records) == len(evaluation.tasks) == 30
    for record in records:
        check_record(record)
        assert record["source"] == "eval_100.json" and record["workflow_id"] == record["sample_id"]
    assert export_records(config, "validation") == [dict(r, split="validation") for r in records]


def test_eval_sample_ids_apply_to_the_eval_source():
    config = config_of("tiny.py")
    config.eval.sample_ids = "Cross-134,Car-Rental-70"
    config.eval.response_equivalence = False
    assert [r["sample_id"] for r in export_records(config, "test")] == ["Cross-134", "Car-Rental-70"]


def test_the_split_rule():
    config = config_of("tiny.py")
    assert eval_source(config, "test") == eval_source(config, "validation") == config.eval.source
    config.data.train_file = "synthetic:train,bfcl_training"
    assert eval_source(config, "validation") == "synthetic:validation"
    assert eval_source(config, "test") == "synthetic:test"
    with pytest.raises(UserError):
        export_records(config, "dev")


def test_a_missing_synthetic_dataset_is_one_line_and_exit_2(tmp_path):
    missing = tmp_path / "no_such_tfds"
    out = tmp_path / "x.jsonl"
    result = export("--config=configs/tiny.py", "--split=validation", f"--out={out}",
                    "--config.data.train_file=synthetic:train", f"--config.data.synth_dir={missing}")
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("toolrl.data.export: error: ")
    assert "'validation'" in lines[0] and f"`{build_command(str(missing))}`" in lines[0]
    assert "python -m toolrl.synth --config=configs/synth.py" in lines[0]
    assert not missing.exists() and not out.exists()  # nothing built, nothing written


def test_the_study_data_names_its_own_build_command(tmp_path):
    home = tmp_path / "home"
    result = export("--config=configs/study.py", "--split=train", f"--out={tmp_path / 'x.jsonl'}",
                    env={"TOOLRL_HOME": str(home)})
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"toolrl.data.export: error: the synthesized split 'train' does not exist in {home / 'study' / 'tfds_natural'}; "
        "build it with `python -m experiments.study_data`"]


def test_help_documents_the_split_rule():
    result = export("--help")  # absl prints the module docstring and the flags (and exits 1)
    assert "synthetic:validation" in result.stdout and "eval.source" in result.stdout

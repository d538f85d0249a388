"""Provenance: stamped synthesized data, refused when missing or stamped for something else, never built on read."""

import subprocess
import sys

import ml_collections
import pytest

from toolrl.data.golden import load_samples
from toolrl.data.provenance import ProvenanceError, require_stamp, write_stamp
from toolrl.synth.build import make_renderer, validate_config
from toolrl.synth.query_writer import WriterChain


def _data(synth_dir, stamp="study:x"):
    return ml_collections.ConfigDict({"synth_dir": str(synth_dir), "synth_stamp": stamp,
                                      "train_file": "synthetic:train,bfcl_training"})


def _fake_dataset(root):
    version = root / "toolrl_traces" / "synthetic" / "1.0.0"
    version.mkdir(parents=True)
    (version / "dataset_info.json").write_text("{}")


def test_missing_unstamped_and_other_stamp_refused_in_one_line(tmp_path):
    with pytest.raises(ProvenanceError, match="experiments.study_data") as missing:
        require_stamp(_data(tmp_path / "none"))
    assert "\n" not in str(missing.value)
    _fake_dataset(tmp_path)
    with pytest.raises(ProvenanceError, match="no provenance stamp"):
        require_stamp(_data(tmp_path))
    write_stamp(tmp_path, "study:old", writer="steps")
    with pytest.raises(ProvenanceError, match="stamped 'study:old', not 'study:x'"):
        require_stamp(_data(tmp_path))
    write_stamp(tmp_path, "study:x", writer="real,phrasebook")
    assert require_stamp(_data(tmp_path))["writer"] == "real,phrasebook"
    assert require_stamp(_data(tmp_path, stamp="")) is None  # unchecked when the config names no stamp


def test_missing_synthetic_dataset_is_refused_not_built(tmp_path):
    target = tmp_path / "tfds"
    with pytest.raises(FileNotFoundError, match="build it with"):
        load_samples("synthetic:train", synth_dir=target)
    assert not target.exists()


def test_check_mode_refuses_unstamped_study_data(tmp_path):
    _fake_dataset(tmp_path)
    run = subprocess.run([sys.executable, "-m", "toolrl.main", "--config=configs/study.py", "--config.mode=check",
                          f"--config.data.synth_dir={tmp_path}", f"--config.workdir={tmp_path / 'work'}"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 2, run.stderr[-2000:]
    lines = [line for line in run.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1 and "python -m experiments.study_data" in lines[0]


def test_writer_settings_validated():
    from configs import synth

    config = synth.get_config()
    validate_config(config)
    assert isinstance(make_renderer(config), WriterChain)
    config.writer = "steps,phrasebook"
    with pytest.raises(ValueError, match="stands alone"):
        validate_config(config)
    config.writer = "poetry"
    with pytest.raises(ValueError, match="unknown writer"):
        validate_config(config)
    config.writer = "llm"
    with pytest.raises(ValueError, match="llm.base_url"):
        validate_config(config)

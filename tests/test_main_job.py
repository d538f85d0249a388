"""The main job (configs/grpo.py): decontaminated natural data built on first use, a pool balanced over the
domains, its own training turns evaluated beside held-out ones, and an end table that says both."""

import dataclasses
from collections import Counter
from pathlib import Path

import ml_collections
import pytest

from toolrl.data import natural
from toolrl.data.provenance import ProvenanceError, write_stamp
from toolrl.eval.selection import balanced_subset
from toolrl.rl.config import ConfigError, validate
from toolrl.rl.trainer import TrainingData, build_missing_data


@dataclasses.dataclass(frozen=True)
class _Item:
    sample_id: str
    domain: str


def test_balanced_subset_by_hand():
    items = [_Item(f"s{i}", d) for i, d in enumerate(["A"] * 50 + ["B"] * 30 + ["C"] * 2)]
    picked = balanced_subset(items, 7, seed=0)
    # round-robin A, B, C, A, B, C, A: C has only two, so A and B take the rest in turn
    assert Counter(p.domain for p in picked) == {"A": 3, "B": 2, "C": 2}
    assert [items.index(p) for p in picked] == sorted(items.index(p) for p in picked)  # source order
    assert picked == balanced_subset(items, 7, seed=0) and picked != balanced_subset(items, 7, seed=1)
    assert Counter(p.domain for p in balanced_subset(items, 10)) == {"A": 4, "B": 4, "C": 2}
    assert balanced_subset(items, 0) == items and balanced_subset(items, 100) == items


def _data(tmp_path, stamp=natural.NATURAL_STAMP):
    return ml_collections.ConfigDict({"synth_dir": str(tmp_path / "tfds"), "synth_stamp": stamp,
                                      "train_file": "synthetic:train", "data_dir": "", "build_missing": True})


def _fake_dataset(root: Path) -> None:
    version = root / "toolrl_traces" / "synthetic" / "1.0.0"
    version.mkdir(parents=True)
    (version / "dataset_info.json").write_text("{}")


def test_build_missing_builds_only_the_natural_data_and_never_overwrites_another(tmp_path, monkeypatch):
    built = []
    monkeypatch.setattr(natural, "build_natural_data", lambda synth_dir, **kw: built.append(synth_dir))
    with pytest.raises(ConfigError, match="data.synth_stamp must be"):
        build_missing_data(_data(tmp_path, stamp="mine"))
    build_missing_data(_data(tmp_path))  # nothing there: built
    assert built == [str(tmp_path / "tfds")]
    _fake_dataset(tmp_path / "tfds")
    write_stamp(tmp_path / "tfds", "someone:else")
    build_missing_data(_data(tmp_path))  # another stamp: left alone (require_stamp refuses it)
    assert len(built) == 1
    write_stamp(tmp_path / "tfds", "study:natural-v1")  # an older natural version: rebuilt
    build_missing_data(_data(tmp_path))
    assert len(built) == 2
    write_stamp(tmp_path / "tfds", natural.NATURAL_STAMP)  # current: kept
    build_missing_data(_data(tmp_path))
    assert len(built) == 2
    from toolrl.data.provenance import require_stamp

    write_stamp(tmp_path / "tfds", "someone:else")
    with pytest.raises(ProvenanceError, match="stamped 'someone:else'"):
        require_stamp(_data(tmp_path))


def test_main_config_is_decontaminated_balanced_and_evaluates_both_sets():
    from configs import grpo, study

    config = grpo.get_config()
    validate(config)
    d, e = config.data, config.eval
    assert d.decontaminate == "eval_100" and d.train_file == "synthetic:train" and d.build_missing
    assert d.synth_stamp == natural.NATURAL_STAMP and d.subset == "balanced" and d.min_fit >= 0.95
    assert e.source == "eval_100" and e.heldout == "novel" and e.subset == "stratified"
    assert e.max_turns and e.train_turns and e.every == config.sft.num_steps + config.train.num_steps
    # The study keeps its own pool and held-out set (every sample; the split is held out by construction).
    s = study.get_config()
    assert s.data.max_samples == 0 and s.eval.train_turns == 0 and s.eval.heldout == "all"


def test_training_data_samples_are_each_sample_once():
    a, b, c = (_Item(x, "A") for x in "abc")
    data = TrainingData(rl=[(a, 0), (a, 1), (c, 0)], sft=[a, b], rl_fit=None, sft_fit=None)
    assert [s.sample_id for s in data.samples()] == ["a", "b", "c"]


def test_summary_table_shows_training_and_heldout_before_and_after():
    from toolrl.main import summary_table

    info = dataclasses.make_dataclass("Info", ["evaluations", "rewards", "fit", "checkpoints", "metrics",
                                               "workdir", "wandb"])(
        [{"step": 0, "eval/turn_accuracy": 0.0, "eval/call_accuracy": 0.1, "eval/turns": 5,
          "eval_train/turn_accuracy": 0.2, "eval_train/call_accuracy": 0.3, "eval_train/turns": 5},
         {"step": 14, "eval/turn_accuracy": 0.2, "eval/call_accuracy": 0.25, "eval/turns": 5,
          "eval_train/turn_accuracy": 0.8, "eval_train/call_accuracy": 0.9, "eval_train/turns": 5}],
        [0.1, 0.2, 0.3], None, "c", "m", Path("w"), "off")
    table = summary_table(info, 3.0)
    assert "| turn accuracy, its own training tasks (5 turns) | 20.0% (1/5, step 0) | 80.0% (4/5, step 14) |" in table
    assert "| turn accuracy, held-out (5 turns) | 0.0% (0/5, step 0) | 20.0% (1/5, step 14) |" in table
    assert table.index("own training") < table.index("held-out")


def _record():
    evaluations = [{"step": 0, "eval/turn_accuracy": 0.0, "eval/turns": 5, "eval_train/turn_accuracy": 0.2,
                    "eval_train/turns": 5},
                   {"step": 14, "eval/turn_accuracy": 0.2, "eval/turns": 5, "eval_train/turn_accuracy": 0.8,
                    "eval_train/turns": 5}]
    return {"command": "python -m toolrl.main --config=configs/grpo.py", "wall_minutes": 11.5, "peak_rss_gib": 7.9,
            "cpus": 2, "load_before": 0.1,
            "summary": {"final_step": 14, "sft_steps": 10, "grpo_steps": 4, "minutes": 11.4,
                        "evaluations": evaluations, "rewards": [0.1, 0.2, 0.3, 0.5],
                        "fit": {"what": "episodes", "fit": 5, "total": 5, "share": 1.0}}}


def test_main_job_block_is_rendered_from_the_record_only():
    from experiments.main_job import readme_block

    block = readme_block(_record())
    assert "11.5 min wall on 2 CPU cores" in block and "peak memory 7.9 GiB" in block
    assert "| turn accuracy, its own training tasks | 1/5 (step 0) | 4/5 (step 14) |" in block
    assert "| turn accuracy, held-out eval_100 turns (novel, one per domain) | 0/5 (step 0) | 1/5 (step 14) |" in block
    assert "| mean GRPO reward (first / last 1 steps) | 0.100 | 0.500 |" in block



def test_readme_main_job_block_equals_the_committed_record():
    import json

    from experiments.main_job import README_END, README_START, RESULT, readme_block

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    record = json.loads(RESULT.read_text())
    start, end = readme.index(README_START) + len(README_START), readme.index(README_END)
    assert readme[start:end] == "\n" + readme_block(record)

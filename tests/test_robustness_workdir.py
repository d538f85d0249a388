"""Workdir safety: one live run per workdir, and a workdir's results never mix two configurations."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import ml_collections
import pytest

from toolrl.rl.workdir import WorkdirError, fingerprint_fields, load_run_config, open_workdir

REPO = Path(__file__).resolve().parents[1]


def small_config(**overrides) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict({
        "mode": "grpo", "seed": 0, "workdir": "w", "distributed": False,
        "model": {"preset": "tiny", "path": "", "dtype": "float32", "init_checkpoint": ""},
        "mesh": {"data": 1, "fsdp": -1, "tensor": 1},
        "data": {"train_file": "x.json", "max_samples": 0},
        "rollout": {"group_size": 4, "temperature": 1.0},
        "reward": {"family": "episode", "mode": "graduated"},
        "grpo": {"beta": 0.0}, "optim": {"learning_rate": 2e-6}, "sft": {"num_steps": 2},
        "train": {"num_steps": 4, "save_every": 2, "keep": 2, "log_every": 1, "progress": True},
        "wandb": {"mode": "offline"}, "eval": {},
    })
    for dotted, value in overrides.items():
        node = c
        *parents, last = dotted.split(".")
        for name in parents:
            node = node[name]
        node[last] = value
    return c


def test_fingerprint_fields_cover_results_not_bookkeeping():
    from toolrl.rl.config import base_config

    fields = fingerprint_fields(base_config())
    for name in ("model.preset", "model.path", "model.dtype", "model.init_checkpoint", "data.train_file",
                 "reward.family", "rollout.group_size", "grpo.beta", "optim.learning_rate", "sft.num_steps",
                 "train.num_steps", "seed", "mode"):
        assert name in fields, name
    for name in fields:
        assert not name.startswith(("wandb.", "eval.", "mesh.", "train.save_every", "train.keep",
                                    "train.log_every", "train.progress")), name
        assert name not in ("workdir", "distributed")
    partial = ml_collections.ConfigDict({"seed": 3, "model": {"preset": "tiny"}})
    assert fingerprint_fields(partial) == {"model.preset": "tiny", "seed": 3}  # absent sections skipped


def test_writes_config_and_fingerprint_and_reads_it_back(tmp_path):
    config = small_config()
    with open_workdir(tmp_path / "run", config) as workdir:
        assert workdir.path == tmp_path / "run"
        assert workdir.config_path == tmp_path / "run" / "config.json"
        lock = json.loads((tmp_path / "run" / ".lock").read_text())
        assert lock["pid"] == os.getpid() and lock["host"] and lock["started"]
    fingerprint = json.loads((tmp_path / "run" / "fingerprint.json").read_text())
    assert fingerprint["rollout.group_size"] == 4
    loaded = load_run_config(tmp_path / "run")
    assert loaded.rollout.group_size == 4 and loaded.wandb.mode == "offline"
    assert not list((tmp_path / "run").glob("*.tmp"))


def test_load_run_config_of_a_directory_that_is_not_a_run(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"config\.json.*not a toolrl run directory"):
        load_run_config(tmp_path)


def test_changed_settings_are_refused_with_one_line_naming_each_field(tmp_path):
    open_workdir(tmp_path, small_config()).close()
    changed = small_config(**{"rollout.group_size": 8, "seed": 1, "train.save_every": 7, "wandb.mode": "online"})
    with pytest.raises(WorkdirError) as info:
        open_workdir(tmp_path, changed)
    message = str(info.value)
    assert "\n" not in message
    assert "rollout.group_size 4 -> 8" in message and "seed 0 -> 1" in message
    assert "save_every" not in message and "wandb" not in message  # bookkeeping may change freely
    assert "use a new --config.workdir" in message and "--config.train.allow_config_change=True" in message
    assert load_run_config(tmp_path).rollout.group_size == 4  # the refused config was not written
    # The lock was released by the failed open: the unchanged config opens fine.
    open_workdir(tmp_path, small_config(**{"train.save_every": 7})).close()


def test_allow_changes_warns_and_continues(tmp_path):
    open_workdir(tmp_path, small_config()).close()
    with pytest.warns(UserWarning, match=r"rollout.group_size 4 -> 8"):
        open_workdir(tmp_path, small_config(**{"rollout.group_size": 8}), allow_changes=True).close()
    assert load_run_config(tmp_path).rollout.group_size == 8
    assert list(tmp_path.glob("config.prev-*.json"))  # the previous settings are kept, not lost


def test_second_open_in_use_fails_at_once(tmp_path):
    first = open_workdir(tmp_path, small_config())
    try:
        with pytest.raises(WorkdirError, match=rf"in use by pid {os.getpid()}.*use another --config.workdir"):
            open_workdir(tmp_path, small_config())
    finally:
        first.close()
    open_workdir(tmp_path, small_config()).close()


def test_lock_held_by_another_process_and_stale_lock(tmp_path):
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(REPO)!r})
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_robustness_workdir import small_config
        from toolrl.rl.workdir import open_workdir
        w = open_workdir({str(tmp_path)!r}, small_config())
        print("locked", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(WorkdirError, match=rf"in use by pid {proc.pid} "):
            open_workdir(tmp_path, small_config())
    finally:
        proc.kill()
        proc.wait()
    # The dead process's lock file is still there, but its flock died with it: the lock is taken over.
    assert json.loads((tmp_path / ".lock").read_text())["pid"] == proc.pid
    with open_workdir(tmp_path, small_config()):
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()


def test_a_run_saved_before_a_rename_or_a_new_field_resumes_unchanged():
    from toolrl.rl.config import base_config
    from toolrl.rl.workdir import fingerprint_changes, fingerprint_fields

    new = base_config()
    new.rollout.game = "turn"
    new.reward.family = "turn"
    saved = fingerprint_fields(new)
    # as written before rollout.game and data.subset existed: the game under its old name
    saved.pop("rollout.game"), saved.pop("data.subset")
    saved["rollout.mode"] = "turn"
    assert fingerprint_changes(saved, fingerprint_fields(new)) == {}
    new.data.subset = "balanced"  # a new field away from its default is a change
    assert fingerprint_changes(saved, fingerprint_fields(new)) == {"data.subset": ("(absent)", "balanced")}
    new.data.subset = "first"
    new.rollout.game = "episode"  # so is another game
    assert "rollout.game" in fingerprint_changes(saved, fingerprint_fields(new))


def test_building_missing_data_is_not_a_setting_of_the_run():
    """data.build_missing only builds stamped data that is absent: a run saved before the field existed (or
    with it off) resumes with it on, as the study's SFT start (saved before it) must."""
    from toolrl.rl.config import base_config
    from toolrl.rl.workdir import fingerprint_changes, fingerprint_fields

    config = base_config()
    saved = fingerprint_fields(config)
    assert "data.build_missing" not in saved
    config.data.build_missing = not config.data.build_missing
    assert fingerprint_changes(saved, fingerprint_fields(config)) == {}

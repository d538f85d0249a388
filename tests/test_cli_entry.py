"""The one entry point, ``toolrl SUBCOMMAND`` (here as ``python -m toolrl``, what the console script runs)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from toolrl.__main__ import COMMANDS, config_file_of, field_comments, show_config

ROOT = Path(__file__).resolve().parents[1]


def _toolrl(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, "-m", "toolrl", *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=timeout, stdin=subprocess.DEVNULL)


def test_help_lists_every_subcommand():
    result = _toolrl("--help")
    assert result.returncode == 0
    for name in ("train", "check", "plan", "eval", "score", "synth", "cache", "graph", "data", "export", "chat",
                 "config"):
        assert f"\n  {name} " in result.stdout
    assert set(COMMANDS) == {"train", "check", "plan", "eval", "score", "synth", "cache", "graph", "data",
                             "export", "chat", "config"}


@pytest.mark.parametrize("args", [
    ("train", "--config=configs/no_such.py"),
    ("check", "--config", "configs/no_such.py:atomic"),
    ("eval", "some_run", "--config=configs/no_such.py"),
    ("config", "--show", "configs/no_such.py"),
    ("plan", "--config=configs/no_such.py"),
    ("frobnicate",),
    ("data", "frobnicate"),
    ("check", "--config=configs/tiny.py", "--config.mode=eval"),
])
def test_a_users_mistake_is_one_line_and_exit_2(args, monkeypatch, capsys):
    # In process: each of these is refused before any job module (and its absl flags) is imported.
    from toolrl.__main__ import main

    monkeypatch.setattr(sys, "argv", ["toolrl", *args])
    with pytest.raises(SystemExit) as exit_:
        main()
    stderr = capsys.readouterr().err
    assert exit_.value.code == 2, stderr
    assert len(stderr.strip().splitlines()) == 1 and stderr.startswith("toolrl") and ": error: " in stderr


@pytest.mark.parametrize("args", [("train", "--config.rollout.group_size=1"),
                                  ("eval", "some_run", "--config.rollout.group_size=1")])
def test_overrides_reach_the_main_job_with_or_without_a_config_flag(args):
    # The override is registered and validated (group_size >= 2) before any model loads.
    result = _toolrl(*args)
    assert result.returncode == 2 and "rollout.group_size=1 must be >= 2" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_subcommands_reach_their_modules():
    # Each module's own parser answers --help: the arguments got through.
    score = _toolrl("score", "--help")
    assert score.returncode == 0 and "--predictions" in score.stdout
    cache = _toolrl("cache", "info", "/nonexistent/cache.sqlite")
    assert cache.returncode == 2 and "toolrl cache: error:" in cache.stderr


def test_config_show_prints_every_field_with_its_comment():
    result = _toolrl("config", "--show", "configs/tiny.py")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    by_field = {line.split(" = ")[0]: line for line in lines[1:]}
    assert "rollout.max_seq_len" in by_field and "model.preset" in by_field
    assert "(default 512)" in by_field["rollout.max_seq_len"] and "# Whole trajectory" in by_field["rollout.max_seq_len"]
    assert by_field["model.preset"].startswith("model.preset = 'tiny'  (default 'smollm2_135m')  # ")


def test_variants_show_their_own_values():
    text = show_config("configs/grpo.py:atomic")
    assert "reward.mode = 'atomic'" in text


def test_field_comments_take_the_block_above_and_the_trailing_comment():
    source = ("def f():\n    c = X()\n    # First line\n    # second line.\n    c.a.b = 1  # trailing\n"
              "    c.z = 'x # not a comment'\n\n    # detached\n\n    c.y = 2\n")
    comments = field_comments(source)
    assert comments == {"a.b": "First line second line. trailing"}


def test_config_file_of():
    assert config_file_of(["--config=configs/grpo.py:atomic", "--x"]) == "configs/grpo.py"
    assert config_file_of(["--config", "a.py"]) == "a.py"
    assert config_file_of(["--config.mode=check"]) is None

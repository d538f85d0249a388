"""A tiny run killed with SIGKILL resumes from its last checkpoint: same steps, same data, no lost or
duplicated metrics records."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ARGS = ["--config=configs/tiny.py", "--config.sft.num_steps=2", "--config.train.num_steps=4",
        "--config.train.save_every=2"]


def _cmd(workdir: Path, compile_flags: list[str]) -> list[str]:
    # The session's compilation cache: the three runs compile the same programs.
    return [sys.executable, "-m", "toolrl.main", *ARGS, *compile_flags, f"--config.workdir={workdir}"]


def _env() -> dict[str, str]:
    env = dict(os.environ, JAX_PLATFORMS="cpu", WANDB_MODE="offline", WANDB_SILENT="true")
    env.pop("XLA_FLAGS", None)
    return env


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_sigkill_then_resume(tmp_path, compile_flags):
    killed = tmp_path / "killed"
    metrics = killed / "metrics.jsonl"
    # Its own session: the kill takes the run's helper processes (the W&B service) with it, as a job
    # scheduler's would.
    command = _cmd(killed, compile_flags)
    proc = subprocess.Popen(command, cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline = time.time() + 240
    # Kill as soon as step 5 is logged: the last checkpoint is step 4, so record 5 must be dropped.
    while time.time() < deadline:
        if metrics.exists() and any(r["step"] >= 5 for r in _records(metrics)):
            break
        if proc.poll() is not None:
            pytest.fail(f"run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("run did not reach step 5 in time")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _records(metrics)
    assert max(r["step"] for r in before) >= 5

    resumed = subprocess.run(command, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = _records(metrics)
    assert [r["step"] for r in after] == [1, 2, 3, 4, 5, 6]  # each step exactly once
    # Nothing already written (and checkpointed) was lost or rewritten.
    assert after[:4] == [r for r in before if r["step"] <= 4]

    straight = tmp_path / "straight"
    ref = subprocess.run(_cmd(straight, compile_flags), cwd=REPO, env=_env(), capture_output=True, text=True,
                         timeout=300)
    assert ref.returncode == 0, ref.stderr[-3000:]
    expected = _records(straight / "metrics.jsonl")
    # Same data order, and the resumed steps reproduce the uninterrupted run (RNG, params, optimizer).
    assert [r["data/tasks"] for r in after] == [r["data/tasks"] for r in expected]
    for record in (r for r in expected if r.get("phase") == "grpo"):
        groups = [float(x) for x in record["data/group_rewards"].split(",")]
        assert len(groups) == len(record["data/tasks"].split(","))
        # Equal-sized groups: the step mean is the mean of the group means (to their 4 printed digits).
        assert sum(groups) / len(groups) == pytest.approx(record["reward/mean"], abs=1e-4)
    for got, want in zip(after[4:], expected[4:]):
        assert got["reward/mean"] == pytest.approx(want["reward/mean"], abs=1e-6)
        assert got["rollout/generated_tokens"] == want["rollout/generated_tokens"]
        assert got["grpo/loss"] == pytest.approx(want["grpo/loss"], rel=1e-4, abs=1e-6)

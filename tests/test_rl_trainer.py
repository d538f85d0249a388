"""The trainer on the tiny model: updates without signal are skipped, a run restores with its own
model and settings, `--config.mode=eval` and `--config.mode=check` use them, bucketed widths."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx

from toolrl.rewards.registry import RewardOutput
from toolrl.rl.config import config_from_file, validate

REPO = Path(__file__).resolve().parents[1]


def _tiny(workdir: Path, xla_cache: Path, **fields):
    """configs/tiny.py in `workdir`, the session's compilation cache, the `fields` (section__key=value)."""
    config = config_from_file(REPO / "configs" / "tiny.py")
    config.workdir = str(workdir)
    config.wandb.mode = "disabled"
    config.compile.cache_dir, config.compile.min_compile_time_secs = str(xla_cache), 0.0
    config.data.tool_view = "signature"
    for dotted, value in fields.items():
        if "__" in dotted:
            section, key = dotted.split("__")
            config[section][key] = value
        else:
            config[dotted] = value
    validate(config)
    return config


def _constant_reward(batch) -> RewardOutput:
    n = len(batch.rows)
    return RewardOutput(np.full(n, 0.5, np.float32), {}, np.zeros((n, 1), np.int32), np.zeros(n, np.int32))


def test_update_without_signal_is_skipped(tmp_path, xla_cache):
    """Every group degenerate: no update runs (AdamW would still move the weights on momentum)."""
    from toolrl.main import train
    from toolrl.policy.runtime import Policy
    from toolrl.rl.metrics import read_metrics

    config = _tiny(tmp_path / "run", xla_cache, sft__num_steps=1, train__num_steps=2, train__save_every=1,
                   train__keep=5)
    info = train(config, reward_fn=_constant_reward)
    records = read_metrics(info.metrics)
    grpo = [r for r in records if r["phase"] == "grpo"]
    assert [r["grpo/skipped_update"] for r in grpo] == [1, 1]
    assert all(r["grpo/degenerate_fraction"] == 1.0 and r["grpo/live_rows"] == 0 for r in grpo)
    after_sft, _ = Policy.from_run(tmp_path / "run", step=1)
    final, run_config = Policy.from_run(tmp_path / "run")
    same = jax.tree.map(lambda a, b: bool(np.array_equal(a, b)), nnx.state(after_sft.model, nnx.Param),
                        nnx.state(final.model, nnx.Param))
    assert all(jax.tree.leaves(same))
    assert run_config.data.tool_view == "signature"  # the run's own settings come back with it


def test_a_run_restores_with_its_own_model_and_settings(tmp_path, xla_cache):
    from toolrl.main import train
    from toolrl.policy.runtime import Policy

    config = _tiny(tmp_path / "sft", xla_cache, mode="sft", sft__num_steps=2, train__num_steps=0,
                   model__dtype="bfloat16")
    train(config)
    policy, run_config = Policy.from_run(tmp_path / "sft")
    assert run_config.model.dtype == "bfloat16" and policy.model_config.dtype == "bfloat16"
    assert run_config.sft.num_steps == 2 and policy.chat.end_id == 2
    # The trained weights, not a fresh initialisation.
    fresh = Policy.load(preset="tiny", dtype="bfloat16", seed=int(run_config.seed))
    leaves = zip(jax.tree.leaves(nnx.state(policy.model, nnx.Param)), jax.tree.leaves(nnx.state(fresh.model, nnx.Param)))
    assert any(not np.array_equal(a, b) for a, b in leaves)


def _main(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "toolrl.main", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**__import__("os").environ, "WANDB_MODE": "disabled"})


def test_mode_check_prints_the_fit_line_and_a_bad_budget_is_one_line(tmp_path, compile_flags):
    ok = _main("--config=configs/tiny.py", "--config.mode=check")
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert ok.stdout.strip().splitlines()[-1] == "fit: 2/4 tasks (50%)"  # 2 need an id the view cuts
    # Refused after the model's initialisation (from the session's compilation cache).
    bad = _main("--config=configs/tiny.py", "--config.rollout.max_new_tokens=32", f"--config.workdir={tmp_path / 'x'}",
                *compile_flags)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1].startswith("toolrl.main: error: only 0/4 episodes")
    assert "rollout.max_new_tokens" in bad.stderr and "Traceback" not in bad.stderr


def test_mode_eval_evaluates_a_run_with_its_own_settings(tmp_path, xla_cache):
    from toolrl.main import train

    run = tmp_path / "run"
    # The run to evaluate, trained in-process (the command line under test is the evaluation's).
    train(_tiny(run, xla_cache, mode="sft", sft__num_steps=1, train__num_steps=0, data__tool_view="signature"))
    cache = tmp_path / "shared_cache"  # e.g. one for every run of a study
    evaluated = _main("--config=configs/tiny.py", "--config.mode=eval", f"--config.eval.checkpoint={run}",
                      "--config.eval.source=bfcl_training", "--config.eval.max_turns=2",
                      "--config.eval.max_new_tokens=16", f"--config.compile.cache_dir={cache}",
                      "--config.compile.min_compile_time_secs=0")
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    results = json.loads((run / "eval" / "eval_results.json").read_text())
    assert results["settings"]["tool_view"] == "signature"  # the run's view, not this command's default
    assert results["settings"]["turns"] == 2
    assert any(cache.iterdir())  # the evaluation's programs, for the next one


def test_update_widths_are_bucketed():
    from toolrl.rl.trainer import bucket, row_buckets

    widths = [bucket(n, 64) for n in range(1, 2049)]
    assert sorted(set(widths)) == [64, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048]
    assert all(n <= w <= max(128, 1.5 * n) for n, w in zip(range(1, 2049), widths))
    assert row_buckets(8, 4) == [4, 8] and row_buckets(32, 1) == [4, 8, 16, 32]


def test_unknown_config_field_is_one_line():
    bad = _main("--config=configs/tiny.py", "--config.nosuchfield=1", "--config.mode=check")
    assert bad.returncode == 2
    assert "unknown config field" in bad.stderr and "nosuchfield" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize("at_start", [True, False])
def test_evaluation_during_training_and_at_start(tmp_path, xla_cache, at_start):
    """eval.every=1 evaluates after each step, and at step 0 unless eval.at_start=False (a study's GRPO
    runs: their start is the SFT run's checkpoint, already evaluated)."""
    from toolrl.main import train
    from toolrl.rl.metrics import read_metrics

    config = _tiny(tmp_path / "run", xla_cache, sft__num_steps=0, train__num_steps=2, eval__every=1,
                   eval__at_start=at_start, eval__source="bfcl_training", eval__max_turns=1, eval__max_new_tokens=8)
    info = train(config)
    steps = [r["step"] for r in read_metrics(info.metrics) if "eval/turn_accuracy" in r]
    assert steps == ([0, 1, 2] if at_start else [1, 2])
    assert [e["step"] for e in info.evaluations] == steps


def test_an_evaluation_lost_to_a_stop_is_redone_on_resume(tmp_path, xla_cache, monkeypatch):
    """A stop during the last evaluation (a second signal abandons it) saves the step before it; the resumed
    run evaluates that step before anything else, once: the study's end-of-run test evaluation is not lost."""
    from toolrl.main import train
    from toolrl.rl.guards import Abandon, TrainingInterrupted
    from toolrl.rl.metrics import read_metrics
    from toolrl.rl.trainer import Trainer

    config = _tiny(tmp_path / "run", xla_cache, sft__num_steps=0, train__num_steps=2, eval__every=2,
                   eval__at_start=False, eval__source="bfcl_training", eval__max_turns=1, eval__max_new_tokens=8)
    evaluate = Trainer.evaluate

    def stopped(self):
        raise Abandon()  # what the signal handler raises on a second SIGTERM during the evaluation

    monkeypatch.setattr(Trainer, "evaluate", stopped)
    with pytest.raises(TrainingInterrupted):
        train(config)
    assert not [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if "eval/turn_accuracy" in r]
    monkeypatch.setattr(Trainer, "evaluate", evaluate)
    info = train(config)
    evaluated = [r["step"] for r in read_metrics(info.metrics) if "eval/turn_accuracy" in r]
    assert evaluated == [2] and [e["step"] for e in info.evaluations] == [2]
    assert (tmp_path / "run" / "eval" / "step_000002.json").is_file()
    train(config)  # finished and evaluated: nothing is redone
    assert [r["step"] for r in read_metrics(info.metrics) if "eval/turn_accuracy" in r] == [2]

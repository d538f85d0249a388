"""W&B outside a plain training run: eval mode's record (metrics and a completions table) and a
training run inside `wandb agent` (the agent's run, one workdir per sweep run, phases in order).
Everything offline (WANDB_MODE=offline): what W&B would upload is read back from its offline files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ml_collections import ConfigDict

from toolrl.eval.protocol import TurnResult
from toolrl.eval.report import EvalReport
from toolrl.rl.metrics import (WandbRun, eval_completion_rows, eval_scalars, log_evaluation, sweep_run_id,
                               sweep_workdir)
from wandb_offline import read_offline_runs, table_rows

REPO = Path(__file__).resolve().parents[1]
SWEEP_ENV = {"WANDB_SWEEP_ID": "sw33p", "WANDB_RUN_ID": "agentrun1", "WANDB_PROJECT": "toolrl-test"}


@pytest.fixture(autouse=True)
def offline_wandb(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_dir"))
    for name in ("WANDB_SWEEP_ID", "WANDB_RUN_ID", "WANDB_SWEEP_PARAM_PATH"):
        monkeypatch.delenv(name, raising=False)


def _turn(sample: str, turn: int, complete: bool, correct: bool, required: int, right: int,
          texts: list[str]) -> TurnResult:
    return TurnResult(sample_id=sample, domain="Hotels", turn=turn, complete=complete, correct=correct,
                      required=required, required_correct=right, optional=0, optional_matched=0, predicted=[],
                      format_errors=0, errors=[], rounds=len(texts), texts=texts)


def _report() -> EvalReport:
    """s1: two complete turns (2/2 calls right; 0/1 wrong); s2: one incomplete turn (right)."""
    return EvalReport.from_results([
        _turn("s1", 1, True, True, 2, 2, ["call a"]),
        _turn("s1", 2, True, False, 1, 0, ["call b", "call c"]),
        _turn("s2", 1, False, True, 1, 1, ["call d"]),
    ])


def _wandb_config(**fields) -> ConfigDict:
    config = ConfigDict({"wandb": {"project": "toolrl-test", "entity": "", "mode": "auto", "run_name": ""},
                         "seed": 0})
    config.update(fields)
    return config


def test_eval_scalars_and_rows_are_the_trainers_names_hand_counted():
    # The complete bucket: turns 1/2, calls 2/3, samples 0/1 (s1 has a wrong turn; s2 is incomplete).
    assert eval_scalars(_report()) == {"eval/turn_accuracy": 0.5, "eval/call_accuracy": 2 / 3,
                                       "eval/success_rate": 0.0, "eval/turns": 2}
    assert set(eval_scalars(_report(), "eval_train")) == {"eval_train/turn_accuracy", "eval_train/call_accuracy",
                                                          "eval_train/success_rate", "eval_train/turns"}
    assert eval_completion_rows(_report()) == [("s1@1", 1.0, "call a"), ("s1@2", 0.0, "call b\ncall c"),
                                               ("s2@1", 1.0, "call d")]


def test_log_evaluation_writes_metrics_and_the_completions_table(tmp_path):
    where = log_evaluation(_report(), _wandb_config(), tmp_path / "run" / "eval", step=7)
    assert "offline" in where
    (run,) = read_offline_runs(tmp_path / "run" / "eval")
    assert run.job_type == "eval", run
    (entry,) = run.history
    assert entry["_step"] == 7 and entry["phase"] == "eval"
    assert entry["eval/turn_accuracy"] == 0.5 and entry["eval/turns"] == 2
    assert entry["eval/call_accuracy"] == pytest.approx(2 / 3)
    rows = table_rows(run, entry, "table/completions")
    assert rows == [["s1@1", 1.0, "call a"], ["s1@2", 0.0, "call b\ncall c"], ["s2@1", 1.0, "call d"]]
    assert not (tmp_path / "run" / "eval" / "wandb_id").exists()  # an evaluation never resumes a run


def test_log_evaluation_disabled_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert log_evaluation(_report(), _wandb_config(), tmp_path / "eval") == "disabled"
    assert not (tmp_path / "eval").exists()


def test_eval_mode_logs_the_evaluation_of_a_run(tmp_path, monkeypatch, xla_cache):
    """`--config.mode=eval` of a trained run: the W&B record holds the numbers eval_results.json holds,
    at the checkpoint's step, though the run itself trained with W&B disabled (this command decides)."""
    from toolrl.main import evaluate, train
    from toolrl.rl.config import config_from_file, validate

    config = config_from_file(REPO / "configs" / "tiny.py")
    config.workdir = str(tmp_path / "run")
    config.compile.cache_dir, config.compile.min_compile_time_secs = str(xla_cache), 0.0  # the session's
    config.mode, config.sft.num_steps, config.train.num_steps = "sft", 1, 0
    config.wandb.mode = "disabled"
    validate(config)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    train(config)
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert read_offline_runs(tmp_path / "run") == []

    config.mode, config.wandb.mode = "eval", "offline"
    config.eval.checkpoint = str(tmp_path / "run")
    config.eval.source, config.eval.max_turns, config.eval.max_new_tokens = "bfcl_training", 2, 16
    evaluate(config)
    results = json.loads((tmp_path / "run" / "eval" / "eval_results.json").read_text())
    (run,) = read_offline_runs(tmp_path / "run" / "eval")
    (entry,) = run.history
    assert entry["_step"] == 1  # the SFT checkpoint
    complete = results["metrics"]["complete"]["overall"]
    assert entry["eval/turns"] == complete["turns"] == 2
    assert entry["eval/turn_accuracy"] == complete["turn_accuracy"]
    rows = table_rows(run, entry, "table/completions")
    assert [r[0] for r in rows] == [f"{t['sample_id']}@{t['turn']}" for t in results["turns"]]
    assert [r[2] for r in rows] == ["\n".join(t["texts"]) for t in results["turns"]]


# ---------------------------------------------------------------------------------------------- sweeps


def test_sweep_workdir_is_per_sweep_run(monkeypatch):
    assert sweep_run_id() is None and sweep_workdir("runs/grpo") == "runs/grpo"
    monkeypatch.setenv("WANDB_RUN_ID", "agentrun1")  # a run id alone (a resumed run) is no sweep
    assert sweep_run_id() is None and sweep_workdir("runs/grpo") == "runs/grpo"
    monkeypatch.setenv("WANDB_SWEEP_ID", "sw33p")
    assert sweep_run_id() == "agentrun1"
    assert sweep_workdir("runs/grpo") == sweep_workdir("runs/grpo/") == "runs/grpo-agentrun1"
    assert sweep_workdir("runs/grpo-agentrun1") == "runs/grpo-agentrun1"  # the agent's restart: the same one
    monkeypatch.setenv("WANDB_RUN_ID", "agentrun2")
    assert sweep_workdir("runs/grpo") == "runs/grpo-agentrun2"  # another agent's run: another workdir


def test_inside_a_sweep_the_agents_run_is_used_not_our_own_id(tmp_path, monkeypatch):
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "wandb_id").write_text("ourown1")  # a plain run's id: a sweep run must not resume it
    for name, value in SWEEP_ENV.items():
        monkeypatch.setenv(name, value)
    run = WandbRun(workdir, {"seed": 3}, "toolrl-test", name="x")
    run.log(1, {"loss": 1.5}, phase="sft")
    run.finish()
    assert (workdir / "wandb_id").read_text() == "ourown1"
    (offline,) = read_offline_runs(workdir)
    assert offline.run_id == "agentrun1"
    assert offline.history[0]["loss"] == 1.5 and offline.history[0]["phase"] == "sft"


def test_a_run_the_agent_function_started_is_logged_to_and_left_open(tmp_path, monkeypatch):
    """wandb.agent(function=f): f may call wandb.init itself; our logs go to that run, which f finishes."""
    import wandb

    for name, value in SWEEP_ENV.items():
        monkeypatch.setenv(name, value)
    outer = wandb.init(project="toolrl-test", dir=str(tmp_path), settings=wandb.Settings(x_disable_stats=True))
    try:
        run = WandbRun(tmp_path / "work", {"seed": 3}, "toolrl-test")
        assert run.run is outer
        run.log(2, {"loss": 0.5}, phase="grpo")
        run.finish()
        assert wandb.run is outer  # not finished by us
        assert outer.config["seed"] == 3
    finally:
        outer.finish()
    (offline,) = read_offline_runs(tmp_path)
    assert offline.run_id == "agentrun1" and offline.history[0]["phase"] == "grpo"


@pytest.mark.slow
def test_a_sweep_run_trains_sft_then_grpo_into_the_agents_run(tmp_path):
    """What `wandb agent` starts for one cell of experiments/sweep.yaml, on the tiny config: one process,
    the agent's run, the SFT then the GRPO steps in order with their phase, a workdir of its own."""
    params = tmp_path / "sweep-params.yaml"
    params.write_text("config.seed:\n  value: 1\n")
    env = {**os.environ, **SWEEP_ENV, "WANDB_SWEEP_PARAM_PATH": str(params), "WANDB_MODE": "offline",
           "WANDB_SILENT": "true", "JAX_PLATFORMS": "cpu"}
    workdir = tmp_path / "grpo"
    result = subprocess.run(
        [sys.executable, "-m", "toolrl.main", "--config=configs/tiny.py", "--config.seed=1", "--config.mode=grpo",
         f"--config.workdir={workdir}", "--config.sft.num_steps=1", "--config.train.num_steps=1",
         "--config.wandb.mode=auto"],
        cwd=REPO, capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not workdir.exists()
    run_dir = tmp_path / "grpo-agentrun1"
    assert (run_dir / "config.json").is_file() and not (run_dir / "wandb_id").exists()
    (offline,) = read_offline_runs(run_dir)
    assert offline.run_id == "agentrun1"
    steps = [(h["_step"], h.get("phase")) for h in offline.history]
    assert steps == [(1, "sft"), (2, "grpo")]
    assert "sft/nll" in offline.history[0] and "reward/mean" in offline.history[1]


def _parsed(argv: list[str]):
    """The config `toolrl.main` builds from `argv` (its own flag definition, a fresh flag registry)."""
    from absl import flags
    from ml_collections import config_flags

    registry = flags.FlagValues()
    argv = ["toolrl.main", *argv]
    holder = config_flags.DEFINE_config_file("config", "configs/grpo.py", "", flag_values=registry, sys_argv=argv)
    registry(argv)
    return holder.value


def test_every_cell_of_the_sweep_is_a_valid_grpo_run_of_its_arm_and_seed(monkeypatch):
    """experiments/sweep.yaml's command with the agent's ${args} for each grid cell: SFT then GRPO in one
    process, the arm's reward mode, the cell's seed, and the sweep's metric among what the run logs."""
    import itertools

    import yaml

    from toolrl.rl.config import validate

    monkeypatch.chdir(REPO)
    sweep = yaml.safe_load((REPO / "experiments" / "sweep.yaml").read_text())
    command = sweep["command"]
    assert command[:5] == ["${env}", "${interpreter}", "-m", "toolrl.main", "--config=configs/grpo.py:paper"]
    assert command.count("${args}") == 1
    assert sweep["metric"]["name"] == "eval/turn_accuracy"  # the trainer's name (eval_scalars)
    params = sweep["parameters"]
    cells = list(itertools.product(params["config.reward.mode"]["values"], params["config.seed"]["values"]))
    assert len(cells) == 20
    for mode, seed in cells:
        args = [f"--config.reward.mode={mode}", f"--config.seed={seed}"]
        for order in (args, args[::-1]):  # whichever order the agent writes them in
            config = _parsed([a for part in command[4:] for a in (order if part == "${args}" else [part])])
            validate(config)
            assert config.mode == "grpo" and config.sft.num_steps > 0 and config.train.num_steps > 0
            assert config.seed == seed and config.reward.family == "paper" and config.reward.mode == mode
            assert config.eval.every > 0 and config.wandb.mode == "auto"
        monkeypatch.setenv("WANDB_SWEEP_ID", "sw33p")
        monkeypatch.setenv("WANDB_RUN_ID", f"cell{seed}")
        assert sweep_workdir(config.workdir) == f"artifacts/runs/grpo_paper-cell{seed}"

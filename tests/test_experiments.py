"""The ablation sweep's bookkeeping: resume / skip with fake commands, aggregation with hand-computed CIs."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

from experiments import sweep

# A fake job: appends its run name to a ledger; as the eval step it writes an eval.json whose turn
# accuracy is seed / 10. FAIL_ON names a "<run>:<step>" that exits 1 instead.
FAKE_JOB = r"""
import json, os, sys
from pathlib import Path
run_dir, step, name, seed = Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
with open(run_dir.parent.parent / "ledger.txt" if "/" in name else run_dir.parent / "ledger.txt", "a") as f:
    f.write(f"{name}:{step}\n")
if os.environ.get("FAIL_ON") == f"{name}:{step}":
    sys.exit(1)
if step == "train":
    (run_dir / "work").mkdir(parents=True, exist_ok=True)
    with open(run_dir / "work" / "metrics.jsonl", "w") as f:
        for s, r in enumerate([0.1, 0.3, 0.5, 0.7], start=1):
            f.write(json.dumps({"step": s, "phase": "grpo", "reward/mean": r, "time/step_s": 2.0}) + "\n")
if step == "eval":
    overall = {"turns": 10, "turn_accuracy": seed / 10, "call_accuracy": 0.5, "success_rate": 0.0,
               "errors": {"wrong_value": seed, "stopped_early": 1}}
    (run_dir / "eval.json").write_text(json.dumps({"splits": {"eval_100": {"overall": overall}}}))
"""


@pytest.fixture
def fake_commands(tmp_path):
    script = tmp_path / "fake_job.py"
    script.write_text(FAKE_JOB)

    def commands(spec, settings):
        run_dir = spec.directory(settings.sweep_dir)
        steps = ["eval"] if spec.kind == "zero_shot" else ["train", "eval"]
        return [(s, [sys.executable, str(script), str(run_dir), s, spec.name, str(spec.seed)]) for s in steps]

    return commands


def _settings(tmp_path, **kw):
    kw = {"modes": ("binary", "graduated"), "seeds": (0, 1)} | kw
    return sweep.SweepSettings(sweep_dir=str(tmp_path / "sweep"), **kw)


def _ledger(tmp_path) -> list[str]:
    path = tmp_path / "sweep" / "ledger.txt"
    return path.read_text().split() if path.exists() else []


def test_plan_is_seed_major_with_sft_first(tmp_path):
    names = [s.name for s in sweep.plan(_settings(tmp_path))]
    assert names == ["zero_shot", "sft/seed0", "binary/seed0", "graduated/seed0",
                     "sft/seed1", "binary/seed1", "graduated/seed1"]


def test_commands_chain_grpo_runs_to_their_seeds_sft(tmp_path):
    settings = _settings(tmp_path, train_overrides=("--config.rollout.group_size=4",))
    argv = sweep.train_command(sweep.RunSpec("grpo", "graduated", 1), settings)
    assert "--config=configs/ablations/graduated.py" in argv
    assert f"--config.model.init_checkpoint={tmp_path / 'sweep' / 'sft' / 'seed1' / 'work'}" in argv
    assert "--config.sft.num_steps=0" in argv and "--config.seed=1" in argv and argv[-1] == "--config.rollout.group_size=4"
    assert sweep.train_command(sweep.RunSpec("zero_shot"), settings) is None
    assert "--workdir=" in sweep.eval_command(sweep.RunSpec("zero_shot"), settings)


def test_resume_skips_finished_runs_and_redoes_failed_ones(tmp_path, fake_commands, monkeypatch):
    settings = _settings(tmp_path)
    monkeypatch.setenv("FAIL_ON", "graduated/seed1:eval")
    status = sweep.run_sweep(settings, fake_commands, log=lambda s: None)
    assert status["graduated/seed1"].startswith("failed")
    assert sum(v == "done" for v in status.values()) == 6
    assert not (tmp_path / "sweep" / "graduated" / "seed1" / "results.json").exists()
    first = _ledger(tmp_path)
    assert len(first) == 1 + 6 * 2  # zero-shot eval + 6 runs x (train, eval), the failed eval included

    monkeypatch.delenv("FAIL_ON")
    status = sweep.run_sweep(settings, fake_commands, log=lambda s: None)
    assert status["graduated/seed1"] == "done"
    assert sum(v == "skipped" for v in status.values()) == 6
    assert _ledger(tmp_path)[len(first):] == ["graduated/seed1:train", "graduated/seed1:eval"]

    status = sweep.run_sweep(settings, fake_commands, log=lambda s: None)
    assert set(status.values()) == {"skipped"}
    assert len(_ledger(tmp_path)) == len(first) + 2
    lines = (tmp_path / "sweep" / "results.jsonl").read_text().splitlines()
    assert len(lines) == 7 and {json.loads(x)["name"] for x in lines} == {s.name for s in sweep.plan(settings)}


def test_torn_or_unfinished_results_are_rerun(tmp_path, fake_commands):
    settings = _settings(tmp_path, seeds=(0,), modes=("binary",), zero_shot=False)
    run_dir = tmp_path / "sweep" / "sft" / "seed0"
    run_dir.mkdir(parents=True)
    (run_dir / "results.json").write_text('{"status": "do')  # killed mid-write (without the atomic rename)
    assert not sweep.is_finished(run_dir)
    status = sweep.run_sweep(settings, fake_commands, log=lambda s: None)
    assert status == {"sft/seed0": "done", "binary/seed0": "done"}
    assert sweep.is_finished(run_dir)


def test_failed_sft_blocks_its_seeds_grpo_runs(tmp_path, fake_commands, monkeypatch):
    monkeypatch.setenv("FAIL_ON", "sft/seed0:train")
    status = sweep.run_sweep(_settings(tmp_path), fake_commands, log=lambda s: None)
    assert status["binary/seed0"] == status["graduated/seed0"] == "blocked"
    assert status["binary/seed1"] == "done"


def test_run_locks(tmp_path, fake_commands):
    settings = _settings(tmp_path, seeds=(0,), modes=("binary",), zero_shot=False)
    busy = sweep.RunSpec("grpo", "binary", 0).directory(settings.sweep_dir)
    busy.mkdir(parents=True)
    (busy / ".lock").write_text("some-other-host 1")  # a live worker elsewhere: honoured
    status = sweep.run_sweep(settings, fake_commands, log=lambda s: None)
    assert status == {"sft/seed0": "done", "binary/seed0": "locked"}
    assert not (tmp_path / "sweep" / "sft" / "seed0" / ".lock").exists()  # released after the run
    (busy / ".lock").write_text(f"{__import__('os').uname().nodename} 999999999")  # dead pid here: stale
    status = sweep.run_sweep(settings, fake_commands, log=lambda s: None)
    assert status == {"sft/seed0": "skipped", "binary/seed0": "done"}


def test_max_runs_leaves_the_rest_pending(tmp_path, fake_commands):
    status = sweep.run_sweep(_settings(tmp_path), fake_commands, log=lambda s: None, max_runs=2)
    assert [k for k, v in status.items() if v == "done"] == ["zero_shot", "sft/seed0"]
    assert sum(v == "pending" for v in status.values()) == 5


def test_results_record_training_and_eval_summaries(tmp_path, fake_commands):
    sweep.run_sweep(_settings(tmp_path, seeds=(1,), modes=("atomic",), zero_shot=False), fake_commands, log=lambda s: None)
    result = json.loads((tmp_path / "sweep" / "atomic" / "seed1" / "results.json").read_text())
    assert result["status"] == "done" and result["mode"] == "atomic" and result["seed"] == 1
    train = result["train"]
    assert train["grpo_steps"] == 4 and train["reward_first"] == 0.1 and train["reward_last"] == 0.7
    assert train["reward_mean_first_half"] == pytest.approx(0.2) and train["reward_mean_second_half"] == pytest.approx(0.6)
    assert result["eval"]["eval_100"]["overall"]["turn_accuracy"] == 0.1
    assert set(result["seconds"]) == {"train", "eval", "total"}


# ----------------------------------------------------------------------------- aggregation


def test_t_interval_hand_computed():
    # x = (0.1, 0.2, 0.3): mean 0.2, s = 0.1, t_{0.975, 2} = 4.302653 (table), half = t * s / sqrt(3).
    mean, half, n = sweep.t_interval([0.1, 0.2, 0.3])
    assert (mean, n) == (pytest.approx(0.2), 3)
    assert half == pytest.approx(4.302653 * 0.1 / math.sqrt(3), rel=1e-6)
    assert half == pytest.approx(0.248414, abs=1e-6)
    # x = (0.25, 0.5, 0.5, 1.0): mean 0.5625, s^2 = (0.3125^2 + 2 * 0.0625^2 + 0.4375^2) / 3 = 0.098958...,
    # t_{0.975, 3} = 3.182446, half = t * s / 2.
    mean, half, n = sweep.t_interval([0.25, 0.5, 0.5, 1.0])
    assert mean == pytest.approx(0.5625)
    assert half == pytest.approx(3.182446 * math.sqrt(0.296875 / 3) / 2, rel=1e-6)
    # One seed: no interval; no seeds: nothing; None / NaN values are left out.
    assert math.isnan(sweep.t_interval([0.4])[1]) and sweep.t_interval([0.4])[0] == 0.4
    assert sweep.t_interval([])[2] == 0
    assert sweep.t_interval([0.1, None, float("nan"), 0.3])[2] == 2


def test_markdown_table_aggregates_over_seeds(tmp_path, fake_commands):
    settings = sweep.SweepSettings(sweep_dir=str(tmp_path / "sweep"), modes=("graduated",), seeds=(1, 2, 3))
    sweep.run_sweep(settings, fake_commands, log=lambda s: None)
    results = sweep.load_results(settings.sweep_dir)
    assert len(results) == 1 + 3 + 3
    agg = sweep.aggregate(results, ["eval.eval_100.overall.turn_accuracy"])
    mean, half, n = agg["graduated"]["eval.eval_100.overall.turn_accuracy"]
    assert (mean, n) == (pytest.approx(0.2), 3) and half == pytest.approx(0.248414, abs=1e-6)  # seeds 1,2,3 -> 0.1,0.2,0.3
    table = sweep.markdown_table(results)
    assert list(agg) == ["zero-shot", "SFT warm start (before GRPO)", "graduated"]
    assert "| graduated | 20.0 ± 24.8 (n=3) | 50.0 ± 0.0 (n=3) | 0.0 ± 0.0 (n=3) |" in table
    assert "| zero-shot | 0.0 (n=1) |" in table
    errors = sweep.error_table(results)
    assert "| graduated | 2.0 | 1.0 |" in errors  # wrong_value = seed: mean of 1, 2, 3


def test_select_turns_is_fixed_and_balanced():
    from types import SimpleNamespace

    from experiments.evaluate_run import select_turns

    tasks = [SimpleNamespace(domain=d, complete=c, i=i)
             for i, (d, c) in enumerate([("A", True), ("A", True), ("A", False), ("B", True), ("A", True), ("C", True)])]
    picked = select_turns(tasks, 3)
    assert [t.i for t in picked] == [0, 3, 5]  # one per domain, in file order
    assert [t.i for t in select_turns(tasks, 4)] == [0, 1, 3, 5]
    assert [t.i for t in select_turns(tasks, 0)] == [0, 1, 3, 4, 5]


# ----------------------------------------------------------------------------- the model policy


def test_model_policy_on_the_tiny_model():
    """Batched greedy policy: one text per request in request order, deterministic, prompts rendered
    with the training system prompt (compact view) or the chat template's tool listing (hermes)."""
    from toolrl.eval.model_policy import make_model_policy, render_prompts
    from toolrl.eval.types import PolicyRequest
    from toolrl.rl.policy_model import load_policy

    model, tokenizer, model_config = load_policy("tiny", "", "float32", None, 0)
    tool = {"name": "Search_Car_Location", "description": "Find a place.",
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}}
    history = ({"role": "user", "content": "A car at Zurich"},
               {"role": "assistant", "content": "", "tool_calls": [{"name": "Search_Car_Location", "arguments": {"query": "Zurich"}}]},
               {"role": "tool", "name": "Search_Car_Location", "content": '{"status": true}'})
    requests = [PolicyRequest("a", 0, 0, history[:1], (tool,)), PolicyRequest("b", 0, 0, history, (tool,)),
                PolicyRequest("c", 1, 0, history[:1], (tool,))]
    compact, hermes = render_prompts(requests[1:2], tokenizer, "compact")[0], render_prompts(requests[1:2], tokenizer, "hermes")[0]
    assert "Search_Car_Location(query: string)" in compact and "<tools>" not in compact
    assert '"name": "Search_Car_Location"' in hermes and "<tools>" in hermes
    assert "<tool_response>" in compact and compact.endswith("<|im_start|>assistant\n")

    policy = make_model_policy(model, tokenizer, None, model_config=model_config, batch_size=2, max_new_tokens=4)
    texts = policy(requests)
    assert len(texts) == 3 and all(isinstance(t, str) for t in texts)
    assert texts[0] == texts[2]  # same prompt, greedy: same answer, whatever the batch position
    assert policy(requests[::-1]) == texts[::-1]
    assert policy.stats.requests == 6 and policy.stats.batches == 4  # 3 requests in chunks of 2, twice
    with pytest.raises(ValueError, match="tool_view"):
        make_model_policy(model, tokenizer, None, tool_view="nope", batch_size=1, max_new_tokens=1)

"""The study runner's bookkeeping with fake commands (no training): plan, commands, resume, atomic
result files, and the report from the result files alone with hand-computed intervals."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import pytest

from experiments import sweep

# A fake job. argv: run_dir, step, run name, seed, source. Appends "<run>:<step>" to the ledger; as
# "train" it writes work/config.json, work/metrics.jsonl (GRPO: rewards, degenerate shares and eval
# records at the start and the end; SFT: nll) and prints a fit line; as "eval-*" it writes
# eval/<slug>/eval_results.json. Turn accuracy at the end = seed / 10 (+ 0.05 for the atomic arm),
# at the start 0.05. FAIL_ON names a "<run>:<step>" that exits 1 instead.
FAKE_JOB = r"""
import json, os, sys
from pathlib import Path
run_dir, step, name, seed, source = Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
with open(run_dir.parent / "ledger.txt", "a") as f:
    f.write(f"{name}:{step}\n")
if os.environ.get("FAIL_ON") == f"{name}:{step}":
    sys.exit(1)
end = seed / 10 + (0.05 if name.startswith("atomic") else 0.0)
work = run_dir / "work"
if step == "train":
    work.mkdir(parents=True, exist_ok=True)
    (work / "config.json").write_text(json.dumps({"seed": seed, "eval": {"source": "eval_100", "max_turns": 8},
                                                  "reward": {"mode": name.split("_")[0]}}))
    with open(work / "metrics.jsonl", "w") as f:
        if name == "sft":
            for s in (1, 2):
                f.write(json.dumps({"step": s, "phase": "sft", "sft/nll": 2.0 / s, "time/step_s": 1.0}) + "\n")
        else:
            ev = lambda acc: {"eval/turn_accuracy": acc, "eval/call_accuracy": 0.5, "eval/success_rate": 0.0, "eval/turns": 8}
            if not os.environ.get("NO_START_EVAL"):
                f.write(json.dumps({"step": 0, "phase": "start", **ev(0.05)}) + "\n")
            for s, r in enumerate([0.1, 0.3, 0.5, 0.7], start=1):
                rec = {"step": s, "phase": "grpo", "reward/mean": r, "grpo/degenerate_fraction": 0.5 if s % 2 else 0.0}
                f.write(json.dumps(rec | (ev(end) if s == 4 else {})) + "\n")
            f.write('{"step": 5, "pha')  # a torn last line (killed mid-write)
    print("| fit: 14/15 tasks (93%) | | |")
if step.startswith("eval-"):
    overall = {"turns": 8, "turn_accuracy": end, "call_accuracy": 0.25, "success_rate": None,
               "free_calls": 4, "free_calls_matched": 1, "errors": {"wrong_value": 2, "stopped_early": 0}}
    out = run_dir / "eval" / step[len("eval-"):]
    out.mkdir(parents=True, exist_ok=True)
    name, _, protocol = (source or "eval_100").partition("@")
    turns = [{"sample_id": f"s{i}", "turn": 0, "complete": True, "correct": i < round(end * 8)} for i in range(8)]
    domains = {"A": turns[:5], "B": turns[5:]}  # per-domain counts beside overall, as the evaluator writes them
    domains = {d: {"turns": len(ts), "turns_correct": sum(t["correct"] for t in ts)} for d, ts in domains.items()}
    (out / "eval_results.json").write_text(json.dumps(
        {"protocol": protocol or "turn", "settings": {"source": name},
         "metrics": {"complete": {"overall": overall, **domains}}, "turns": turns}))
"""


@pytest.fixture
def fake_commands(tmp_path):
    script = tmp_path / "fake_job.py"
    script.write_text(FAKE_JOB)

    def commands(spec, settings):
        run_dir = sweep.resolve(settings.run_dir(spec))
        steps = [] if spec.kind in ("zero_shot", "start") else ["train"]
        sources = sweep.eval_sources_after(spec, settings)
        steps += [sweep.eval_step_name(s) for s in sources]
        source_of = {sweep.eval_step_name(s): s for s in sources}
        seed = 0 if spec.seed is None else spec.seed
        real = dict(sweep.default_commands(spec, settings))  # its --config flags ride along, unread
        return [(s, [sys.executable, str(script), str(run_dir), s, spec.name, str(seed), source_of.get(s, ""),
                     *[a for a in real[s] if a.startswith("--config")]]) for s in steps]

    return commands


def _settings(tmp_path, **kw):
    kw = {"arms": ("graduated", "atomic"), "seeds": (0, 1), "study": "s"} | kw
    return sweep.StudySettings(runs_dir=str(tmp_path / "runs"), results_dir=str(tmp_path / "results"), **kw)


def _ledger(tmp_path, study="s") -> list[str]:
    path = tmp_path / "runs" / study / "ledger.txt"
    return path.read_text().split() if path.exists() else []


def _quiet(_: str) -> None:
    pass


# ----------------------------------------------------------------------------- plan and commands


def test_plan_order_zero_shot_sft_once_then_seed_major():
    settings = sweep.StudySettings(arms=("graduated", "atomic", "turn,binary"), seeds=(3, 1))
    assert [s.name for s in sweep.plan(settings)] == [
        "zero_shot", "sft", "graduated_seed3", "atomic_seed3", "turn+binary_seed3",
        "graduated_seed1", "atomic_seed1", "turn+binary_seed1"]
    assert [s.name for s in sweep.plan(sweep.StudySettings(arms=(), zero_shot=True))] == ["zero_shot"]
    assert sweep.plan(sweep.StudySettings(zero_shot=False))[0].name == "sft"


def test_eval_every_minus_one_evaluates_every_source_after_training():
    settings = sweep.StudySettings(arms=("graduated",), seeds=(0,), eval_every=-1, zero_shot=False,
                                   eval_sources=("synthetic:test", "eval_100", "eval_100@official"))
    steps = dict(sweep.default_commands(sweep.RunSpec("grpo", "graduated", 0), settings))
    assert list(steps) == ["train", "eval-synthetic_test", "eval-eval_100", "eval-eval_100_official"]
    assert "--config.eval.every=0" in steps["train"]  # the training process builds no evaluation
    assert "--config.eval.source=synthetic:test" in steps["eval-synthetic_test"]
    with pytest.raises(ValueError, match="eval_every"):
        sweep.StudySettings(eval_every=-2)


def test_arm_seeds_gives_an_arm_the_first_n_seeds_still_seed_major():
    settings = sweep.StudySettings(arms=("graduated", "binary", "atomic"), seeds=(0, 1, 2, 3), zero_shot=False,
                                   arm_seeds=(("atomic", 2),))
    assert [s.name for s in sweep.plan(settings)] == [
        "sft", "graduated_seed0", "binary_seed0", "atomic_seed0", "graduated_seed1", "binary_seed1", "atomic_seed1",
        "graduated_seed2", "binary_seed2", "graduated_seed3", "binary_seed3"]
    for bad in ((("orchestration", 2),), (("atomic", 0),)):
        with pytest.raises(ValueError, match="arm_seeds"):
            sweep.StudySettings(arms=("graduated", "atomic"), arm_seeds=bad)
    from experiments.run_ablation import arm_seeds
    assert arm_seeds(["atomic:3", "turn+binary:2"]) == (("atomic", 3), ("turn,binary", 2))
    with pytest.raises(ValueError, match="ARM:N"):
        arm_seeds(["atomic"])


def test_commands_start_every_arm_from_the_one_sft_checkpoint(tmp_path):
    settings = _settings(tmp_path, variants="paper", grpo_steps=7, eval_sources=("eval_100", "synthetic:test"),
                         overrides=("--config.rollout.group_size=8",))
    runs = tmp_path / "runs" / "s"
    argv = sweep.train_command(sweep.RunSpec("grpo", "atomic", 1), settings)
    assert argv[1:4] == ["-m", "toolrl.main", "--config=configs/grpo.py:paper,atomic"]
    for flag in ("--config.mode=grpo", "--config.seed=1", f"--config.workdir={runs / 'atomic_seed1' / 'work'}",
                 f"--config.model.init_checkpoint={runs / 'sft' / 'work'}", "--config.sft.num_steps=0",
                 "--config.train.num_steps=7", f"--config.eval.every={sweep.START_AND_END}",
                 "--config.eval.source=eval_100"):
        assert flag in argv
    assert argv[-1] == "--config.rollout.group_size=8"  # overrides last: they win
    sft = sweep.train_command(sweep.RunSpec("sft", seed=0), settings)
    assert "--config.mode=sft" in sft and "--config.eval.every=0" in sft and sft[3] == "--config=configs/grpo.py:paper"
    assert sweep.train_command(sweep.RunSpec("zero_shot"), settings) is None
    # Evaluations after training: every source for the SFT start and zero-shot, the others for GRPO runs.
    steps = sweep.default_commands(sweep.RunSpec("grpo", "atomic", 1), settings)
    assert [s for s, _ in steps] == ["train", "eval-synthetic_test"]
    ev = steps[1][1]
    assert "--config.mode=eval" in ev and "--config.eval.source=synthetic:test" in ev
    assert f"--config.eval.output_dir={runs / 'atomic_seed1' / 'eval' / 'synthetic_test'}" in ev
    assert [s for s, _ in sweep.default_commands(sweep.RunSpec("zero_shot"), settings)] == [
        "eval-eval_100", "eval-synthetic_test"]
    # Without eval_sources: the config's eval.source, no --config.eval.source flag.
    plain = sweep.default_commands(sweep.RunSpec("sft", seed=0), _settings(tmp_path))
    assert [s for s, _ in plain] == ["train", "eval-default"] and not any("eval.source" in a for a in plain[1][1])


def test_overrides_must_be_config_flags_and_not_per_run_fields():
    with pytest.raises(ValueError, match="set by the study runner"):
        sweep.StudySettings(overrides=("--config.workdir=x",))
    with pytest.raises(ValueError, match="--config.field=value"):
        sweep.StudySettings(overrides=("rollout.group_size=8",))
    with pytest.raises(ValueError, match="distinct"):
        sweep.StudySettings(arms=("binary", "binary"))


# ----------------------------------------------------------------------------- running and resuming


def test_resume_skips_finished_runs_and_redoes_failed_ones(tmp_path, fake_commands, monkeypatch):
    settings = _settings(tmp_path)
    monkeypatch.setenv("FAIL_ON", "atomic_seed1:train")
    status = sweep.run_study(settings, fake_commands, log=_quiet)
    assert status["atomic_seed1"].startswith("failed")
    assert sum(v == "done" for v in status.values()) == 5
    assert not (tmp_path / "results" / "s" / "atomic_seed1.json").exists()
    first = _ledger(tmp_path)
    assert first == ["zero_shot:eval-default", "sft:train", "sft:eval-default", "graduated_seed0:train",
                     "atomic_seed0:train", "graduated_seed1:train", "atomic_seed1:train"]

    monkeypatch.delenv("FAIL_ON")
    status = sweep.run_study(settings, fake_commands, log=_quiet)
    assert status["atomic_seed1"] == "done" and sum(v == "skipped" for v in status.values()) == 5
    assert _ledger(tmp_path)[len(first):] == ["atomic_seed1:train"]
    # The failed attempt's time counts: the run's wall seconds sum both attempts of its training.
    attempts = [json.loads(line) for line in (tmp_path / "runs" / "s" / "atomic_seed1" / "attempts.jsonl").open()]
    assert [(a["step"], a["rc"]) for a in attempts] == [("train", 1), ("train", 0)]
    result = json.loads((tmp_path / "results" / "s" / "atomic_seed1.json").read_text())
    assert result["attempts"] == {"train": 2}
    assert result["wall_seconds"]["train"] == pytest.approx(sum(a["seconds"] for a in attempts), abs=1e-6)
    assert json.loads((tmp_path / "results" / "s" / "atomic_seed0.json").read_text())["attempts"] == {"train": 1}

    status = sweep.run_study(settings, fake_commands, log=_quiet)
    assert set(status.values()) == {"skipped"} and len(_ledger(tmp_path)) == len(first) + 1
    # A finished run is never redone, but a changed plan is pointed out.
    lines: list[str] = []
    changed = _settings(tmp_path, overrides=("--config.rollout.group_size=8",))
    assert set(sweep.run_study(changed, fake_commands, log=lines.append).values()) == {"skipped"}
    assert sum("NOTE: it ran with other flags: now --config.rollout.group_size=8" in x for x in lines) == 6
    files = sorted(p.name for p in (tmp_path / "results" / "s").iterdir())
    assert files == ["atomic_seed0.json", "atomic_seed1.json", "curves.png", "graduated_seed0.json", "graduated_seed1.json",
                     "report.md", "sft.json", "summary.json", "zero_shot.json"]


def test_failed_sft_blocks_the_grpo_runs(tmp_path, fake_commands, monkeypatch):
    monkeypatch.setenv("FAIL_ON", "sft:eval-default")
    status = sweep.run_study(_settings(tmp_path), fake_commands, log=_quiet)
    assert status["zero_shot"] == "done" and status["sft"].startswith("failed")
    assert {status[k] for k in ("graduated_seed0", "atomic_seed0", "graduated_seed1", "atomic_seed1")} == {"blocked"}


def test_max_runs_and_locks(tmp_path, fake_commands):
    settings = _settings(tmp_path, seeds=(0,), arms=("binary",), zero_shot=False)
    status = sweep.run_study(settings, fake_commands, log=_quiet, max_runs=1)
    assert status == {"sft": "done", "binary_seed0": "pending"}
    busy = tmp_path / "runs" / "s" / "binary_seed0"
    busy.mkdir(parents=True)
    (busy / ".lock").write_text("some-other-host 1")  # a live worker elsewhere: honoured
    assert sweep.run_study(settings, fake_commands, log=_quiet) == {"sft": "skipped", "binary_seed0": "locked"}
    (busy / ".lock").write_text(f"{os.uname().nodename} 999999999")  # a dead pid here: stale, taken over
    assert sweep.run_study(settings, fake_commands, log=_quiet) == {"sft": "skipped", "binary_seed0": "done"}
    assert not (busy / ".lock").exists()


def test_a_step_without_its_output_fails_the_run(tmp_path):
    settings = _settings(tmp_path, arms=(), zero_shot=True)
    status = sweep.run_study(settings, lambda spec, s: [("eval-default", [sys.executable, "-c", "pass"])], log=_quiet)
    assert status["zero_shot"].startswith("failed") and "eval_results.json" in status["zero_shot"]
    assert not (tmp_path / "results" / "s" / "zero_shot.json").exists()


def test_result_file_schema(tmp_path, fake_commands):
    settings = _settings(tmp_path, arms=("atomic",), seeds=(2,), eval_sources=("eval_100", "synthetic:test"))
    sweep.run_study(settings, fake_commands, log=_quiet)
    result = json.loads((tmp_path / "results" / "s" / "atomic_seed2.json").read_text())
    assert (result["schema"], result["name"], result["kind"], result["arm"], result["seed"], result["status"]) == (
        sweep.SCHEMA, "atomic_seed2", "grpo", "atomic", 2, "done")
    assert result["config"]["arg"] == "configs/grpo.py:atomic"
    assert result["config"]["resolved"] == str(tmp_path / "runs" / "s" / "atomic_seed2" / "work" / "config.json")
    assert result["config"]["key"]["eval.source"] == "eval_100" and result["config"]["key"]["reward.mode"] == "atomic"
    assert "--config.seed=2" in result["config"]["overrides"]
    assert result["steps"] == 4
    # eval_100 during training (start and end from metrics.jsonl), synthetic:test after it (end only).
    assert result["eval"]["eval_100"]["start"] == {"step": 0, "turn_accuracy": 0.05, "call_accuracy": 0.5,
                                                   "success_rate": 0.0, "turns": 8}
    assert result["eval"]["eval_100"]["end"]["step"] == 4
    assert result["eval"]["eval_100"]["end"]["turn_accuracy"] == pytest.approx(0.25)
    synth = result["eval"]["synthetic:test"]
    assert synth["start"] is None and synth["end"]["call_accuracy"] == 0.25 and synth["end"]["success_rate"] is None
    assert synth["end"]["free_call_match_rate"] == 0.25 and synth["end"]["errors"] == {"wrong_value": 2}
    assert result["train"]["grpo_steps"] == 4 and result["train"]["reward_mean"] == pytest.approx(0.4)
    assert result["train"]["degenerate_fraction"] == pytest.approx(0.25)
    assert result["fit"] == {"fit": 14, "total": 15, "share": pytest.approx(14 / 15)}
    # Curves: every GRPO step's reward and degenerate share; the evaluations at steps 0 and 4.
    assert result["curves"]["train"] == [[1, 0.1, 0.5], [2, 0.3, 0.0], [3, 0.5, 0.5], [4, 0.7, 0.0]]
    assert result["curves"]["eval"] == [[0, 0.05, 0.5, 0.0], [4, pytest.approx(0.25), 0.5, 0.0]]
    assert set(result["wall_seconds"]) == {"train", "eval-synthetic_test", "total"}
    sft = json.loads((tmp_path / "results" / "s" / "sft.json").read_text())
    assert sft["train"]["sft_steps"] == 2 and sft["train"]["sft_nll_last"] == 1.0
    assert set(sft["eval"]) == {"eval_100", "synthetic:test"} and sft["seed"] == 0


def test_result_files_are_written_atomically(tmp_path, monkeypatch):
    path = tmp_path / "r.json"
    sweep.write_json_atomic(path, {"status": "done", "name": "a"})
    with pytest.raises(ValueError):  # NaN is not JSON: the write fails half way
        sweep.write_json_atomic(path, {"status": "done", "name": "b", "x": float("nan")})
    assert sweep.read_result(path)["name"] == "a" and os.listdir(tmp_path) == ["r.json"]

    def killed(src, dst):  # killed before the rename: the old file stays, the temporary goes
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        sweep.write_json_atomic(path, {"status": "done", "name": "c"})
    assert sweep.read_result(path)["name"] == "a" and os.listdir(tmp_path) == ["r.json"]
    path.write_text('{"status": "do')  # a torn file (written without the rename) is not finished
    assert sweep.read_result(path) is None


def test_torn_result_is_rerun(tmp_path, fake_commands):
    settings = _settings(tmp_path, arms=(), zero_shot=True)
    (tmp_path / "results" / "s").mkdir(parents=True)
    (tmp_path / "results" / "s" / "zero_shot.json").write_text('{"status": "done", "na')
    assert sweep.run_study(settings, fake_commands, log=_quiet) == {"zero_shot": "done"}
    assert sweep.is_finished(sweep.RunSpec("zero_shot"), settings)


# ----------------------------------------------------------------------------- the report


def test_t_interval_hand_computed():
    # x = (0.1, 0.2, 0.3): mean 0.2, s = 0.1, t_{0.975, 2} = 4.302653 (table), half = t * s / sqrt(3).
    mean, half, n = sweep.t_interval([0.1, 0.2, 0.3])
    assert (mean, n) == (pytest.approx(0.2), 3)
    assert half == pytest.approx(4.302653 * 0.1 / math.sqrt(3), rel=1e-6) == pytest.approx(0.248414, abs=1e-6)
    # x = (0.25, 0.5, 0.5, 1.0): mean 0.5625, s^2 = 0.296875 / 3, t_{0.975, 3} = 3.182446, half = t * s / 2.
    mean, half, n = sweep.t_interval([0.25, 0.5, 0.5, 1.0])
    assert mean == pytest.approx(0.5625) and half == pytest.approx(3.182446 * math.sqrt(0.296875 / 3) / 2, rel=1e-6)
    assert math.isnan(sweep.t_interval([0.4])[1]) and sweep.t_interval([])[2] == 0
    assert sweep.t_interval([0.1, None, float("nan"), 0.3])[2] == 2


def _result(name, kind, arm, seed, end, start=None, reward=None):
    return {"schema": sweep.SCHEMA, "name": name, "kind": kind, "arm": arm, "seed": seed, "status": "done",
            "steps": 4, "eval": {"eval_100": {"start": None if start is None else {"turn_accuracy": start},
                                              "end": {"turn_accuracy": end, "call_accuracy": 2 * end}}},
            "train": {"reward_mean": reward, "degenerate_fraction": 0.5 if reward is not None else None},
            "fit": None, "wall_seconds": {"total": 60.0}}


def test_report_from_the_result_files_alone(tmp_path):
    """Only hand-written result files (no runs dir): end-of-run means with t-intervals, paired
    differences to the baseline arm (per seed) and to the SFT start (the run's own start, else the
    SFT run's end)."""
    results = tmp_path / "results" / "s"
    files = [_result("zero_shot", "zero_shot", "zero_shot", None, 0.0),
             _result("sft", "sft", "sft", 0, 0.05),
             # graduated: end 0.1, 0.2, 0.3 (seeds 0-2), starts logged (0.05 each).
             *[_result(f"graduated_seed{s}", "grpo", "graduated", s, e, start=0.05, reward=0.5)
               for s, e in ((0, 0.1), (1, 0.2), (2, 0.3))],
             # atomic: end 0.2, 0.2, 0.5, no logged start (-> the SFT run's 0.05).
             *[_result(f"atomic_seed{s}", "grpo", "atomic", s, e, reward=0.3) for s, e in ((0, 0.2), (1, 0.2), (2, 0.5))]]
    for r in files:
        sweep.write_json_atomic(results / f"{r['name']}.json", r)
    (results / "notes.json").write_text('{"not": "a result"}')  # ignored
    summary, text = sweep.write_summary(results)
    assert json.loads((results / "summary.json").read_text()) == summary
    assert (results / "report.md").read_text() == text
    assert summary["arms"] == ["graduated", "atomic"] and len(summary["runs"]) == 8
    s = summary["sources"]["eval_100"]
    # graduated end: mean 0.2, s = 0.1, n = 3 -> half 4.302653 * 0.1 / sqrt(3) = 0.248414.
    g = s["end"]["graduated"]["turn_accuracy"]
    assert (g["mean"], g["n"]) == (pytest.approx(0.2), 3) and g["half_width"] == pytest.approx(0.248414, abs=1e-6)
    # atomic - graduated per seed: 0.1, 0.0, 0.2 -> mean 0.1, s = 0.1, half 0.248414.
    d = s["vs_baseline"]["atomic"]["turn_accuracy"]
    assert (d["mean"], d["n"]) == (pytest.approx(0.1), 3) and d["half_width"] == pytest.approx(0.248414, abs=1e-6)
    # atomic - SFT start (0.05): 0.15, 0.15, 0.45 -> mean 0.25, s = sqrt(0.03) = 0.173205,
    # half = 4.302653 * 0.173205 / sqrt(3) = 0.430265. Call accuracy (2 x turn; SFT 0.1): 0.3, 0.3, 0.9.
    v = s["vs_sft"]["atomic"]["turn_accuracy"]
    assert v["mean"] == pytest.approx(0.25) and v["half_width"] == pytest.approx(0.430265, abs=1e-6)
    assert s["vs_sft"]["graduated"]["turn_accuracy"]["mean"] == pytest.approx(0.15)
    assert "graduated" not in s["vs_baseline"]
    assert s["end"]["zero_shot"]["turn_accuracy"] == {"mean": 0.0, "half_width": None, "n": 1}
    assert summary["sources"]["eval_100"]["vs_sft"]["atomic"]["success_rate"]["n"] == 0
    assert "| graduated | 20.0 ± 24.8 (n=3) | 40.0 ± 49.7 (n=3) | – |" in text
    assert "| zero-shot | 0.0 (n=1) | 0.0 (n=1) | – |" in text
    assert "| SFT start | 5.0 (n=1) |" in text
    assert "| atomic | +25.0 ± 43.0 (n=3) | +50.0 ± 86.1 (n=3) | – | +10.0 ± 24.8 (n=3) | +20.0 ± 49.7 (n=3) | – |" in text
    assert "| graduated | 0,1,2 | 4 ± 0 (n=3) | 0.500 ± 0.000 (n=3) | – | 50.0 ± 0.0 (n=3) | – | 1.0 ± 0.0 (n=3) |" in text


def test_reward_rise_hand_computed():
    # Second half minus first half of the GRPO rewards; an odd count leaves the middle step out.
    assert sweep.reward_rise([[1, 0.2, 0.0], [2, 0.4, 0.0], [3, 0.5, 0.0], [4, 0.9, 0.0]]) == pytest.approx(0.4)
    assert sweep.reward_rise([[1, 0.1, 0.0], [2, 0.7, 0.0], [3, 0.4, 0.0]]) == pytest.approx(0.3)
    assert sweep.reward_rise([[1, 0.3, 0.0]]) is None and sweep.reward_rise([]) is None
    results = [{"kind": "grpo", "arm": "graduated", "seed": s, "name": f"graduated_seed{s}", "steps": 2,
                "curves": {"train": [[1, 0.5, 0.0], [2, 0.5 + d, 0.0]], "eval": []}, "eval": {}}
               for s, d in ((0, 0.1), (1, 0.2), (2, 0.3))]
    rise = sweep.summarize(results)["train"]["graduated"]["reward_rise"]
    # 0.1, 0.2, 0.3 -> mean 0.2, half 4.302653 * 0.1 / sqrt(3).
    assert rise["mean"] == pytest.approx(0.2) and rise["half_width"] == pytest.approx(0.248414, abs=1e-6)
    assert "| +0.200 ± 0.248 (n=3) |" in sweep.markdown_report(sweep.summarize(results))


def test_a_run_without_its_start_evaluation_starts_its_curve_at_the_sft_run(tmp_path, fake_commands, monkeypatch):
    monkeypatch.setenv("NO_START_EVAL", "1")
    settings = _settings(tmp_path, arms=("graduated",), seeds=(1,), eval_sources=("eval_100",))
    assert "--config.eval.at_start=False" in sweep.train_command(sweep.RunSpec("grpo", "graduated", 1), settings)
    sweep.run_study(settings, fake_commands, log=_quiet)
    result = json.loads((tmp_path / "results" / "s" / "graduated_seed1.json").read_text())
    sft = json.loads((tmp_path / "results" / "s" / "sft.json").read_text())["eval"]["eval_100"]["end"]
    assert result["curves"]["eval"][0] == [0, sft["turn_accuracy"], sft["call_accuracy"], sft["success_rate"]]
    assert result["curves"]["eval"][1][0] == 4 and result["curves"]["eval_start"] == "the SFT run's evaluation"
    assert result["eval"]["eval_100"]["start"] is None  # no step-0 record: the report uses the SFT run
    summary = sweep.summarize(sweep.load_results(tmp_path / "results" / "s"))
    assert summary["sources"]["eval_100"]["vs_sft"]["graduated"]["turn_accuracy"]["mean"] == pytest.approx(
        0.1 - sft["turn_accuracy"])


def test_official_protocol_source_is_its_own_column(tmp_path, fake_commands):
    settings = _settings(tmp_path, arms=("graduated",), seeds=(0,), eval_sources=("eval_100", "eval_100@official"))
    argv = dict(sweep.default_commands(sweep.RunSpec("grpo", "graduated", 0), settings))["eval-eval_100_official"]
    assert "--config.eval.source=eval_100" in argv and "--config.eval.game=official" in argv
    sweep.run_study(settings, fake_commands, log=_quiet)
    result = json.loads((tmp_path / "results" / "s" / "graduated_seed0.json").read_text())
    assert set(result["eval"]) == {"eval_100", "eval_100@official"}
    assert "eval_100@official" in sweep.summarize(sweep.load_results(tmp_path / "results" / "s"))["sources"]


def test_pilots_start_from_another_studys_sft(tmp_path, fake_commands):
    pilots = _settings(tmp_path, study="p", arms=("graduated",), seeds=(0,), sft_study="s", zero_shot=False,
                       overrides=("--config.optim.learning_rate=1e-5",))
    assert [r.name for r in sweep.plan(pilots)] == ["sft_start", "graduated_seed0"]
    blocked = {"sft_start": "blocked", "graduated_seed0": "blocked"}
    assert sweep.run_study(pilots, fake_commands, log=_quiet) == blocked  # no SFT there yet
    sweep.run_study(_settings(tmp_path, arms=("graduated",), seeds=()), fake_commands, log=_quiet)  # study s: its SFT
    assert sweep.run_study(pilots, fake_commands, log=_quiet) == {"sft_start": "done", "graduated_seed0": "done"}
    argv = sweep.train_command(sweep.RunSpec("grpo", "graduated", 0), pilots)
    assert f"--config.model.init_checkpoint={tmp_path / 'runs' / 's' / 'sft' / 'work'}" in argv
    assert _ledger(tmp_path, "s").count("sft:train") == 1 and not (tmp_path / "runs" / "p" / "sft").exists()
    result = json.loads((tmp_path / "results" / "p" / "graduated_seed0.json").read_text())
    assert "--config.optim.learning_rate=1e-5" in result["config"]["overrides"]
    # The shared start is evaluated again under the pilots' flags (no training), from study s's workdir,
    # into the pilots' own folders; the report shows it as their SFT start.
    start = sweep.RunSpec("start", seed=0)
    assert sweep.train_command(start, pilots) is None
    (step, eval_argv), = sweep.default_commands(start, pilots)
    assert step == "eval-default" and f"--config.workdir={tmp_path / 'runs' / 's' / 'sft' / 'work'}" in eval_argv
    assert "--config.optim.learning_rate=1e-5" in eval_argv and _ledger(tmp_path, "p").count("sft_start:eval-default") == 1
    record = json.loads((tmp_path / "results" / "p" / "sft_start.json").read_text())
    assert record["kind"] == "start" and record["eval"]["eval_100"]["end"]["turn_accuracy"] == 0.0
    summary = sweep.summarize(sweep.load_results(tmp_path / "results" / "p"))
    assert list(summary["train"]) == ["sft", "graduated"]
    assert "| SFT start | 0 |" in sweep.compact_table(summary)
    with pytest.raises(ValueError, match="sft_start"):
        _settings(tmp_path, arms=("sft_start",))


def test_curve_bands_and_plot(tmp_path):
    """Mean and t-band over seeds per step; a step some seed lacks is dropped; the PNG is written."""
    runs = [{"kind": "grpo", "arm": "graduated", "seed": s, "name": f"graduated_seed{s}",
             "curves": {"train": [[1, r1, 0.5], [2, r2, 0.0]] + ([[3, 0.9, 0.0]] if s == 0 else []),
                        "eval": [[0, 0.1, 0.2, 0.0], [2, 0.2 + 0.1 * s, 0.3, 0.0]]}}
            for s, (r1, r2) in enumerate(((0.1, 0.3), (0.3, 0.5)))]
    steps, mean, low, high = sweep.curve_bands(runs, "graduated", "train", 1)
    assert steps == [1, 2] and mean == pytest.approx([0.2, 0.4])
    # s = sqrt(0.02), t_{0.975, 1} = 12.706205 -> half 1.270620 at both steps.
    assert high[0] - mean[0] == pytest.approx(1.270620, abs=1e-6) and low[1] == pytest.approx(0.4 - 1.270620, abs=1e-6)
    e_steps, e_mean, _, _ = sweep.curve_bands(runs, "graduated", "eval", 1)
    assert e_steps == [0, 2] and e_mean == pytest.approx([0.1, 0.25])
    out = sweep.plot_curves(runs, tmp_path / "curves.png")
    assert out is not None and out.stat().st_size > 1000
    assert sweep.plot_curves([{"kind": "sft", "name": "sft"}], tmp_path / "none.png") is None


def test_compact_table_spliced_into_a_readme(tmp_path):
    results = tmp_path / "results" / "s"
    for r in [_result("sft", "sft", "sft", 0, 0.05),
              *[_result(f"graduated_seed{s}", "grpo", "graduated", s, e, reward=0.5) for s, e in ((0, 0.1), (1, 0.3))],
              *[_result(f"atomic_seed{s}", "grpo", "atomic", s, e, reward=0.3) for s, e in ((0, 0.2), (1, 0.2))]]:
        sweep.write_json_atomic(results / f"{r['name']}.json", r)
    summary, _ = sweep.write_summary(results)
    table = sweep.compact_table(summary)
    # graduated: end 0.1, 0.3 -> 20.0 ± 127.1; vs SFT (0.05): 0.05, 0.25 -> +15.0 ± 127.1.
    # atomic - graduated per seed: +0.1, -0.1 -> +0.0 ± 127.1 (s = 0.141421, t_{0.975,1} = 12.706205).
    assert ("| graduated | 0,1 | 20.0 ± 127.1 (n=2) | 40.0 ± 254.1 (n=2) | +15.0 ± 127.1 (n=2) | – | "
            "0.500 ± 0.000 (n=2) | 50.0 ± 0.0 (n=2) | 1.0 ± 0.0 (n=2) |") in table
    assert "| atomic | 0,1 | 20.0 ± 0.0 (n=2) |" in table and "| +0.0 ± 127.1 (n=2) |" in table
    assert table.startswith("| run | seeds | eval_100 turn acc % |")
    no_counts = sweep.turns_right_table(sweep.load_results(results), "eval_100")  # no turn counts: no empty table
    assert no_counts == "Turns right per run on eval_100 (the SFT start: –): no GRPO run has a count on it.\n"
    loaded = sweep.load_results(results)
    for r in loaded:
        r["eval"]["eval_100"]["end"]["turns"] = 20
    counts = sweep.turns_right_table(loaded, "eval_100")
    assert "(the SFT start: 1/20)" in counts and "| seed | graduated | atomic |" in counts
    assert "| 0 | 2/20 | 4/20 |" in counts and "| 1 | 6/20 | 4/20 |" in counts
    readme = tmp_path / "README.md"
    (begin, end), (other_begin, other_end) = sweep.readme_markers("s"), sweep.readme_markers("t")
    readme.write_text(f"# x\n{begin}\nold table\n{end}\n{other_begin}\nother study\n{other_end}\nafter\n")
    sweep.splice_readme(readme, table, "s")
    sweep.splice_readme(readme, table, "s")  # idempotent
    text = readme.read_text()
    assert "old table" not in text and text.count(table) == 1
    assert text.endswith(f"{end}\n{other_begin}\nother study\n{other_end}\nafter\n")  # the other block untouched
    (tmp_path / "bare.md").write_text("no markers\n")
    with pytest.raises(ValueError, match="no .* block"):
        sweep.splice_readme(tmp_path / "bare.md", table, "s")
    # The comparisons-only block of the same study is another block: each kind splices its own.
    first, last = sweep.readme_markers("s", "comparisons")
    assert first != begin and "--readme_comparisons=" in first
    readme.write_text(readme.read_text() + f"{first}\n{last}\n")
    sweep.splice_readme(readme, "short form\n", "s", kind="comparisons")
    text = readme.read_text()
    assert text.count(table) == 1 and f"{first}\nshort form\n{last}" in text
    with pytest.raises(ValueError, match="kind"):
        sweep.readme_markers("s", "other")
    assert sweep.readme_comparisons({"comparisons": {}}) == "No GRPO run of this study has finished yet.\n"


def test_compute_is_the_files_wall_seconds_summed():
    results = [_result("sft", "sft", "", 0, 0.1), _result("graduated_seed0", "grpo", "graduated", 0, 0.2),
               _result("graduated_seed1", "grpo", "graduated", 1, 0.3), _result("atomic_seed0", "grpo", "atomic", 0, 0.1)]
    results[1]["wall_seconds"] = {"total": 1800.0}
    compute = sweep.summarize(results)["compute"]
    assert compute["files"] == 4 and compute["wall_hours"] == pytest.approx((60 + 1800 + 60 + 60) / 3600)
    assert compute["by_row"] == {"sft": 60 / 3600, "graduated": 1860 / 3600, "atomic": 60 / 3600}
    assert sweep.compute_line(sweep.summarize(results)).startswith("Compute: 0.6 h of wall time")


def test_report_cli_reads_only_the_result_files(tmp_path):
    import subprocess

    results = tmp_path / "results"
    for s, e in ((0, 0.1), (1, 0.3)):
        sweep.write_json_atomic(results / "x" / f"graduated_seed{s}.json",
                                _result(f"graduated_seed{s}", "grpo", "graduated", s, e))
    out = subprocess.run([sys.executable, "-m", "experiments.run_ablation", "--study=x", f"--results_dir={results}",
                          f"--runs_dir={tmp_path / 'nowhere'}", "--report"], capture_output=True, text=True,
                         cwd=Path(sweep.__file__).resolve().parents[1], check=True).stdout
    # mean 0.2, s = sqrt(0.02), t_{0.975, 1} = 12.706205 -> half = 12.706205 * 0.141421 / sqrt(2) = 1.270620.
    assert "| graduated | 20.0 ± 127.1 (n=2) |" in out
    assert not (tmp_path / "nowhere").exists()


def test_turn_flips_and_exact_mcnemar_by_hand():
    # p = min(1, 2 * P(Binomial(g + l, 1/2) <= min(g, l))).
    assert sweep.mcnemar_exact_p(6, 1) == pytest.approx(2 * (1 + 7) / 128)  # 0.125, the long pilot's
    assert sweep.mcnemar_exact_p(5, 2) == pytest.approx(2 * (1 + 7 + 21) / 128)
    assert sweep.mcnemar_exact_p(0, 3) == pytest.approx(0.25)
    assert sweep.mcnemar_exact_p(10, 10) == 1.0 and sweep.mcnemar_exact_p(0, 0) == 1.0
    before = {"verdicts": "0011", "turn_ids": "abc"}
    assert sweep.turn_flips(before, {"verdicts": "0110", "turn_ids": "abc"}) == (1, 1)
    assert sweep.turn_flips(before, {"verdicts": "1111", "turn_ids": "abc"}) == (2, 0)
    assert sweep.turn_flips(before, {"verdicts": "0110", "turn_ids": "xyz"}) is None  # other turns
    assert sweep.turn_flips({"turn_accuracy": 0.5}, {"verdicts": "0110", "turn_ids": "abc"}) is None


def test_report_keeps_per_turn_verdicts_of_the_counted_turns():
    turns = [{"sample_id": "a", "turn": 0, "complete": True, "correct": True},
             {"sample_id": "a", "turn": 1, "complete": False, "correct": True},
             {"sample_id": "b", "turn": 0, "complete": True, "correct": False}]
    report = {"metrics": {"complete": {"overall": {"turns": 2, "turn_accuracy": 0.5}},
                          "all": {"overall": {"turns": 3}}}, "turns": turns}
    out = sweep.report_overall(report)
    assert out["verdicts"] == "10" and len(out["turn_ids"]) == 12
    other = sweep.report_overall({**report, "turns": [turns[0], turns[1], dict(turns[2], sample_id="c")]})
    assert other["turn_ids"] != out["turn_ids"]
    assert "verdicts" not in sweep.report_overall({**report, "turns": turns[:1]})  # count mismatch: none kept


def test_report_keeps_per_domain_counts_of_the_counted_bucket():
    complete = {"overall": {"turns": 3, "turns_correct": 1}, "Hotels": {"turns": 2, "turns_correct": 1},
                "Flights": {"turns": 1, "turns_correct": 0}, "Cross": {"turns": 0, "turns_correct": 0}}
    every = {"overall": {"turns": 4, "turns_correct": 2}, "Hotels": {"turns": 4, "turns_correct": 2}}
    out = sweep.report_overall({"metrics": {"complete": complete, "all": every}})
    assert out["by_domain"] == {"Flights": {"right": 0, "turns": 1}, "Hotels": {"right": 1, "turns": 2}}  # no empty domain
    out = sweep.report_overall({"metrics": {"complete": {"overall": {"turns": 0}}, "all": every}})
    assert out["by_domain"] == {"Hotels": {"right": 2, "turns": 4}}  # no complete-history turn: all turns
    assert "by_domain" not in sweep.report_overall({"metrics": {"all": {"overall": {"turns": 1}}}})


def _verdict_run(arm, seed, start, end):
    """A GRPO result on source "x" from per-turn verdict strings; start None: no step-0 evaluation."""
    ev = lambda v: {"turn_accuracy": v.count("1") / len(v), "turns": len(v), "verdicts": v, "turn_ids": "t"}
    return {"kind": "grpo", "name": f"{arm}_seed{seed}", "arm": arm, "seed": seed,
            "eval": {"x": {"start": ev(start) if start else None, "end": ev(end)}}}


def test_flips_in_the_summary_report_and_turn_counts():
    run = _verdict_run
    sft = {"kind": "start", "name": "sft_start", "arm": "start", "seed": 0,
           "eval": {"x": {"start": None, "end": {"turn_accuracy": 0.25, "turns": 4, "verdicts": "1000", "turn_ids": "t"}}}}
    results = [sft, run("graduated", 0, "1000", "1110"), run("atomic", 0, None, "0111")]
    summary = sweep.summarize(results)
    s = summary["sources"]["x"]
    assert s["flips_vs_sft"]["graduated"] == [{"seed": 0, "gained": 2, "lost": 0, "p": 0.5}]
    assert s["flips_vs_sft"]["atomic"] == [{"seed": 0, "gained": 3, "lost": 1, "p": 0.625}]  # start: the sft_start run
    assert s["flips_vs_baseline"]["atomic"] == [{"seed": 0, "gained": 1, "lost": 1, "p": 1.0}]
    report = sweep.markdown_report(summary)
    assert "## x: turns gained / lost vs its SFT start (exact McNemar p)" in report
    assert "| 0 | +2 −0 (p 0.5) | +3 −1 (p 0.625) |" in report
    counts = sweep.turns_right_table(results, "x")
    assert "(the SFT start: 1/4; in brackets" in counts and "| 0 | 3/4 (+2 −0) | 3/4 (+3 −1) |" in counts


def test_flips_pooled_over_seeds_by_hand():
    run = _verdict_run
    results = [run("graduated", 0, "0000", "1110"), run("graduated", 1, "1000", "0110"),
               run("atomic", 0, "0000", "1000")]
    summary = sweep.summarize(results)
    pooled = summary["sources"]["x"]["flips_pooled"]
    # graduated: seed 0 +3 -0, seed 1 +2 -1 -> +5 -1; p = 2 * (1 + 6) / 64
    assert pooled["flips_vs_sft"]["graduated"] == {"seed": "all", "gained": 5, "lost": 1, "p": pytest.approx(14 / 64)}
    assert "atomic" not in pooled["flips_vs_sft"]  # one seed: nothing to pool
    assert sweep.pooled_flips([{"gained": 0, "lost": 0}] * 3)["p"] == 1.0
    report = sweep.markdown_report(summary)
    assert "| all seeds, summed | +5 −1 (p 0.219) | – |" in report and "stratified by seed" in report


def test_details_added_to_older_result_files_from_the_run_files(tmp_path, fake_commands):
    settings = _settings(tmp_path, arms=("graduated",), seeds=(0, 1), eval_sources=("eval_100", "eval_100@official"))
    sweep.run_study(settings, fake_commands, log=_quiet)
    path = tmp_path / "results" / "s" / "graduated_seed1.json"
    fresh = json.loads(path.read_text())
    assert fresh["eval"]["eval_100@official"]["end"]["verdicts"] == "10000000"  # seed 1: 0.1 of 8 turns -> 1 right
    assert fresh["eval"]["eval_100@official"]["end"]["by_domain"] == {"A": {"right": 1, "turns": 5},
                                                                      "B": {"right": 0, "turns": 3}}
    old = json.loads(path.read_text())
    del old["eval"]["eval_100@official"]["end"]["verdicts"], old["eval"]["eval_100@official"]["end"]["turn_ids"]
    del old["eval"]["eval_100@official"]["end"]["by_domain"]
    sweep.write_json_atomic(path, old)
    tampered = tmp_path / "results" / "s" / "graduated_seed0.json"
    other = json.loads(tampered.read_text())
    del other["eval"]["eval_100@official"]["end"]["verdicts"]
    other["eval"]["eval_100@official"]["end"]["turn_accuracy"] = 0.5  # no longer what the run's files say
    sweep.write_json_atomic(tampered, other)
    assert sweep.add_missing_details(settings) == ["graduated_seed1"]
    assert json.loads(path.read_text()) == fresh  # restored exactly; nothing else changed
    assert "verdicts" not in json.loads(tampered.read_text())["eval"]["eval_100@official"]["end"]
    assert sweep.add_missing_details(settings) == []  # idempotent


def test_a_resumed_run_keeps_its_finished_evaluations(tmp_path, fake_commands, monkeypatch):
    """A run interrupted in its second evaluation goes on there: training resumes (the trainer skips what it
    saved), the first evaluation (same command, same checkpoint) is not redone. A new checkpoint redoes it."""
    settings = _settings(tmp_path, arms=(), zero_shot=True, eval_sources=("eval_100", "synthetic:test"))
    monkeypatch.setenv("FAIL_ON", "zero_shot:eval-synthetic_test")
    assert sweep.run_study(settings, fake_commands, log=_quiet)["zero_shot"].startswith("failed")
    monkeypatch.delenv("FAIL_ON")
    lines: list[str] = []
    assert sweep.run_study(settings, fake_commands, log=lines.append)["zero_shot"] == "done"
    assert _ledger(tmp_path) == ["zero_shot:eval-eval_100", "zero_shot:eval-synthetic_test",
                                 "zero_shot:eval-synthetic_test"]
    assert any("eval-eval_100 done before" in line for line in lines)
    result = json.loads((tmp_path / "results" / "s" / "zero_shot.json").read_text())
    assert result["attempts"] == {"eval-eval_100": 1, "eval-synthetic_test": 2}  # the ledger keeps every attempt

    (tmp_path / "results" / "s" / "zero_shot.json").unlink()
    (tmp_path / "runs" / "s" / "zero_shot" / "work" / "checkpoints" / "7").mkdir(parents=True)  # a newer model
    sweep.run_study(settings, fake_commands, log=_quiet)
    assert _ledger(tmp_path)[3:] == ["zero_shot:eval-eval_100", "zero_shot:eval-synthetic_test"]


def test_turn_accuracy_by_domain_over_seeds_hand_computed():
    def run(kind, seed, counts):
        by_domain = {d: {"right": k, "turns": n} for d, (k, n) in counts.items()}
        return {"kind": kind, "name": f"{kind}_seed{seed}", "arm": "graduated" if kind == "grpo" else kind,
                "seed": seed, "eval": {"x": {"start": None, "end": {"turn_accuracy": 0.0, "turns": 3,
                                                                      "by_domain": by_domain}}}}
    results = [run("sft", None, {"Hotels": (0, 2), "Flights": (1, 1)}),
               run("grpo", 0, {"Hotels": (1, 2), "Flights": (0, 1)}),
               run("grpo", 1, {"Hotels": (2, 2), "Flights": (1, 1)})]
    domains = sweep.summarize(results)["sources"]["x"]["by_domain"]
    hotels = domains["graduated"]["Hotels"]
    # seeds 0.5 and 1.0: mean 0.75, s = 0.3536, half width t(0.975, 1) * s / sqrt(2) = 12.706 * 0.25
    assert hotels["accuracy"]["mean"] == pytest.approx(0.75) and hotels["turns"] == 2
    assert hotels["accuracy"]["half_width"] == pytest.approx(12.7062 * 0.25, rel=1e-4)
    flights = domains["sft"]["Flights"]  # one run: its count and Wilson interval
    assert flights["accuracy"] == {"mean": 1.0, "half_width": None, "n": 1} and (flights["right"], flights["turns"]) == (1, 1)
    # Wilson, z = 1.96: 1/1 -> low (1 + z²/2 - z·sqrt(z²/4)) / (1 + z²) = 1 / (1 + z²); 0/2 -> high z² / (2 + z²)
    assert flights["wilson"] == pytest.approx([1 / (1 + 1.959964 ** 2), 1.0], abs=1e-6)
    assert domains["sft"]["Hotels"]["wilson"] == pytest.approx([0.0, 1.959964 ** 2 / (2 + 1.959964 ** 2)], abs=1e-6)
    assert "wilson" not in hotels  # seeds: the t interval of their accuracies
    report = sweep.markdown_report(sweep.summarize(results))
    assert "| run | Flights (1 turns) | Hotels (2 turns) |" in report
    assert "| graduated | 50.0 ± 635.3 (n=2) | 75.0 ± 317.7 (n=2) |" in report
    assert "| SFT start | 100.0 (1/1; 20.7–100.0) | 0.0 (0/2; 0.0–65.8) |" in report
    results.append(run("grpo", 2, {"Hotels": (1, 3)}))  # other turns: no common count
    assert sweep.summarize(results)["sources"]["x"]["by_domain"]["graduated"]["Hotels"]["turns"] is None

"""The game registry (toolrl.games): one object per game drives training's rollout and evaluation.

* every registered game is played through its registration: the trainer's rollout step calls the
  rollout game's `rollout`, `Evaluation` calls the evaluation game's `evaluate`, on real samples;
  for `turn` (trainable and evaluable) the rollout and the evaluation see the same prompt tokens at
  every round, rounds after prose, an unparseable block and an error included;
* no module dispatches on a game's name (`== "turn"`, `== "episode"`, `== "official"`, ...) outside
  the registry;
* the old config names (`rollout.mode`, `eval.protocol`, the value `official`) still work, with one
  warning line; result files written with `"protocol": "official"` still read.
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from toolrl import games
from toolrl.data.golden import load_samples
from toolrl.eval.protocol import build_turn_tasks
from toolrl.policy.runtime import Generation, Policy, SamplingSettings
from toolrl.rl.config import ConfigError, base_config, validate

import fixtures_chat
from test_prompt_agreement import RENDER, _ScriptedPolicy

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def matcher(data_dir):
    from toolrl.eval.evaluator import make_matcher

    return make_matcher(data_dir)


@pytest.fixture(scope="module")
def chat_policy():
    """A Policy without a model (prompts and parsing only), Qwen2.5-style template built offline."""
    from toolrl.models.config import ModelConfig

    return Policy(None, fixtures_chat.qwen_style_tokenizer(), ModelConfig.tiny(eos_token_ids=(), pad_token_id=None),
                  name="qwen_style")


def _spy(monkeypatch, name: str, hook: str) -> list:
    """Replaces the registered game's `hook` by a wrapper that records its calls; returns the record."""
    game = games.get(name)
    calls: list = []
    inner = getattr(game, hook)

    def spy(*args, **kwargs):
        calls.append(args)
        return inner(*args, **kwargs)

    monkeypatch.setitem(games._GAMES, name, dataclasses.replace(game, **{hook: spy}))
    return calls


def _trainer(config, policy, env, tasks, matcher, tmp_path):
    from toolrl.rl.fit import FitReport
    from toolrl.rl.trainer import Trainer, TrainingData

    config.workdir = str(tmp_path / "work")
    empty = FitReport("none", [], 0, {}, {})
    data = TrainingData(list(tasks), [], empty, empty)
    return Trainer(config, policy, env, data, None, reward_fn=lambda batch: None, matcher=matcher)


class _Answers(Policy):
    """A Policy without a model whose every turn is the final answer "Done." (no call)."""

    def __init__(self, base: Policy):
        super().__init__(None, base.tokenizer, base.model_config, name="answers")

    def generate(self, prompts, key, settings, group_size=1):
        rows = [self.chat.encode("Done.") + [self.chat.end_id] for _ in prompts]
        return Generation(rows, [np.zeros(len(r), np.float32) for r in rows], np.ones(len(rows), bool), 0.0)


def test_the_registry_declares_each_game():
    assert games.registered_games() == ("benchmark", "episode", "turn")
    assert games.registered_games(trainable=True) == ("episode", "turn")
    assert games.registered_games(evaluable=True) == ("benchmark", "turn")
    # Reward compatibility is derived from the reward families' input kinds, not written by hand.
    assert games.get("turn").reward_families() == ("turn",)
    assert games.get("episode").reward_families() == ("episode", "paper")
    assert games.get("benchmark").reward_families() == ()
    assert games.get("official") is games.get("benchmark")  # the old name
    assert (games.get("turn").unit, games.get("benchmark").unit) == ("turns", "samples")
    assert (games.get("turn").headline_bucket, games.get("benchmark").headline_bucket) == ("complete", "all")
    with pytest.raises(ValueError, match="rollout.game='benchmark' is not a trainable game"):
        games.get("benchmark", field="rollout.game", trainable=True)


def test_episode_game_is_the_trainers_rollout(monkeypatch, tmp_path, data_dir, booking_env, chat_policy):
    calls = _spy(monkeypatch, "episode", "rollout")
    config = base_config()
    config.rollout.game, config.rollout.group_size, config.rollout.prompts_per_step = "episode", 2, 2
    config.rollout.max_seq_len, config.rollout.pad_multiple = 20_000, 8
    samples = load_samples("bfcl_training", data_dir, max_samples=2, max_distractors=1)
    trainer = _trainer(config, _Answers(chat_policy), booking_env, samples, None, tmp_path)
    assert trainer.game is games.get("episode")
    batch, tasks = trainer._rollout(jax.random.key(0))
    assert len(calls) == 1 and calls[0][0] == tasks and len(batch.rows) == 4
    assert [type(x).__name__ for x in batch.inputs] == ["EpisodeInput"] * 4


def test_turn_game_drives_rollout_and_evaluation_with_the_same_prompts(monkeypatch, tmp_path, chat_policy,
                                                                       matcher):
    """The trainer's rollout step and the evaluator both play the registered `turn` game; every round's
    prompt (after prose, an unparseable block, an error) is the same tokens in both."""
    rolled, evaluated = _spy(monkeypatch, "turn", "rollout"), _spy(monkeypatch, "turn", "evaluate")
    samples = load_samples("bfcl_training", max_samples=80, max_distractors=1)
    pairs = [(s, t) for s in samples for t in build_turn_tasks(s) if t.optional and t.required and t.complete][:6]
    tasks = [t for _, t in pairs]
    scripted = _ScriptedPolicy(chat_policy, tasks)
    config = base_config()
    config.rollout.game, config.rollout.group_size, config.rollout.prompts_per_step = "turn", 1, 6
    config.rollout.max_turns, config.rollout.max_new_tokens, config.rollout.max_seq_len = 3, 256, 20_000
    config.rollout.pad_multiple, config.data.tool_view = 8, "compact"
    trainer = _trainer(config, scripted, type("Env", (), {"render": staticmethod(RENDER)})(), pairs, matcher, tmp_path)
    scripted.start("compact")
    trainer.rl_stream.shuffle = False  # the step's tasks in order, as the evaluator runs them
    batch, _ = trainer._rollout(jax.random.key(0))
    training = dict(scripted.prompts)
    scripted.start("compact")
    eval_policy = scripted.as_eval_policy(tool_view="compact", max_new_tokens=256, batch_size=4, pad_multiple=8)
    game = games.eval_game(config)
    results = game.evaluate(game.eval_units(samples, tasks, True), eval_policy, matcher, max_rounds=3,
                            batch_size=4, render=RENDER)
    evaluation = dict(scripted.prompts)
    assert len(rolled) == 1 and len(evaluated) == 1 and trainer.game is game
    assert set(training) == set(evaluation) == {(i, r) for i in range(6) for r in (0, 1)}
    for key in training:
        assert training[key] == evaluation[key], key
    assert [r.rounds for r in results] == [2] * 6 and batch.n_turns.tolist() == [2] * 6


@pytest.mark.parametrize("name", ["turn", "benchmark", "official"])
def test_evaluation_plays_the_configured_game(monkeypatch, name, data_dir):
    from toolrl.eval.evaluator import Evaluation
    from toolrl.eval.official import official_golden_policy
    from toolrl.eval.policies import golden_policy

    game = games.get(name)
    calls = _spy(monkeypatch, game.name, "evaluate")
    config = base_config()
    config.data.data_dir = str(data_dir)
    config.eval.source, config.eval.max_samples, config.eval.response_equivalence = "eval_100", 4, False
    config.eval.game = name
    with pytest.warns(FutureWarning) if name == "official" else _nothing():
        validate(config)
    evaluation = Evaluation(config)
    assert evaluation.game is games.get(name)
    policy = official_golden_policy(evaluation.samples) if game.unit == "samples" else golden_policy(evaluation.samples)
    report = evaluation.run(policy)
    assert len(calls) == 1 and report.protocol == game.report_name and report.game is games.get(name)
    assert report.overall("all").success_rate == 1.0
    written = report.to_json()
    assert written["game"] == game.name and len(written[game.unit]) == len(report.results)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# ----------------------------------------------------------------------------- no name dispatch

# A comparison of a string with a game's name. Rewards' `paper_compat == "official"` (the authors'
# reward scorer) and reward input kinds (toolrl/rewards) are other concepts; so is a cache source of
# kind "benchmark" (toolrl/env/cache.py), which is why the game "benchmark" is not searched for.
DISPATCH = re.compile(r"""[!=]= *["'](turn|episode|official)["']""")


def test_no_game_name_dispatch_outside_the_registry():
    found = []
    for package in ("toolrl", "experiments"):
        for path in sorted((REPO / package).rglob("*.py")):
            relative = path.relative_to(REPO).as_posix()
            if relative == "toolrl/games.py" or relative.startswith("toolrl/rewards/"):
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if DISPATCH.search(line) and "compat" not in line:
                    found.append(f"{relative}:{number}: {line.strip()}")
    assert not found, "dispatch on a game's name outside toolrl/games.py:\n" + "\n".join(found)


# ----------------------------------------------------------------------------- old names


def test_old_config_names_map_onto_the_new_ones_with_one_warning():
    config = base_config()
    assert (config.rollout.game, config.rollout.mode, config.eval.game, config.eval.protocol) == \
        ("episode", "", "turn", "")
    config.rollout.mode, config.reward.family, config.eval.protocol = "turn", "turn", "official"
    with pytest.warns(FutureWarning) as record:
        validate(config)
    assert [str(w.message) for w in record] == ["rollout.mode is deprecated: use rollout.game='turn'",
                                                "eval.protocol is deprecated: use eval.game='benchmark'"]
    assert (config.rollout.game, config.rollout.mode, config.eval.game, config.eval.protocol) == \
        ("turn", "", "benchmark", "")
    validate(config)  # canonical now: no warning, nothing changes
    config.eval.game = "official"
    with pytest.warns(FutureWarning, match="eval.game='official' is an old name: use 'benchmark'"):
        validate(config)
    assert config.eval.game == "benchmark"
    # Both names set to different games: refused, naming both.
    config.rollout.mode = "episode"
    with pytest.raises(ConfigError, match="rollout.mode='episode' .deprecated. and rollout.game='turn'"):
        validate(config)
    # A saved config of an earlier run (no rollout.game / eval.game) still names its games.
    old = base_config()
    del old.rollout["game"], old.eval["game"]
    old.rollout.mode, old.eval.protocol = "turn", "official"
    assert games.rollout_game(old) is games.get("turn") and games.eval_game(old) is games.get("benchmark")


def test_reward_compatibility_is_derived_from_the_registries():
    config = base_config()
    config.rollout.game = "turn"
    with pytest.raises(ConfigError, match="rollout.game='turn' needs a turn reward: reward.family must be 'turn'"):
        validate(config)
    config = base_config()
    config.reward.family = "turn"
    with pytest.raises(ConfigError, match="needs an episode reward: reward.family must be 'episode' or 'paper'"):
        validate(config)


def test_the_old_command_line_flag_still_works(tmp_path):
    """`--config.rollout.mode=turn` (the old name) runs the turn game, with one warning line."""
    out = subprocess.run([sys.executable, "-m", "toolrl.main", f"--config={REPO / 'configs' / 'tiny.py'}",
                          "--config.mode=check", "--config.rollout.mode=turn", "--config.reward.family=turn"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    warning = [line for line in out.stderr.splitlines() if "deprecated" in line]
    assert warning == ["config:0: FutureWarning: rollout.mode is deprecated: use rollout.game='turn'"]
    assert "scored turns:" in out.stdout  # the turn game's fit report


def test_result_files_naming_the_official_protocol_still_read(tmp_path):
    """A report written before games had names (`"protocol": "official"`, no `"game"`) reads as the
    benchmark game's: its unit, headline bucket and table."""
    from experiments.eval_start import summarize

    record = {"sample_id": "s1", "domain": "Hotels", "success": True, "outcome": "success", "call_errors": [],
              "texts": ["x"]}
    results = {"protocol": "official", "settings": {"source": "eval_100"}, "samples": [record]}
    summary = summarize("eval_100_official", results, 1.0)["summary"]
    assert (summary["unit"], summary["samples"], summary["right"]) == ("samples", 1, 1)
    assert json.loads(json.dumps(results))["protocol"] == "official"
    assert games.get(results["protocol"]).unit == "samples"

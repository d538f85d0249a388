"""Config validation and variants, data order, metrics truncation, the fit report, and a rollout with a
scripted policy."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import pytest

from toolrl.data.golden import load_samples
from toolrl.env.booking import ViewPolicy
from toolrl.rl.config import ConfigError, config_from_file, validate, validate_for_devices
from toolrl.rl.metrics import MetricsLog, read_metrics
from toolrl.rl.trainer import TaskStream

REPO = Path(__file__).resolve().parents[1]
RENDER = ViewPolicy(max_list_items=2, max_chars=120).render


def _config(name: str, arg: str | None = None):
    import runpy

    return runpy.run_path(str(REPO / "configs" / name))["get_config"](*([arg] if arg is not None else []))


@pytest.mark.parametrize("name,arg", [("grpo.py", None), ("grpo.py", "turn"), ("grpo.py", "atomic"),
                                      ("grpo.py", "turn,binary"), ("grpo.py", "dr_grpo,kl"),
                                      ("grpo.py", "official"), ("sft.py", None), ("tiny.py", None)])
def test_shipped_configs_and_variants_validate(name, arg):
    validate(_config(name, arg))


def test_variants_change_only_their_fields_and_the_workdir():
    base, atomic = _config("grpo.py"), _config("grpo.py", "atomic")
    assert atomic.reward.mode == "atomic" and atomic.workdir != base.workdir
    atomic.reward.mode, atomic.workdir, atomic.wandb.run_name = base.reward.mode, base.workdir, base.wandb.run_name
    assert atomic.to_dict() == base.to_dict()
    with pytest.raises(ValueError, match="unknown config variant 'nope'"):
        _config("grpo.py", "nope")


@pytest.mark.parametrize("field,value,message", [
    ("rollout.group_size", 1, "group_size"),
    ("rollout.mode", "turn", "reward.family must be 'turn'"),
    ("reward.family", "turn", "needs an episode reward"),
    ("reward.family", "nosuch", "must be one of ('episode', 'paper', 'turn')"),
    ("reward.mode", "nosuch", "reward.mode"),
    ("grpo.aggregation", "median", "grpo.aggregation"),
    ("grpo.epsilon_low", 1.5, "epsilon_low"),
    ("rollout.max_new_tokens", 4096, "max_seq_len"),
    ("rollout.top_p", 0.0, "top_p"),
    ("data.max_samples", -5, "data.max_samples"),
    ("mesh.fsdp", 3, "divide over mesh"),
    ("eval.max_rounds", 0, "eval.max_rounds"),
])
def test_validate_rejects_with_field_names(field, value, message):
    config = config_from_file(REPO / "configs" / "tiny.py")
    section, key = field.split(".")
    config[section][key] = value
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate(config)


def test_validate_for_devices_resolves_mesh():
    config = config_from_file(REPO / "configs" / "tiny.py")
    config.mesh.data, config.mesh.fsdp, config.mesh.tensor = 2, -1, 1
    config.sft.batch_size = 8
    assert validate_for_devices(config, 8) == (2, 4, 1)
    with pytest.raises(ConfigError, match="does not divide"):
        validate_for_devices(config, 3)


def test_task_stream_is_reproducible(data_dir):
    samples = load_samples("bfcl_training", data_dir, max_samples=5)
    a, b = TaskStream(samples, seed=3), TaskStream(samples, seed=3)
    ids = [s.sample_id for s in a.take(0, 12)]
    assert ids == [s.sample_id for s in b.take(0, 12)]
    assert sorted(ids[:5]) == sorted(s.sample_id for s in samples)  # one epoch = a permutation
    assert [s.sample_id for s in a.take(7, 5)] == ids[7:12]  # resuming at a position continues the order


def test_metrics_truncate_drops_later_and_torn_records(tmp_path):
    log = MetricsLog(tmp_path / "m.jsonl")
    for step in range(1, 6):
        log.write({"step": step, "x": np.float32(step)})
    log.close()
    with open(tmp_path / "m.jsonl", "a") as f:
        f.write('{"step": 6, "x"')  # killed mid-write
    assert log.truncate_after(3) == 3
    assert [r["step"] for r in read_metrics(tmp_path / "m.jsonl")] == [1, 2, 3]


# ----------------------------------------------------------------------------- fit report


@pytest.fixture(scope="module")
def tiny_policy():
    from toolrl.policy.runtime import Policy

    return Policy.load(preset="tiny")


def test_fit_report_counts_and_names_the_budget_fields(tiny_policy, data_dir):
    from toolrl.rl.trainer import load_training_samples, prepare_data

    config = config_from_file(REPO / "configs" / "tiny.py")
    samples = load_training_samples(config)
    data = prepare_data(config, tiny_policy, samples, RENDER)
    # Two of the four need an id that a 120-character view cuts (the others fit every budget).
    assert data.rl_fit.total == 4 and data.rl_fit.line() == "fit: 2/4 tasks (50%)"
    assert dict(data.rl_fit.exceeded) == {"hidden_values": 2}
    config.rollout.max_new_tokens, config.rollout.max_seq_len = 64, 900
    with pytest.raises(ConfigError, match=r"rollout.max_new_tokens \(4 tasks\).*rollout.max_seq_len") as err:
        prepare_data(config, tiny_policy, samples, RENDER)
    assert "data.min_fit=0.5" in str(err.value)
    report = prepare_data(config, tiny_policy, samples, RENDER, check=False).rl_fit
    assert report.fit == 0 and report.exceeded["turn_tokens"] == 4


def test_hidden_values_are_those_the_view_cuts():
    """A value copied from an earlier response counts as hidden exactly when the rendered response
    (and the query / tool list) lacks it; short strings, small numbers and user-given values never do."""
    from toolrl.data.golden import GoldenCall
    from toolrl.env.booking import SALIENT_KEYS, ViewPolicy
    from toolrl.rl.rollout import hidden_values

    response = {"status": True, "data": {"products": [{"description": "x" * 300, "slug": "pr-far-away-slug"}],
                                         "destinations": [{"id": "ZGVzdGluYXRpb24=", "count": 12345}]}}
    call = GoldenCall(0, "Get", {"slug": "pr-far-away-slug", "id": "ZGVzdGluYXRpb24=", "n": 2, "q": "Paris"})
    plain = ViewPolicy(max_list_items=2, max_chars=120).render
    assert hidden_values([call], [response], "Paris", plain) == 2  # both ids sit past the cut
    assert hidden_values([call], [], "Paris", plain) == 0  # nothing earlier: values are the user's
    assert hidden_values([call], [response], "Paris", ViewPolicy(max_chars=None).render) == 0
    salient = ViewPolicy(max_list_items=2, max_chars=120, keep_keys=SALIENT_KEYS).render
    shown = salient(response)
    assert "pr-far-away-slug" in shown and "ZGVzdGluYXRpb24=" in shown and "xxxx" not in shown
    assert hidden_values([call], [response], "Paris", salient) == 0
    # An id the user gave (in the query) is not hidden whatever the view.
    assert hidden_values([call], [response], "Paris pr-far-away-slug ZGVzdGluYXRpb24=", plain) == 0
    big = GoldenCall(1, "Get", {"hotel_id": 12345})
    assert hidden_values([big], [response], "", plain) == 1 and hidden_values([big], [response], "", salient) == 1


def test_turn_budget_counts_rounds_of_merged_free_turns(tiny_policy, data_dir):
    from toolrl.eval.protocol import build_turn_tasks
    from toolrl.rl.rollout import turn_budget

    samples = load_samples("bfcl_training", data_dir)
    merged = next(t for s in samples for t in build_turn_tasks(s) if len(t.subturns) > 1)
    assert turn_budget(merged, tiny_policy, "signature", RENDER).turns == len(merged.subturns)


# ----------------------------------------------------------------------------- rollouts


class ScriptedPolicy:
    """Wraps a Policy; `generate` returns scripted turns (the golden ones) instead of sampling."""

    def __init__(self, policy, script):
        self.inner, self.script, self.calls = policy, script, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def generate(self, prompts, key, settings, group_size=1):
        from toolrl.policy.runtime import Generation

        out = self.script[self.calls]
        self.calls += 1
        return Generation([list(out) for _ in prompts], [np.zeros(len(out), np.float32) for _ in prompts],
                          np.ones(len(prompts), bool), 0.0)


def test_episode_rollout_with_scripted_policy(tiny_policy, booking_env, data_dir):
    """A policy that emits the golden turns: masks, environment segments and a perfect reward."""
    from toolrl.eval.protocol import turn_messages
    from toolrl.policy.runtime import SamplingSettings
    from toolrl.rewards.registry import score_episodes
    from toolrl.rl.rollout import FINAL_ANSWER, rollout_episodes

    sample = next(s for s in load_samples("bfcl_training", data_dir) if len(s.turns) == 2)
    chat = tiny_policy.chat
    script = [chat.assistant_ids(turn_messages([t])[0]) for t in sample.turns] + [chat.final_ids(FINAL_ANSWER)]
    policy = ScriptedPolicy(tiny_policy, script)
    batch = rollout_episodes([sample], 2, policy, booking_env, jax.random.PRNGKey(0),
                             SamplingSettings(max_new_tokens=1000), max_turns=3, max_seq_len=20000,
                             tool_view="signature")
    assert policy.calls == 3 and list(batch.n_turns) == [3, 3] and not batch.truncated.any()
    ids, flags = batch.rows[0]
    assert [t for t, f in zip(ids, flags) if f] == [t for turn in script for t in turn]  # the policy's tokens
    environment = chat.decode([t for t, f in zip(ids, flags) if not f])
    assert "<tool_response>" in environment  # responses are in the context, masked out of the loss
    scored = score_episodes("episode", "graduated", batch.inputs)
    np.testing.assert_allclose(scored.reward, [1.0, 1.0], atol=1e-6)


def test_turn_rollout_runs_the_evaluator_rounds(tiny_policy, data_dir):
    """Turn mode: a scored turn whose first golden subturn is free lookups takes two rounds, the second
    after the golden responses, and the golden calls score 1 under the turn reward."""
    from toolrl.eval.evaluator import make_matcher
    from toolrl.eval.protocol import build_turn_tasks, turn_messages
    from toolrl.policy.runtime import SamplingSettings
    from toolrl.rewards.registry import score_turns
    from toolrl.rl.rollout import rollout_turns

    samples = load_samples("bfcl_training", data_dir)
    sample, task = next((s, t) for s in samples for t in build_turn_tasks(s) if len(t.subturns) == 2 and t.complete)
    chat = tiny_policy.chat
    script = [chat.assistant_ids(turn_messages([sub])[0]) for sub in task.subturns]
    policy = ScriptedPolicy(tiny_policy, script)
    batch = rollout_turns([(sample, task)], 2, policy, make_matcher(data_dir), jax.random.PRNGKey(0),
                          SamplingSettings(max_new_tokens=2000), max_rounds=3, max_seq_len=20000,
                          tool_view="signature", render=RENDER)
    assert policy.calls == 2 and list(batch.n_turns) == [2, 2]
    np.testing.assert_allclose(score_turns("turn", "graduated", batch.inputs).reward, [1.0, 1.0], atol=1e-6)


def test_rows_never_exceed_max_seq_len(tiny_policy, booking_env, data_dir):
    from toolrl.eval.protocol import turn_messages
    from toolrl.policy.runtime import SamplingSettings
    from toolrl.rl.rollout import rollout_episodes

    sample = next(s for s in load_samples("bfcl_training", data_dir) if len(s.turns) >= 2)
    chat = tiny_policy.chat
    script = [chat.assistant_ids(turn_messages([t])[0]) for t in sample.turns]
    prompt = len(tiny_policy.prompt_ids([{"role": "user", "content": sample.query}], sample.tools, "signature"))
    limit = prompt + len(script[0]) + 1000 + 20  # room for the first turn, not for its responses + a turn
    batch = rollout_episodes([sample], 2, ScriptedPolicy(tiny_policy, script), booking_env, jax.random.PRNGKey(0),
                             SamplingSettings(max_new_tokens=1000), max_turns=3, max_seq_len=limit,
                             tool_view="signature")
    assert batch.truncated.all() and all(len(ids) <= limit for ids, _ in batch.rows)


def test_response_view_follows_the_config_and_old_runs_keep_the_plain_cut():
    """data.response_keep="salient" (the default) keeps ids past a cut; a run saved before the field
    existed (no data.response_keep) is evaluated with the plain cut it was trained on."""
    from toolrl.eval.evaluator import response_view

    config = config_from_file(REPO / "configs" / "grpo.py")
    # a description longer than the view, the id after it
    response = {"data": {"items": [{"description": "d" * (2 * config.data.response_max_chars), "hotel_id": 987654}]}}
    assert config.data.response_keep == "salient"
    assert "987654" in response_view(config).render(response)
    config.data.response_keep = "all"
    assert "987654" not in response_view(config).render(response)
    old = config_from_file(REPO / "configs" / "grpo.py")
    del old.data["response_keep"]
    assert response_view(old).render(response) == response_view(config).render(response)

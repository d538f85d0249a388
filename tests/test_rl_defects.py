"""Regression tests for defects found by review of the GRPO loss, steps, rewards, fit check and the
official replay: each test failed before its fix."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from toolrl.rl import grpo


# ----------------------------------------------------------------------------- 1: masked non-finite terms


def _loss_and_grad(logp, old, ref, adv, mask, cfg):
    def f(lp):
        return grpo.grpo_loss(lp, old, ref, adv, mask, cfg)

    (loss, metrics), grad = jax.value_and_grad(f, has_aux=True)(logp)
    return loss, metrics, grad


@pytest.mark.parametrize("aggregation", ["token_mean", "sequence_mean", "constant"])
@pytest.mark.parametrize("bad", [-95.0, -jnp.inf])
def test_masked_extreme_logprob_leaves_loss_and_gradient_finite(aggregation, bad):
    """A masked position whose policy log-prob is -95 (k3 KL overflows: exp(95) = inf) or -inf: the
    loss, its metrics and its gradient stay finite and equal those without that position."""
    rng = np.random.default_rng(0)
    logp = jnp.asarray(rng.normal(-2.0, 0.5, (2, 5)), jnp.float32)
    ref = logp + jnp.asarray(rng.normal(0.0, 0.1, (2, 5)), jnp.float32)
    old = logp + jnp.asarray(rng.normal(0.0, 0.1, (2, 5)), jnp.float32)
    adv = jnp.asarray([0.7, -1.1], jnp.float32)
    mask = jnp.ones((2, 5), bool).at[0, 4].set(False)
    cfg = grpo.LossConfig(beta=0.04, aggregation=aggregation, constant_tokens=10)
    clean = _loss_and_grad(logp, old, ref, adv, mask, cfg)
    bad_logp = logp.at[0, 4].set(bad)
    bad_old = old.at[0, 4].set(bad)
    loss, metrics, grad = _loss_and_grad(bad_logp, bad_old, ref, adv, mask, cfg)
    assert np.isfinite(float(loss)), float(loss)
    assert np.all(np.isfinite(np.asarray(grad)))
    for k, v in metrics.items():
        assert np.isfinite(float(v)), k
    np.testing.assert_allclose(float(loss), float(clean[0]), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(grad), np.asarray(clean[2]), rtol=1e-6, atol=1e-9)
    for k in clean[1]:
        np.testing.assert_allclose(float(metrics[k]), float(clean[1][k]), rtol=1e-6, err_msg=k)


# ----------------------------------------------------------------------------- 2: pg_loss under micro-batching

import optax  # noqa: E402
from flax import nnx  # noqa: E402

from toolrl.models.config import ModelConfig  # noqa: E402
from toolrl.rl import steps  # noqa: E402

TINY = ModelConfig.tiny()


@pytest.fixture(scope="module")
def tiny_model():
    from model_fixtures import random_model

    return random_model(TINY, 0)


def _plain_batch(rows, adv, n_rows):
    from toolrl.rl.trainer import pack_rows

    width = max(len(ids) for ids, _ in rows)
    pad = n_rows - len(rows)
    tokens, attn, loss = pack_rows(list(rows) + [([0], [0])] * pad, 0, width)
    return {"tokens": jnp.asarray(tokens), "attention_mask": jnp.asarray(attn), "loss_mask": jnp.asarray(loss),
            "advantages": jnp.asarray(np.concatenate([adv, np.zeros(pad, np.float32)])),
            "valid": jnp.asarray(np.arange(n_rows) < len(rows))}


def _run_plain_step(model, batch, cfg, micro, old_logp=None):
    model = nnx.clone(model)
    opt = nnx.Optimizer(model, optax.sgd(0.0), wrt=nnx.Param)
    gd, st = nnx.split((model, opt))
    st = jax.tree.map(jnp.copy, st)
    step = steps.make_grpo_step(gd, cfg, None, st, old_logp is not None, micro_batches=micro, temperature=1.0)
    b = dict(batch) if old_logp is None else dict(batch, old_logp=old_logp)
    return step(st, b)[1]


def _rows(seed=3):
    from test_rl_fast_step import synthetic_rows

    rows, adv = synthetic_rows(TINY.vocab_size, seed=seed)
    return rows + [rows[0]], np.concatenate([adv, adv[:1]]).astype(np.float32)  # 12 rows: / 1, 2, 4


def test_pg_loss_does_not_depend_on_micro_batches(tiny_model):
    rows, adv = _rows()
    batch = _plain_batch(rows, adv, 12)
    cfg = grpo.LossConfig(beta=0.0)
    metrics = {m: _run_plain_step(tiny_model, batch, cfg, m) for m in (1, 2, 4)}
    for m in (2, 4):
        for key in ("pg_loss", "loss", "grad_norm"):
            np.testing.assert_allclose(float(metrics[m][key]), float(metrics[1][key]), rtol=1e-5, atol=1e-7,
                                       err_msg=f"{key} at {m} micro-batches")
    assert abs(float(metrics[1]["pg_loss"])) > 1e-4  # not trivially equal


# ----------------------------------------------------------------------------- 3: policy entropy


def _packed(rows, adv, shared):
    from test_rl_fast_step import packed

    out = packed(rows, adv, 0, shared)
    return out[0] if shared else out


def _run_packed_step(model, batch, cfg, micro, shared):
    model = nnx.clone(model)
    opt = nnx.Optimizer(model, optax.sgd(0.0), wrt=nnx.Param)
    gd, st = nnx.split((model, opt))
    st = jax.tree.map(jnp.copy, st)
    return steps.make_packed_grpo_step(gd, cfg, None, st, False, micro, 1.0, shared)(st, dict(batch))[1]


def test_entropy_of_uniform_logits_is_log_vocab(tiny_model):
    """A model whose LM head is zero has uniform next-token distributions: entropy = log V on the
    plain and both packed paths."""
    model = nnx.clone(tiny_model)
    if TINY.tie_word_embeddings:
        model.embed[...] = jnp.zeros_like(model.embed[...])
    else:
        model.lm_head[...] = jnp.zeros_like(model.lm_head[...])
    rows, adv = _rows()
    cfg = grpo.LossConfig(beta=0.0)
    want = float(np.log(TINY.vocab_size))
    got = {"plain": _run_plain_step(model, _plain_batch(rows, adv, 12), cfg, 1)["entropy"]}
    for shared in (False, True):
        got[f"packed shared={shared}"] = _run_packed_step(model, _packed(rows, adv, shared), cfg, 1, shared)["entropy"]
    for name, value in got.items():
        np.testing.assert_allclose(float(value), want, rtol=1e-5, err_msg=name)


def test_entropy_plain_and_packed_paths_agree(tiny_model):
    """Random model: the entropy metric is the loss-token mean of the full-logit entropy, equal on the
    plain path (1 and 4 micro-batches) and the packed paths."""
    rows, adv = _rows()
    cfg = grpo.LossConfig(beta=0.0)
    batch = _plain_batch(rows, adv, 12)
    from toolrl.models.decoder import left_pad_positions

    logits, _ = tiny_model(batch["tokens"], left_pad_positions(batch["attention_mask"]),
                           batch["attention_mask"])
    per_pos = np.asarray(jax.scipy.special.entr(jax.nn.softmax(logits[:, :-1], -1)).sum(-1))
    mask = np.asarray(batch["loss_mask"][:, 1:] & batch["valid"][:, None])
    want = float(per_pos[mask].mean())
    assert want < 0.99 * np.log(TINY.vocab_size)  # not the uniform case
    got = {f"plain micro={m}": _run_plain_step(tiny_model, batch, cfg, m)["entropy"] for m in (1, 4)}
    for shared in (False, True):
        got[f"packed shared={shared}"] = _run_packed_step(tiny_model, _packed(rows, adv, shared), cfg, 1,
                                                          shared)["entropy"]
    for name, value in got.items():
        np.testing.assert_allclose(float(value), want, rtol=1e-5, err_msg=name)


# ----------------------------------------------------------------------------- 6: the fit check's length rule


@pytest.fixture(scope="module")
def tiny_policy():
    from toolrl.policy.runtime import Policy

    return Policy.load(preset="tiny")


def test_fit_uses_the_rollouts_length_rule(tiny_policy, data_dir):
    """A scored turn whose golden total fits max_seq_len exactly but whose last round starts past
    max_seq_len - max_new_tokens: the rollout of its golden turns is cut, so the fit report drops it."""
    from test_rl_infra import RENDER, ScriptedPolicy

    from toolrl.data.golden import load_samples
    from toolrl.eval.evaluator import make_matcher
    from toolrl.eval.protocol import build_turn_tasks, turn_messages
    from toolrl.policy.runtime import SamplingSettings
    from toolrl.rl.fit import fit_report
    from toolrl.rl.rollout import rollout_turns, turn_budget

    samples = load_samples("bfcl_training", data_dir)
    sample, task = next((s, t) for s in samples for t in build_turn_tasks(s) if len(t.subturns) == 2 and t.complete)
    need = turn_budget(task, tiny_policy, "signature", RENDER)
    max_seq_len, max_new_tokens = need.total, need.longest_turn + 1  # the old check: fits
    chat = tiny_policy.chat
    script = [chat.assistant_ids(turn_messages([sub], RENDER)[0]) for sub in task.subturns]
    batch = rollout_turns([(sample, task)], 1, ScriptedPolicy(tiny_policy, script), make_matcher(data_dir),
                          jax.random.PRNGKey(0), SamplingSettings(max_new_tokens=max_new_tokens), max_rounds=3,
                          max_seq_len=max_seq_len, tool_view="signature", render=RENDER)
    assert batch.truncated.all() and list(batch.n_turns) == [1]  # the golden turn cannot be rolled out
    report = fit_report("scored turns", [task], lambda t: turn_budget(t, tiny_policy, "signature", RENDER),
                        max_turns=3, max_new_tokens=max_new_tokens, max_seq_len=max_seq_len)
    assert report.fit == 0 and dict(report.exceeded) == {"turn_start": 1}
    assert "rollout.max_seq_len - rollout.max_new_tokens" in report.describe()
    # With one token less of max_new_tokens' slack the same task both rolls out and fits.
    room = max_seq_len - need.last_start
    ok = fit_report("scored turns", [task], lambda t: turn_budget(t, tiny_policy, "signature", RENDER),
                    max_turns=3, max_new_tokens=room, max_seq_len=max_seq_len)
    assert ok.fit == 1
    batch = rollout_turns([(sample, task)], 1, ScriptedPolicy(tiny_policy, script), make_matcher(data_dir),
                          jax.random.PRNGKey(0), SamplingSettings(max_new_tokens=room), max_rounds=3,
                          max_seq_len=max_seq_len, tool_view="signature", render=RENDER)
    assert not batch.truncated.any() and list(batch.n_turns) == [2]


# ----------------------------------------------------------------------------- 4: optional free lookups


def _turn_with_optional(data_dir):
    from toolrl.data.golden import load_samples
    from toolrl.eval.protocol import build_turn_tasks

    samples = load_samples("bfcl_training", data_dir)
    return next((s, t) for s in samples for t in build_turn_tasks(s) if t.optional and t.complete)


def test_turn_reward_does_not_charge_skipped_optional_lookups(data_dir):
    """The golden turn without its optional free lookups is right for the evaluator, and scores 1 for
    the graduated and binary turn reward (kernel and reference); with them it scores 1 too, and a
    wrong lookup still costs."""
    from toolrl.rewards import reference
    from toolrl.rewards.registry import score_turns
    from toolrl.rewards.types import PredictedCall
    from toolrl.rl.rollout import turn_reward_input

    sample, task = _turn_with_optional(data_dir)
    as_call = lambda c: PredictedCall(c.function, dict(c.arguments))  # noqa: E731
    without = turn_reward_input(sample, task, [as_call(c) for c in task.required])
    with_all = turn_reward_input(sample, task, [as_call(c) for c in task.golden])
    bad = task.optional[0]
    wrong = turn_reward_input(sample, task, [as_call(c) for c in task.required]
                              + [PredictedCall(bad.function, {"query": "nowhere at all"})])
    for mode in ("graduated", "binary"):
        got = score_turns("turn", mode, [without, with_all, wrong]).reward
        ref = [reference.turn_reward(t, mode).reward for t in (without, with_all, wrong)]
        np.testing.assert_allclose(np.asarray(got), ref, atol=1e-6)
        np.testing.assert_allclose(ref[:2], [1.0, 1.0], atol=1e-6, err_msg=mode)
        assert ref[2] < 1.0, mode


# ----------------------------------------------------------------------------- 5: episode orchestration credit


def _episode_scores(episodes, mode="graduated"):
    """(reference Score list, kernel rewards) for episodes, asserting they agree."""
    from toolrl.rewards import reference
    from toolrl.rewards.registry import score_episodes

    refs = [reference.episode_reward(e, mode) for e in episodes]
    out = score_episodes("episode", mode, list(episodes))
    np.testing.assert_allclose(np.asarray(out.reward), [r.reward for r in refs], atol=1e-6)
    for name in ("atomic", "orchestration"):
        np.testing.assert_allclose(np.asarray(out.levels[name]), [r.levels[name] for r in refs], atol=1e-6)
    return refs


def test_episode_orchestration_needs_executed_calls_and_repeats_cost():
    from toolrl.rewards.types import EpisodeInput, GoldenStep, PredictedCall

    ok = {"status": True, "data": [1]}
    failed = {"status": False, "message": "Invalid arguments"}
    steps = (GoldenStep("A", {"x": 1}), GoldenStep("B", {"id": "b1"}, depends_on=(0,)))
    a = PredictedCall("A", {"x": 1}, executed=True, response=ok)
    b = PredictedCall("B", {"id": "b1"}, executed=True, response=ok)
    b_garbage = PredictedCall("B", {"zzz": [1, 2]}, executed=True, response=failed)
    a_failed = PredictedCall("A", {"x": 1}, executed=True, response=failed)
    golden, garbage, one, twice, dep_failed = _episode_scores([
        EpisodeInput((a, b), steps), EpisodeInput((a, b_garbage), steps), EpisodeInput((a,), steps),
        EpisodeInput((a, a), steps), EpisodeInput((a_failed, b), steps)])
    assert golden.reward == 1.0
    # B failed to execute: no orchestration credit for it (was 1.0, reward 0.791).
    assert garbage.levels["orchestration"] == pytest.approx(0.5)
    # A failed: no credit for A, nor for B whose dependency failed (transitive).
    assert dep_failed.levels["orchestration"] == 0.0
    # A repeated is not free (A and A, A both scored 0.5).
    assert twice.reward < one.reward


# ----------------------------------------------------------------------------- 7: replaying recorded errors


def test_replayed_func_hallucination_record_fails_as_the_benchmark(tmp_path, data_dir, cache_path):
    """A result-file record that did every golden turn and then called again (func_hallucination: the
    runner returned before appending that message, so gen_convs ends after the last observation)."""
    import json

    from toolrl.eval.score import main as score_main
    from toolrl.data.golden import load_samples

    sample = next(s for s in load_samples("eval_100", data_dir) if s.sample_id == "Hotels-129")
    names = {"Get_Hotel_Reviews_Tips__Sort_Option": "Get_Hotel_Reviews(Tips)_Sort_Option",
             "Get_Hotel_Reviews_Tips": "Get_Hotel_Reviews(Tips)"}
    convs = [{"role": "user", "content": sample.query}]
    for turn in sample.turns:
        convs.append({"role": "assistant", "function_call": [
            {"name": names.get(c.function, c.function), "arguments": c.arguments} for c in turn.calls]})
        convs.append({"role": "observation", "content": [c.response for c in turn.calls]})
    n_calls = sum(len(t.calls) for t in sample.turns)
    record = {"id": sample.sample_id, "gen_convs": convs,
              "message": {"error_type": "func_hallucination", "content": "`self.golden_fcs == []`. ..."},
              "count_dict": {"success_turn_num": len(sample.turns), "total_turn_num": len(sample.turns),
                             "correct_call_num": n_calls, "total_call_num": n_calls, "real_turn_num": len(sample.turns)}}
    path = tmp_path / "bench.jsonl"
    path.write_text(json.dumps(record) + "\n")
    out = tmp_path / "out"
    assert score_main(["--predictions", str(path), "--protocol", "official", "--cache", str(cache_path),
                       "--allow-partial", "--out", str(out)]) == 0
    result = json.loads((out / "eval_results.json").read_text())
    (mine,) = [r for r in result["samples"] if r["sample_id"] == sample.sample_id]
    assert mine["outcome"] == "func_hallucination" and not mine["success"]
    assert result["settings"]["benchmark_agreement"]["agree"] == 1
    assert result["settings"]["replay_exhausted"] == []


def test_unlisted_name_rule_is_selectable_per_runner():
    from test_official_protocol import CAR, EXACT, EXTRA, LOOKUP_A, LOOKUP_B, scripted

    from toolrl.eval.official import OfficialRules, run_official

    answers = {("Car-1", 0): [LOOKUP_A, LOOKUP_B, EXTRA]}
    outcomes = {}
    for family in ("open", "gpt", "claude", "mistral"):
        (result,) = run_official([CAR], scripted(answers), OfficialRules.for_runner(family, EXACT))
        outcomes[family] = result.outcome
    assert outcomes["gpt"] == "decode_error"
    assert outcomes["claude"] == outcomes["mistral"] == "name_error"
    assert outcomes["open"] not in ("decode_error", "name_error")  # the call is a format error, the run goes on


# ----------------------------------------------------------------------------- 8: several updates per rollout


def test_second_update_of_a_reused_batch_moves_the_ratio_and_clips(tiny_model):
    """mu = 2 (grpo.num_iterations): old log-probs computed once, before the first update; the second
    update sees ratio != 1 and, after a large step, clipped tokens."""
    rows, adv = _rows()
    batch = _plain_batch(rows, adv, 12)
    cfg = grpo.LossConfig(beta=0.0)
    model = nnx.clone(tiny_model)
    opt = nnx.Optimizer(model, optax.sgd(50.0), wrt=nnx.Param)
    gd, st = nnx.split((model, opt))
    st = jax.tree.map(jnp.copy, st)
    mgraph, mstate = nnx.split(model)
    old = steps.make_logprob_fn(mgraph, None, mstate)(mstate, batch["tokens"], batch["attention_mask"])
    step = steps.make_grpo_step(gd, cfg, None, st, True, micro_batches=1, temperature=1.0)
    st, m1 = step(st, dict(batch, old_logp=old))
    st, m2 = step(st, dict(batch, old_logp=old))
    np.testing.assert_allclose(float(m1["ratio_mean"]), 1.0, atol=1e-5)
    assert float(m1["clip_fraction"]) == 0.0
    assert abs(float(m2["ratio_mean"]) - 1.0) > 1e-3
    assert float(m2["clip_fraction"]) > 0.0

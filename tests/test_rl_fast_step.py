"""The fast GRPO / SFT steps (LM head at loss positions only, shared-prefix packing) are exact: same
loss, metrics and gradient as the plain path within 1e-5 relative in fp32, on the tiny model and
(slow) on SmolLM2-135M with a real batch."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from toolrl.models.config import ModelConfig
from toolrl.models.decoder import sequence_logprobs
from toolrl.rl import grpo, steps

from model_fixtures import random_model

RTOL = 1e-5


# ----------------------------------------------------------------------------- batches


def synthetic_rows(vocab: int, seed: int = 0, group_size: int = 4) -> tuple[list, np.ndarray]:
    """Live rows of three groups with mixed prompt lengths (a degenerate group already dropped, as
    the trainer does): completions of different lengths, two identical completions, one that is a
    prefix of another, completions that start alike (the shared prefix reaches into them), a
    multi-turn row (policy turn, environment tokens, policy turn), and a group cut to 3 live rows."""
    rng = np.random.default_rng(seed)
    tok = lambda n: [int(x) for x in rng.integers(3, vocab, n)]  # noqa: E731
    rows, adv = [], []
    for prompt_len, members in ((37, group_size), (21, group_size), (52, group_size - 1)):
        prompt = tok(prompt_len)
        common = tok(3)
        comps = []
        for g in range(members):
            if g == 1 and comps:
                comps.append(list(comps[0]))  # identical to the first
                continue
            if g == 2 and comps:
                comps.append(list(comps[0][: len(comps[0]) // 2]))  # a prefix of the first
                continue
            turn = common + tok(int(rng.integers(4, 19)))
            if g == 3:  # multi-turn: env response (no loss) then another policy turn
                env = tok(9)
                comps.append(turn + env + tok(7))
                flags_env = (len(turn), len(env))
            else:
                comps.append(turn)
        for g, comp in enumerate(comps):
            ids = prompt + comp
            flags = [0] * prompt_len + [1] * len(comp)
            if g == 3:
                start = prompt_len + flags_env[0]
                flags[start:start + flags_env[1]] = [0] * flags_env[1]
            rows.append((ids, flags))
        a = rng.normal(size=members).astype(np.float32)
        adv += list(a)
    return rows, np.asarray(adv, np.float32)


def plain_batch(rows, advantages, pad_id, n_rows, width):
    from toolrl.rl.trainer import pack_rows

    pad = n_rows - len(rows)
    tokens, attn, loss = pack_rows(list(rows) + [([pad_id], [0])] * pad, pad_id, width)
    return {"tokens": jnp.asarray(tokens), "attention_mask": jnp.asarray(attn), "loss_mask": jnp.asarray(loss),
            "advantages": jnp.asarray(np.concatenate([advantages, np.zeros(pad, np.float32)])),
            "valid": jnp.asarray(np.arange(n_rows) < len(rows))}


def plain_loss(model, batch, cfg, temperature, old=None, ref=None, chunk_size=128):
    """The plain path's loss (`steps.make_grpo_step`'s micro_loss on the whole batch)."""
    mask = batch["loss_mask"][:, 1:] & batch["valid"][:, None]
    logp = sequence_logprobs(model, batch["tokens"], batch["attention_mask"], temperature=temperature,
                             chunk_size=chunk_size)
    old = jax.lax.stop_gradient(logp) if old is None else old
    return grpo.grpo_loss(logp, old, ref, batch["advantages"], mask, cfg)


def packed(rows, advantages, pad_id, shared, group_size=4, model_config=None, width=None):
    k = steps.ladder_size(max(len(steps.loss_positions(f)) for _, f in rows), 16)
    if not shared:
        n = len(rows)
        width = width or max(len(ids) for ids, _ in rows)
        return {k_: jnp.asarray(v) for k_, v in steps.pack_plain(rows, advantages, pad_id, n, width, k).items()}
    lin, quad = steps.trunk_costs(model_config) if model_config else (1.0, 0.0)
    groups = steps.plan_groups(rows, group_size, lin, quad)
    width = max(steps.packed_length(rows, g) for g in groups)
    host = steps.pack_shared(rows, advantages, pad_id, groups, len(groups), width, group_size, k)
    return {k_: jnp.asarray(v) for k_, v in host.items()}, groups


def to_packed_positions(plain_values: jax.Array, rows, pb) -> jax.Array:
    """A plain [B, W-1] per-position array (old / ref log-probs) laid out as the packed [R, S, K]."""
    out = np.zeros(pb["loss_mask"].shape, np.float32)
    flat_rows = [(r, s) for r in range(out.shape[0]) for s in range(out.shape[1])]
    seq = 0
    for r, s in flat_rows:
        if not np.asarray(pb["loss_mask"][r, s]).any():
            continue
        pos = steps.loss_positions(rows[seq][1])
        out[r, s, :len(pos)] = np.asarray(plain_values[seq])[pos]
        seq += 1
    return jnp.asarray(out)


def _grads(loss_fn, model):
    (loss, metrics), g = nnx.value_and_grad(loss_fn, has_aux=True)(model)
    return loss, metrics, g


def relative_error(a, b) -> float:
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb)
    num = sum(float(jnp.sum((x - y) ** 2)) for x, y in zip(la, lb))
    den = sum(float(jnp.sum(x ** 2)) for x in la)
    assert den > 0
    return float(np.sqrt(num / den))


def assert_close_tree(a, b, rtol=RTOL):
    err = relative_error(a, b)
    assert err < rtol, f"relative gradient error {err:.2e}"
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    for x, y in zip(la, lb):  # and leaf by leaf, relative to the leaf's scale
        scale = float(jnp.max(jnp.abs(x))) + 1e-12
        assert float(jnp.max(jnp.abs(x - y))) / scale < 20 * rtol


def assert_same_metrics(m1, m2, keys=("loss", "kl", "clip_fraction", "clip_low", "clip_high", "ratio_mean",
                                      "pg_loss", "tokens"), scale: float = 0.0):
    """Metrics equal within RTOL; the loss (a mean of +-A·ratio terms that cancel) within RTOL of the
    terms' scale (`scale`, e.g. the mean |advantage|) too."""
    for key in keys:
        if key in m1 or key in m2:
            atol = max(1e-7, RTOL * scale) if key in ("loss", "pg_loss") else 1e-7
            np.testing.assert_allclose(float(m2[key]), float(m1[key]), rtol=RTOL, atol=atol, err_msg=key)


# ----------------------------------------------------------------------------- tiny model

TINY = ModelConfig.tiny()


@pytest.fixture(scope="module")
def tiny_models():
    return random_model(TINY, 0), random_model(TINY, 1), random_model(TINY, 2)


@pytest.mark.parametrize("aggregation", ["token_mean", "sequence_mean", "constant"])
@pytest.mark.parametrize("shared", [False, True])
def test_packed_loss_and_gradient_equal_plain(tiny_models, aggregation, shared):
    model, old_model, ref_model = tiny_models
    rows, adv = synthetic_rows(TINY.vocab_size)
    cfg = grpo.LossConfig(beta=0.04, aggregation=aggregation, constant_tokens=4096)
    temperature = 0.7
    width = max(len(ids) for ids, _ in rows) + 5
    pb = plain_batch(rows, adv, 0, len(rows) + 2, width)  # two padding rows, as the plain path pads
    old = sequence_logprobs(old_model, pb["tokens"], pb["attention_mask"], temperature=temperature)
    ref = sequence_logprobs(ref_model, pb["tokens"], pb["attention_mask"], temperature=temperature)
    loss1, m1, g1 = _grads(lambda m: plain_loss(m, pb, cfg, temperature, old, ref), model)

    if shared:
        kb, groups = packed(rows, adv, 0, True)
        assert len(groups) == 3 and [len(g) for g in groups] == [4, 4, 3]
        assert kb["tokens"].shape[0] * kb["tokens"].shape[1] < 0.6 * sum(len(ids) for ids, _ in rows)
    else:
        kb = packed(rows, adv, 0, False)
    kb = dict(kb, old_logp=to_packed_positions(old, rows, kb), ref_logp=to_packed_positions(ref, rows, kb))
    # The packed log-prob pass (old / reference policy) gives the same numbers as the plain one.
    got = jnp.where(kb["loss_mask"], steps.packed_logprobs(old_model, kb, temperature), 0.0)
    np.testing.assert_allclose(got, kb["old_logp"], rtol=RTOL, atol=1e-5)
    loss2, m2, g2 = _grads(lambda m: steps.packed_grpo_loss(m, kb, cfg, temperature, True), model)
    assert_same_metrics(dict(m1, loss=loss1), dict(m2, loss=loss2))
    assert float(m1["clip_fraction"]) > 0  # the old policy differs: the clip is exercised
    assert_close_tree(nnx.state(g1, nnx.Param), nnx.state(g2, nnx.Param))


@pytest.mark.parametrize("shared", [False, True])
def test_packed_gradient_with_remat_equals_without(tiny_models, shared):
    """model.remat (blocks scanned under jax.checkpoint) changes memory only: same loss and gradient."""
    model = tiny_models[0]
    remat_model = random_model(TINY.replace(remat=True), 0)
    rows, adv = synthetic_rows(TINY.vocab_size)
    kb = packed(rows, adv, 0, shared)
    kb = kb[0] if shared else kb
    cfg = grpo.LossConfig(beta=0.0, aggregation="token_mean")
    old = jnp.where(kb["loss_mask"], steps.packed_logprobs(model, kb, 0.7), 0.0)
    kb = dict(kb, old_logp=old, ref_logp=old)
    loss1, m1, g1 = _grads(lambda m: steps.packed_grpo_loss(m, kb, cfg, 0.7, True), model)
    loss2, m2, g2 = _grads(lambda m: steps.packed_grpo_loss(m, kb, cfg, 0.7, True), remat_model)
    assert_same_metrics(dict(m1, loss=loss1), dict(m2, loss=loss2))
    assert_close_tree(nnx.state(g1, nnx.Param), nnx.state(g2, nnx.Param))


def _sgd_state(model, lr=1000.0):
    opt = nnx.Optimizer(model, optax.sgd(lr), wrt=nnx.Param)
    gd, st = nnx.split((model, opt))
    return gd, jax.tree.map(jnp.copy, st)  # the steps donate their state


@pytest.mark.parametrize("shared", [False, True])
def test_packed_step_with_micro_batches_equals_plain_step(tiny_models, shared):
    """The jitted steps end to end (micro-batching, optimizer): SGD deltas = gradients match."""
    model, _, _ = tiny_models
    rows, adv = synthetic_rows(TINY.vocab_size, seed=3)
    cfg = grpo.LossConfig(beta=0.0)
    n = 12  # 11 live rows + 1 padding row
    pb = plain_batch(rows, adv, 0, n, max(len(ids) for ids, _ in rows))
    before = jax.tree.map(jnp.copy, nnx.state(model, nnx.Param))
    gd, st = _sgd_state(nnx.clone(model))
    plain_step = steps.make_grpo_step(gd, cfg, None, st, False, micro_batches=2, temperature=1.0)
    st1, m1 = plain_step(st, dict(pb))
    if shared:
        kb, groups = packed(rows, adv, 0, True)
        micro = 3
    else:
        kb = packed(rows, adv, 0, False)
        kb = {k: jnp.concatenate([v, jnp.zeros((1,) + v.shape[1:], v.dtype)]) for k, v in kb.items()}
        kb["attention_mask"] = kb["attention_mask"].at[-1, 0].set(True)
        micro = 4
    gd, st = _sgd_state(nnx.clone(model))
    fast_step = steps.make_packed_grpo_step(gd, cfg, None, st, False, micro, 1.0, shared)
    st2, m2 = fast_step(st, kb)
    assert_same_metrics(m1, m2, ("loss", "tokens", "ratio_mean", "clip_fraction"))
    np.testing.assert_allclose(float(m2["grad_norm"]), float(m1["grad_norm"]), rtol=RTOL)
    d1 = jax.tree.map(lambda a, b: a - b, before, nnx.state(nnx.merge(gd, st1)[0], nnx.Param))
    d2 = jax.tree.map(lambda a, b: a - b, before, nnx.state(nnx.merge(gd, st2)[0], nnx.Param))
    assert_close_tree(d1, d2, rtol=5e-5)  # deltas = 1000 * grad, less the params' rounding


def test_sft_step_at_loss_positions_equals_plain(tiny_models):
    model, _, _ = tiny_models
    rows, _ = synthetic_rows(TINY.vocab_size, seed=5)
    from toolrl.rl.trainer import pack_rows

    tokens, attn, loss = pack_rows(rows, 0, max(len(ids) for ids, _ in rows) + 3)
    batch = {"tokens": jnp.asarray(tokens), "attention_mask": jnp.asarray(attn), "loss_mask": jnp.asarray(loss)}
    before = jax.tree.map(jnp.copy, nnx.state(model, nnx.Param))
    out = []
    for fast in (False, True):
        gd, st = _sgd_state(nnx.clone(model))
        st, m = steps.make_sft_step(gd, None, st, loss_positions_only=fast)(st, dict(batch))
        out.append((m, jax.tree.map(lambda a, b: a - b, before, nnx.state(nnx.merge(gd, st)[0], nnx.Param))))
    (m1, d1), (m2, d2) = out
    np.testing.assert_allclose(float(m2["nll"]), float(m1["nll"]), rtol=RTOL)
    np.testing.assert_allclose(float(m2["grad_norm"]), float(m1["grad_norm"]), rtol=RTOL)
    assert float(m2["tokens"]) == float(m1["tokens"])
    assert_close_tree(d1, d2, rtol=5e-5)


def test_plan_groups_shares_a_prompt_and_splits_unrelated_rows():
    a = [1] * 50
    rows = [(a + [2, 3], [0] * 50 + [1, 1]), (a + [4], [0] * 50 + [1]), ([9] * 30 + [5], [0] * 30 + [1]),
            ([7] * 40, [0] * 39 + [1])]
    groups = steps.plan_groups(rows, 4, *steps.trunk_costs(TINY))
    assert groups == [[0, 1], [2], [3]]
    assert steps.packed_length(rows, [0, 1]) == 50 + 2 + 1
    assert steps.plan_groups(rows[:2], 1) == [[0], [1]]  # at most max_slots rows per group


# ----------------------------------------------------------------------------- the trainer


def _varied_reward(batch):
    from toolrl.rewards.registry import RewardOutput

    n = len(batch.rows)
    reward = np.asarray([(sum(i * x for i, x in enumerate(ids)) % 13) / 13.0 for ids, _ in batch.rows], np.float32)
    reward[:4] = 0.25  # the first group is degenerate
    return RewardOutput(reward, {}, np.zeros((n, 1), np.int32), np.zeros(n, np.int32))


def test_trainer_update_paths_agree(tmp_path, xla_cache):
    """One GRPO step of the tiny run through the plain, loss-positions and shared-prefix updates."""
    from pathlib import Path

    from toolrl.main import train
    from toolrl.policy.runtime import Policy
    from toolrl.rl.config import config_from_file, validate
    from toolrl.rl.metrics import read_metrics

    results = {}
    for name, positions, shared in (("plain", False, False), ("positions", True, False), ("prefix", True, True)):
        config = config_from_file(Path(__file__).resolve().parents[1] / "configs" / "tiny.py")
        config.workdir = str(tmp_path / name)
        config.wandb.mode = "disabled"
        config.compile.cache_dir, config.compile.min_compile_time_secs = str(xla_cache), 0.0  # the session's
        config.sft.num_steps, config.train.num_steps, config.eval.every = 0, 1, 0
        config.rollout.max_turns, config.rollout.max_new_tokens, config.data.drop_unfit = 1, 48, False
        config.grpo.loss_positions_only, config.grpo.shared_prefix = positions, shared
        validate(config)
        info = train(config, reward_fn=_varied_reward)
        record = [r for r in read_metrics(info.metrics) if r["phase"] == "grpo"][-1]
        policy, _ = Policy.from_run(tmp_path / name)
        results[name] = (record, nnx.state(policy.model, nnx.Param))
    base, params = results["plain"]
    assert base["grpo/live_rows"] == 4 and base["grpo/skipped_update"] == 0
    assert 0.0 < base["grpo/entropy"] <= np.log(TINY.vocab_size) + 1e-4  # the policy entropy is logged
    for name in ("positions", "prefix"):
        record, p = results[name]
        for key in ("grpo/loss", "grpo/grad_norm", "grpo/tokens", "grpo/ratio_mean", "grpo/entropy"):
            np.testing.assert_allclose(record[key], base[key], rtol=RTOL, err_msg=f"{name} {key}")
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), params, p)
    assert results["prefix"][0]["grpo/shared_prefix"] == 1.0  # the group's prompt was shared
    assert results["positions"][0]["grpo/shared_prefix"] == 0.0


def test_lora_trainer_update_paths_agree_and_touch_only_adapters(tmp_path, xla_cache):
    """model.lora.rank > 0: SFT and one GRPO step of the tiny run through the plain, loss-positions and
    shared-prefix updates give the same numbers, and only the adapters move (the base stays the seed's)."""
    from pathlib import Path

    from toolrl.main import train
    from toolrl.models.lora import has_lora
    from toolrl.policy.runtime import Policy
    from toolrl.rl.config import config_from_file, validate
    from toolrl.rl.metrics import read_metrics

    results, initial = {}, None
    for name, positions, shared in (("plain", False, False), ("positions", True, False), ("prefix", True, True)):
        config = config_from_file(Path(__file__).resolve().parents[1] / "configs" / "tiny.py")
        config.workdir = str(tmp_path / name)
        config.wandb.mode = "disabled"
        config.compile.cache_dir, config.compile.min_compile_time_secs = str(xla_cache), 0.0  # the session's
        config.model.lora.rank, config.model.lora.alpha = 4, 8.0
        config.sft.num_steps, config.train.num_steps, config.eval.every = 1, 1, 0
        config.rollout.max_turns, config.rollout.max_new_tokens, config.data.drop_unfit = 1, 48, False
        config.grpo.loss_positions_only, config.grpo.shared_prefix = positions, shared
        validate(config)
        if initial is None:
            start = Policy.from_config(config)
            assert has_lora(start.model)
            initial = jax.tree.map(np.asarray, nnx.state(start.model, nnx.All(nnx.Param, nnx.Not(nnx.LoRAParam))))
        info = train(config, reward_fn=_varied_reward)
        record = [r for r in read_metrics(info.metrics) if r["phase"] == "grpo"][-1]
        policy, _ = Policy.from_run(tmp_path / name)
        results[name] = (record, nnx.state(policy.model, nnx.Param))
        base = nnx.state(policy.model, nnx.All(nnx.Param, nnx.Not(nnx.LoRAParam)))
        jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), b), base, initial)
        b_leaves = [np.asarray(v) for path, v in jax.tree_util.tree_leaves_with_path(nnx.state(policy.model, nnx.LoRAParam))
                    if "lora_b" in jax.tree_util.keystr(path)]
        assert b_leaves and any(np.abs(b).max() > 0 for b in b_leaves)  # B started at 0 and was trained
    base_record, params = results["plain"]
    for name in ("positions", "prefix"):
        record, p = results[name]
        for key in ("grpo/loss", "grpo/grad_norm", "grpo/tokens"):
            np.testing.assert_allclose(record[key], base_record[key], rtol=RTOL, err_msg=f"{name} {key}")
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), params, p)


# ----------------------------------------------------------------------------- SmolLM2-135M (slow)


def _smollm2_batch(policy):
    """Real prompts from the bundled data: a scored turn (golden history, 2 completions identical), a
    degenerate group, and a multi-turn episode (assistant turn, real tool response, assistant turn)."""
    from toolrl.eval.protocol import turn_messages
    from toolrl.main import build_environment
    from toolrl.rl.config import base_config
    from toolrl.rl.rollout import turn_prompt_ids
    from toolrl.rl.trainer import load_training_samples
    from toolrl.eval.protocol import build_turn_tasks

    config = base_config()
    config.data.max_steps_per_sample, config.data.max_distractors, config.data.response_max_chars = 3, 1, 200
    env = build_environment(config)
    samples = load_training_samples(config)
    rng = np.random.default_rng(0)
    vocab = policy.model_config.vocab_size
    rand = lambda n: [int(x) for x in rng.integers(200, vocab, n)]  # noqa: E731
    view, chat = config.data.tool_view, policy.chat
    rows, reward = [], []
    # 1) a scored turn with history
    task = next(t for s in samples for t in build_turn_tasks(s) if t.complete and t.history)
    prompt = turn_prompt_ids(policy, task, view, env.render)
    comps = [rand(40), rand(25), None, rand(60)]
    comps[2] = list(comps[0])
    for c in comps:
        rows.append((prompt + c, [0] * len(prompt) + [1] * len(c)))
    reward += [1.0, 0.0, 1.0, 0.5]
    # 2) a degenerate group (another, shorter prompt)
    s2 = samples[1]
    p2 = policy.prompt_ids([{"role": "user", "content": s2.query}], s2.tools, view)
    for n in (30, 20, 35, 28):
        rows.append((p2 + rand(n), [0] * len(p2) + [1] * n))
    reward += [0.5] * 4
    # 3) multi-turn episodes of a sample with at least two golden turns
    s3 = next(s for s in samples if len(s.turns) >= 2 and s is not s2)
    p3 = policy.prompt_ids([{"role": "user", "content": s3.query}], s3.tools, view)
    env_ids = chat.env_ids(turn_messages([s3.turns[0]], env.render)[1:])
    for g, (a, b) in enumerate(((30, 20), (45, 0), (25, 33), (38, 12))):
        ids, flags = list(p3) + rand(a), [0] * len(p3) + [1] * a
        if b:
            ids += env_ids + rand(b)
            flags += [0] * len(env_ids) + [1] * b
        rows.append((ids, flags))
    reward += [0.2, 0.9, 0.4, 0.1]
    return rows, np.asarray(reward, np.float32)


@pytest.mark.slow
def test_smollm2_fast_paths_equal_plain():
    from toolrl.policy.runtime import Policy
    from toolrl.rl.trainer import bucket

    policy = Policy.load(preset="smollm2_135m", remat=True)  # remat: memory only, the numbers are the same
    model = policy.model
    rows, reward = _smollm2_batch(policy)
    adv, degenerate = grpo.group_advantages(jnp.asarray(reward), 4)
    adv, degenerate = np.asarray(adv), np.asarray(degenerate)
    assert degenerate[4:8].all() and not degenerate[:4].any() and not degenerate[8:].any()
    pad = policy.chat.pad_id
    cfg = grpo.LossConfig(beta=0.04, aggregation="token_mean")
    temperature = 0.8
    # The old path: every row (the degenerate group masked), one width; noisy old / reference log-probs.
    width = bucket(max(len(ids) for ids, _ in rows), 64)
    pb = plain_batch(rows, adv, pad, len(rows), width)
    pb["valid"] = jnp.asarray(~degenerate)
    noise = np.random.default_rng(1).normal(size=(len(rows), width - 1)).astype(np.float32)
    base = sequence_logprobs(model, pb["tokens"], pb["attention_mask"], temperature=temperature)
    old, ref = base + 0.2 * noise, base - 0.1 * noise
    loss1, m1, g1 = _grads(lambda m: plain_loss(m, pb, cfg, temperature, old, ref), model)
    g1 = nnx.state(g1, nnx.Param)
    live = np.flatnonzero(~degenerate)
    # fp32 noise floor of the plain path itself under a change of row width: the same rows padded to
    # an unaligned width (the attention's sums over keys group their terms differently; through 30
    # layers that moves SmolLM2's gradient by ~1e-5). A packed shared-prefix row has its own width.
    odd = max(len(ids) for ids, _ in rows) + 3
    ob = plain_batch(rows, adv, pad, len(rows), odd)
    ob["valid"] = pb["valid"]
    _, _, g0 = _grads(lambda m: plain_loss(m, ob, cfg, temperature, old[:, :odd - 1], ref[:, :odd - 1]), model)
    floor = relative_error(g1, nnx.state(g0, nnx.Param))
    del g0
    print(f"plain vs plain (width {width} vs {odd}): relative gradient difference {floor:.2e}")
    live_rows = [rows[i] for i in live]
    for shared in (False, True):
        # The loss-positions layout keeps the plain width (as the trainer does): within 1e-5.
        kb = packed(live_rows, adv[live], pad, shared, 4, policy.model_config, width=width)
        if shared:
            kb, groups = kb
            assert [len(g) for g in groups] == [4, 4]  # the turn group and the episode group
        kb = dict(kb, old_logp=to_packed_positions(old[live], live_rows, kb),
                  ref_logp=to_packed_positions(ref[live], live_rows, kb))
        loss2, m2, g2 = _grads(lambda m: steps.packed_grpo_loss(m, kb, cfg, temperature, True), model)
        assert_same_metrics(dict(m1, loss=loss1), dict(m2, loss=loss2), scale=float(np.abs(adv[live]).mean()))
        err = relative_error(g1, nnx.state(g2, nnx.Param))
        print(f"{'shared prefix' if shared else 'loss positions'} vs plain: relative gradient difference {err:.2e}")
        # 1e-5; a packed row (other width) within 1e-5 or 3x the plain path's own width noise.
        bound = max(RTOL, 3 * floor) if shared else RTOL
        assert err < bound, f"relative gradient error {err:.2e} (plain's own: {floor:.2e})"
        del g2

"""The Policy runtime: one way to load, generate, score log-probs and restore a run's own model."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from toolrl.policy.runtime import Policy, SamplingSettings


@pytest.fixture(scope="module")
def tiny():
    return Policy.load(preset="tiny", seed=1)


def test_sampler_and_trainer_log_probs_agree_at_the_sampling_temperature(tiny):
    """On-policy means the trainer's pi is the sampler's: log-probs at T = 0.7 match within 1e-5."""
    prompts = [tiny.prompt_ids([{"role": "user", "content": "find a car"}], (), "signature"),
               tiny.prompt_ids([{"role": "user", "content": "a hotel in Rome please"}], (), "signature")]
    settings = SamplingSettings(max_new_tokens=12, temperature=0.7, pad_multiple=16)
    out = tiny.generate(prompts, jax.random.key(3), settings)
    rows = [p + t for p, t in zip(prompts, out.tokens)]
    width = max(len(r) for r in rows)
    tokens = np.zeros((len(rows), width), np.int32)
    mask = np.zeros((len(rows), width), bool)
    for i, r in enumerate(rows):
        tokens[i, :len(r)], mask[i, :len(r)] = r, True
    logp = np.asarray(tiny.logprobs_fn(0.7)(nnx.state(tiny.model), jnp.asarray(tokens), jnp.asarray(mask)))
    for i, (p, t) in enumerate(zip(prompts, out.tokens)):
        np.testing.assert_allclose(logp[i, len(p) - 1:len(p) - 1 + len(t)], out.logprobs[i], atol=1e-5)
    # At T = 1 the same tokens have other log-probs: the temperature is not ignored.
    logp1 = np.asarray(tiny.logprobs_fn(1.0)(nnx.state(tiny.model), jnp.asarray(tokens), jnp.asarray(mask)))
    assert not np.allclose(logp1[0, len(prompts[0]) - 1:len(prompts[0]) - 1 + len(out.tokens[0])], out.logprobs[0])


def test_group_prefill_gives_the_same_samples(tiny):
    prompt = tiny.prompt_ids([{"role": "user", "content": "two cars"}], (), "signature")
    settings = SamplingSettings(max_new_tokens=10, temperature=1.0, pad_multiple=16)
    plain = tiny.generate([prompt] * 4, jax.random.key(5), settings)
    shared = tiny.generate([prompt] * 4, jax.random.key(5), settings, group_size=4)
    assert plain.tokens == shared.tokens
    for a, b in zip(plain.logprobs, shared.logprobs):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_mixed_precision_step_moves_the_weights():
    """bf16 compute with fp32 parameters and moments: one AdamW step at lr 2e-6 changes > 90% of the
    weights (with bf16 parameters it changed 0.57%)."""
    from toolrl.rl import steps

    policy = Policy.load(preset="tiny", dtype="bfloat16")
    params = nnx.state(policy.model, nnx.Param)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(params))
    before = jax.tree.map(np.asarray, params)
    optimizer = steps.make_optimizer(policy.model, 2e-6)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(nnx.state(optimizer)) if hasattr(x, "dtype")
               and jnp.issubdtype(x.dtype, jnp.floating))
    graphdef, state = nnx.split((policy.model, optimizer))
    fn = steps.make_sft_step(graphdef, None, state)
    tokens = jnp.asarray(np.random.default_rng(0).integers(3, 120, (2, 24)), jnp.int32)
    batch = {"tokens": tokens, "attention_mask": jnp.ones((2, 24), bool), "loss_mask": jnp.ones((2, 24), bool)}
    state, _ = fn(state, batch)
    nnx.update((policy.model, optimizer), state)
    after = jax.tree.map(np.asarray, nnx.state(policy.model, nnx.Param))
    changed = sum(int((a != b).sum()) for a, b in zip(jax.tree.leaves(after), jax.tree.leaves(before)))
    total = sum(a.size for a in jax.tree.leaves(before))
    assert changed / total > 0.9


def test_execution_options_reach_every_layer():
    policy = Policy.load(preset="tiny", attention_impl="dot_product_attention", remat=True)
    configs = [m.config for _, m in policy.model.iter_modules() if getattr(m, "config", None) is not None]
    assert configs and all(c.remat and c.attention_impl == "dot_product_attention" for c in configs)
    plain = Policy.load(preset="tiny")
    tokens = jnp.asarray([[5, 6, 7, 8, 9]], jnp.int32)
    mask = jnp.ones((1, 5), bool)
    np.testing.assert_allclose(policy.logprobs_fn()(nnx.state(policy.model), tokens, mask),
                               plain.logprobs_fn()(nnx.state(plain.model), tokens, mask), atol=1e-5)


def test_loading_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match="model.preset or model.path"):
        Policy.load()
    with pytest.raises(FileNotFoundError, match="not a toolrl run"):
        Policy.load(preset="tiny").restore_params(tmp_path)


def test_the_kl_reference_is_the_policy_frozen_on_disk(tmp_path):
    """`Reference.frozen_at`: the policy's parameters when GRPO starts, saved once and read back on
    resume; its log-probs are the policy's own pass (`logprobs_fn`) on the frozen parameters."""
    from toolrl.policy.reference import Reference

    policy = Policy.load(preset="tiny", seed=2)
    ids = policy.prompt_ids([{"role": "user", "content": "a flight to Oslo"}], (), "signature")
    tokens, mask = jnp.asarray([ids], jnp.int32), jnp.ones((1, len(ids)), bool)
    before = np.asarray(policy.logprobs_fn(1.0)(nnx.state(policy.model), tokens, mask))
    reference = Reference.frozen_at(policy, tmp_path / "reference", save=True)
    assert (tmp_path / "reference").exists()
    np.testing.assert_allclose(np.asarray(reference.logprobs(1.0, tokens, mask)), before, atol=1e-6)
    # The policy moves on; the reference, and a reference read back from disk (a resumed run), do not.
    nnx.update(policy.model, jax.tree.map(lambda x: x * 1.5, policy.params()))
    assert not np.allclose(np.asarray(policy.logprobs_fn(1.0)(nnx.state(policy.model), tokens, mask)), before)
    resumed = Reference.frozen_at(policy, tmp_path / "reference", save=True)  # exists: not overwritten
    for ref in (reference, resumed):
        np.testing.assert_allclose(np.asarray(ref.logprobs(1.0, tokens, mask)), before, atol=1e-6)

"""GRPO math against hand-computed values."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from toolrl.rl import grpo


def test_group_advantages_hand_values():
    rewards = jnp.array([1.0, 0.0, 0.5, 0.5, 0.2, 0.2])
    adv, degenerate = grpo.group_advantages(rewards, 2, eps=0.0)
    # group 0: mean 0.5, unbiased std sqrt(0.5) -> +-0.707; groups 1 and 2 are degenerate -> 0.
    z = 0.5 / math.sqrt(0.5)
    np.testing.assert_allclose(adv, [z, -z, 0.0, 0.0, 0.0, 0.0], atol=1e-6)
    np.testing.assert_array_equal(degenerate, [False, False, True, True, True, True])
    summary = grpo.degenerate_summary(degenerate, 2)
    assert int(summary["degenerate_groups"]) == 2
    assert float(summary["degenerate_fraction"]) == pytest.approx(2 / 3)


def test_group_advantages_group_of_four_and_dr_grpo():
    rewards = jnp.array([0.0, 1.0, 1.0, 2.0])
    mean, std = 1.0, math.sqrt(2.0 / 3.0)  # unbiased (ddof=1) std of (0, 1, 1, 2), as TRL / verl / tunix
    adv, _ = grpo.group_advantages(rewards, 4, eps=0.0)
    np.testing.assert_allclose(adv, [(r - mean) / std for r in (0, 1, 1, 2)], rtol=1e-6)
    adv_dr, _ = grpo.group_advantages(rewards, 4, scale_by_std=False)
    np.testing.assert_allclose(adv_dr, [-1.0, 0.0, 0.0, 1.0], atol=1e-7)


def test_token_logprobs():
    logits = jnp.log(jnp.array([[[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]]]))
    got = grpo.token_logprobs(logits, jnp.array([[0, 2]]))
    np.testing.assert_allclose(got, np.log([[0.5, 0.8]]), rtol=1e-6)


def test_clipping_both_sides():
    # ratio = exp(logp - old): choose ratios 1.5 (above 1+0.28) and 0.5 (below 1-0.2).
    old = jnp.zeros((4, 1))
    logp = jnp.log(jnp.array([[1.5], [1.5], [0.5], [0.5]]))
    adv = jnp.array([1.0, -1.0, 1.0, -1.0])
    loss, ratio, clipped = grpo.clipped_surrogate(logp, old, adv, 0.2, 0.28)
    # A>0, r=1.5: min(1.5, 1.28) = 1.28 (clipped); A<0, r=1.5: min(-1.5, -1.28) = -1.5 (not clipped)
    # A>0, r=0.5: min(0.5, 0.8) = 0.5 (not clipped); A<0, r=0.5: min(-0.5, -0.8) = -0.8 (clipped)
    np.testing.assert_allclose(loss[:, 0], [-1.28, 1.5, -0.5, 0.8], rtol=1e-6)
    np.testing.assert_array_equal(clipped[:, 0], [True, False, False, True])
    np.testing.assert_allclose(ratio[:, 0], [1.5, 1.5, 0.5, 0.5], rtol=1e-6)


def test_clipped_tokens_have_zero_gradient():
    old = jnp.zeros((2, 1))
    adv = jnp.array([1.0, -1.0])

    def f(logp):
        return grpo.clipped_surrogate(logp, old, adv, 0.2, 0.28)[0].sum()

    g = jax.grad(f)(jnp.log(jnp.array([[1.5], [0.5]])))
    np.testing.assert_allclose(g, 0.0)
    g = jax.grad(f)(jnp.log(jnp.array([[1.1], [0.9]])))  # inside the range: d(-r·A)/dlogp = -r·A
    np.testing.assert_allclose(g[:, 0], [-1.1, 0.9], rtol=1e-6)


def test_kl_k3_hand_value():
    logp = jnp.array([[math.log(0.5)]])
    ref = jnp.array([[math.log(0.25)]])
    # delta = log(0.5) (ref - logp = log 0.25 - log 0.5); k3 = 0.5 - log(0.5) - 1
    np.testing.assert_allclose(grpo.kl_k3(logp, ref), [[0.5 - math.log(0.5) - 1.0]], rtol=1e-6)
    assert float(grpo.kl_k3(ref, ref)[0, 0]) == 0.0


def test_aggregations_hand_values():
    per_token = jnp.array([[1.0, 2.0, 3.0, 0.0], [4.0, 0.0, 0.0, 0.0], [9.0, 9.0, 9.0, 9.0]])
    mask = jnp.array([[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]])
    assert float(grpo.aggregate(per_token, mask, "token_mean")) == pytest.approx((1 + 2 + 3 + 4) / 4)
    assert float(grpo.aggregate(per_token, mask, "sequence_mean")) == pytest.approx((2.0 + 4.0) / 2)
    # Dr.GRPO: a constant denominator, batch (3 rows, the empty one included) x max completion tokens.
    assert float(grpo.aggregate(per_token, mask, "constant")) == pytest.approx(10 / (3 * 4))
    assert float(grpo.aggregate(per_token, mask, "constant", constant_tokens=30)) == pytest.approx(10 / 30)
    assert [float(x) for x in grpo.aggregate_parts(per_token, mask, "sequence_mean")] == [6.0, 2.0]
    with pytest.raises(ValueError, match="unknown aggregation"):
        grpo.aggregate(per_token, mask, "nope")


def test_grpo_loss_hand_value_with_kl_and_mask():
    # Two sequences, two tokens each; second token of seq 1 is padding.
    logp = jnp.log(jnp.array([[0.5, 0.5], [0.5, 0.9]]))
    old = jnp.log(jnp.array([[0.25, 0.5], [0.5, 0.9]]))  # ratios: 2, 1 | 1, (masked)
    ref = jnp.log(jnp.array([[0.25, 0.5], [0.5, 0.1]]))
    adv = jnp.array([1.0, -1.0])
    mask = jnp.array([[1, 1], [1, 0]])
    config = grpo.LossConfig(epsilon_low=0.2, epsilon_high=0.2, beta=0.1, aggregation="token_mean")
    loss, m = grpo.grpo_loss(logp, old, ref, adv, mask, config)
    kl00 = 0.5 - math.log(0.5) - 1.0  # ref/pi = 0.5
    pg = [-1.2, -1.0, 1.0]  # clipped 2 -> 1.2 with A=+1; ratio 1 elsewhere
    expected = (sum(pg) + 0.1 * kl00) / 3
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    assert float(m["kl"]) == pytest.approx(kl00 / 3, rel=1e-5)
    assert float(m["clip_fraction"]) == pytest.approx(1 / 3)
    assert float(m["clip_high"]) == pytest.approx(1 / 3)
    assert float(m["clip_low"]) == 0.0
    assert float(m["tokens"]) == 3.0


def test_beta_zero_needs_no_reference():
    logp = jnp.zeros((2, 3))
    loss, m = grpo.grpo_loss(logp, logp, None, jnp.array([1.0, -1.0]), jnp.ones((2, 3)),
                             grpo.LossConfig(beta=0.0))
    assert float(loss) == pytest.approx(0.0)  # +1 and -1 advantages at ratio 1 cancel
    assert float(m["kl"]) == 0.0
    with pytest.raises(ValueError, match="ref_logp"):
        grpo.grpo_loss(logp, logp, None, jnp.ones(2), jnp.ones((2, 3)), grpo.LossConfig(beta=0.1))


def test_degenerate_group_masked_out_of_denominator():
    # Group 0 degenerate (masked by the caller), group 1 informative: the loss equals group 1's alone.
    rewards = jnp.array([0.3, 0.3, 1.0, 0.0])
    adv, degenerate = grpo.group_advantages(rewards, 2)
    logp = jnp.zeros((4, 2))
    mask = jnp.ones((4, 2)) * (~degenerate)[:, None]
    config = grpo.LossConfig(beta=0.0)
    loss, m = grpo.grpo_loss(logp + jnp.array([[0.0], [0.0], [0.1], [0.0]]), logp, None, adv, mask, config)
    only = grpo.grpo_loss(logp[2:] + jnp.array([[0.1], [0.0]]), logp[2:], None, adv[2:], jnp.ones((2, 2)), config)[0]
    assert float(loss) == pytest.approx(float(only), rel=1e-6)
    assert float(m["tokens"]) == 4.0


def test_grpo_loss_is_jittable():
    config = grpo.LossConfig()
    f = jax.jit(lambda a, b, c, d, e: grpo.grpo_loss(a, b, c, d, e, config))
    x = jnp.zeros((2, 3))
    loss, _ = f(x, x, x, jnp.zeros(2), jnp.ones((2, 3)))
    assert loss.shape == ()


def test_sft_loss():
    logp = jnp.log(jnp.array([[0.5, 0.25], [1.0, 0.1]]))
    loss, _ = grpo.sft_loss(logp, jnp.array([[1, 1], [0, 0]]))
    assert float(loss) == pytest.approx(-(math.log(0.5) + math.log(0.25)) / 2)

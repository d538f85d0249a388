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

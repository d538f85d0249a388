"""The old policy's log-probs (grpo.old_logprobs): the sampler's log-probs carried by real rollout rows
equal the trainer's pass over the same rows; with "sampler" they are the ratio's denominator on every
update path (plain, loss positions, shared prefix) when they agree within the tolerance, else the
trainer's; at mu = 2 the second update's ratio moves and clips (tiny model, real rollouts)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from toolrl.rl.config import config_from_file, validate
from toolrl.rl.update import bucket, pack_rows, plain_row_values

REPO = Path(__file__).resolve().parents[1]
PATHS = {"plain": (False, False), "positions": (True, False), "prefix": (True, True)}
ADVANTAGES = np.asarray([1.0, -1.0, 0.5, -0.5] * 2, np.float32)  # two groups of four


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """(config, policy, env, data, initial parameters): one GRPO turn of 48 tokens per row."""
    from toolrl.main import prepare

    config = config_from_file(REPO / "configs" / "tiny.py")
    config.workdir = str(tmp_path_factory.mktemp("old_logprobs") / "unused")
    config.wandb.mode = "disabled"
    config.sft.num_steps, config.train.num_steps, config.eval.every = 0, 1, 0
    config.rollout.max_turns, config.rollout.max_new_tokens, config.data.drop_unfit = 1, 48, False
    validate(config)
    policy, env, data = prepare(config)
    initial = jax.tree.map(jnp.copy, nnx.state(policy.model, nnx.Param))
    return config, policy, env, data, initial


def _trainer(tiny_run, workdir: Path, temperature: float = 1.0, **fields):
    """A fresh Trainer on the tiny run, its model back at the initial parameters; `fields` set
    config sections as section__key=value."""
    from toolrl.rl.trainer import Trainer

    config, policy, env, data, initial = tiny_run
    config = config.copy_and_resolve_references()
    config.workdir = str(workdir)
    config.rollout.temperature = temperature
    for dotted, value in fields.items():
        section, key = dotted.split("__")
        config[section][key] = value
    validate(config)
    nnx.update(policy.model, jax.tree.map(jnp.copy, initial))
    trainer = Trainer(config, policy, env, data, None, reward_fn=lambda batch: None)
    trainer.restore_or_init()
    return trainer


@pytest.fixture(scope="module")
def rollouts(tiny_run, tmp_path_factory):
    """{temperature: RolloutBatch} of the initial model."""
    out = {}
    for temperature in (1.0, 0.7):
        trainer = _trainer(tiny_run, tmp_path_factory.mktemp("rollout"), temperature)
        out[temperature], _ = trainer._rollout(jax.random.key(7))
    return out


def _trainer_logprobs(policy, batch, temperature):
    """The trainer's pass over the rows (plain layout): (log-probs [B, W-1], loss positions [B, W-1])."""
    width = bucket(max(len(ids) for ids, _ in batch.rows), 64)
    tokens, attn, loss = pack_rows(batch.rows, policy.chat.pad_id, width)
    logp = np.asarray(policy.logprobs_fn(temperature)(nnx.state(policy.model), tokens, attn))
    return logp, loss[:, 1:], width


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sampler_logprobs_equal_the_trainers_pass(tiny_run, rollouts, temperature, tmp_path):
    _, policy, *_ = tiny_run
    trainer = _trainer(tiny_run, tmp_path / "w", temperature, grpo__old_logprobs="sampler")
    batch = rollouts[temperature]
    for (ids, flags), logprobs in zip(batch.rows, batch.logprobs):
        assert len(logprobs) == len(ids)
        flags = np.asarray(flags, bool)
        assert 1 <= flags.sum() <= 48 and np.all(logprobs[~flags] == 0.0) and np.all(logprobs[flags] < 0.0)
    trainer_logp, mask, width = _trainer_logprobs(policy, batch, temperature)
    sampler_logp = plain_row_values(batch.logprobs, len(batch.rows), width)
    diff = np.abs(trainer_logp - sampler_logp)[mask]
    print(f"T={temperature}: sampler vs trainer |dlogp| max {diff.max():.2e} mean {diff.mean():.2e} over {diff.size}")
    assert diff.size == sum(sum(flags) for _, flags in batch.rows) and diff.max() < 1e-5
    # Through the trainer: the sampler's log-probs are taken, the ratio of the one update is 1.
    metrics = trainer._update(batch.rows, ADVANTAGES, batch.logprobs)
    assert metrics["sampler_logp_used"] == 1.0
    np.testing.assert_allclose(metrics["sampler_logp_max_abs_diff"], diff.max(), rtol=0.5, atol=1e-6)
    np.testing.assert_allclose(metrics["ratio_mean"], 1.0, atol=1e-5)
    assert metrics["clip_fraction"] == 0.0


@pytest.mark.parametrize("path", ["plain", "prefix"])
def test_second_update_moves_the_ratio_and_clips(tiny_run, rollouts, path, tmp_path):
    """mu = 2 with the trainer's old log-probs: the first update's ratio is exactly 1 (nothing clipped),
    the second's is not, and a large step pushes tokens past the clip range."""
    positions, shared = PATHS[path]
    trainer = _trainer(tiny_run, tmp_path / "w", grpo__num_iterations=2, grpo__loss_positions_only=positions,
                       grpo__shared_prefix=shared, optim__learning_rate=1e-2)
    batch = rollouts[1.0]
    metrics = trainer._update(batch.rows, ADVANTAGES, batch.logprobs)
    assert metrics["first_ratio_mean"] == pytest.approx(1.0, abs=1e-6) and metrics["first_clip_fraction"] == 0.0
    assert abs(metrics["ratio_mean"] - 1.0) > 1e-2
    assert metrics["clip_fraction"] > 0.0
    assert "sampler_logp_used" not in metrics  # the default takes the trainer's
    assert metrics["sampler_logp_max_abs_diff"] < 1e-5  # ... and reports how far the sampler's were


@pytest.mark.parametrize("path", list(PATHS))
def test_sampler_old_logprobs_set_the_first_ratio(tiny_run, rollouts, path, tmp_path):
    """With "sampler", the first update's ratio is exp(trainer - sampler): the sampler's log-probs are
    shifted by -0.5 (within a tolerance of 1), so every policy token's ratio is e^0.5 = 1.65 > 1 + 0.28:
    the tokens of the rows with a positive advantage are clipped, the others not."""
    _, policy, *_ = tiny_run
    positions, shared = PATHS[path]
    trainer = _trainer(tiny_run, tmp_path / "w", grpo__num_iterations=2, grpo__loss_positions_only=positions,
                       grpo__shared_prefix=shared, grpo__old_logprobs="sampler", grpo__old_logprobs_tolerance=1.0)
    batch = rollouts[1.0]
    shifted = [lp - 0.5 * np.asarray(flags, np.float32) for lp, (_, flags) in zip(batch.logprobs, batch.rows)]
    trainer_logp, mask, width = _trainer_logprobs(policy, batch, 1.0)
    ratio = np.exp(trainer_logp - plain_row_values(shifted, len(batch.rows), width))[mask]
    metrics = trainer._update(batch.rows, ADVANTAGES, shifted)
    if path != "plain":
        assert metrics["shared_prefix"] == float(shared)  # the shared layout was taken when asked for
    assert metrics["sampler_logp_used"] == 1.0
    np.testing.assert_allclose(metrics["sampler_logp_max_abs_diff"], 0.5, atol=1e-5)
    np.testing.assert_allclose(metrics["first_ratio_mean"], ratio.mean(), rtol=1e-5)
    np.testing.assert_allclose(metrics["first_ratio_mean"], np.exp(0.5), rtol=1e-5)
    tokens = np.asarray([sum(flags) for _, flags in batch.rows])
    assert metrics["first_clip_fraction"] == pytest.approx(tokens[ADVANTAGES > 0].sum() / tokens.sum(), abs=1e-7)


def test_sampler_logprobs_beyond_the_tolerance_fall_back(tiny_run, rollouts, tmp_path):
    trainer = _trainer(tiny_run, tmp_path / "w", grpo__old_logprobs="sampler", grpo__old_logprobs_tolerance=0.1)
    batch = rollouts[1.0]
    shifted = [lp - 0.5 * np.asarray(flags, np.float32) for lp, (_, flags) in zip(batch.logprobs, batch.rows)]
    metrics = trainer._update(batch.rows, ADVANTAGES, shifted)
    assert metrics["sampler_logp_used"] == 0.0
    np.testing.assert_allclose(metrics["sampler_logp_max_abs_diff"], 0.5, atol=1e-5)
    np.testing.assert_allclose(metrics["ratio_mean"], 1.0, atol=1e-6)  # the trainer's: the current policy


def test_rows_carry_their_logprobs_through_environment_turns():
    """Episode bookkeeping: the sampler's log-probs stay aligned with the ids across an environment segment."""
    from types import SimpleNamespace

    from toolrl.rl.rollout import Row, _append_env, _append_policy_tokens

    policy = SimpleNamespace(chat=SimpleNamespace(env_ids=lambda messages: [6, 7]))
    row = Row([1, 2, 3], [0, 0, 0], [0.0, 0.0, 0.0])
    _append_policy_tokens(row, [4, 5], "x", np.asarray([-0.25, -1.5], np.float32))
    _append_env(policy, row, [{"role": "tool", "content": "{}"}], max_new_tokens=4, max_seq_len=100)
    _append_policy_tokens(row, [8], "y", [-2.0])
    assert len(row.logprobs) == len(row.ids) == len(row.flags)
    values = plain_row_values([np.asarray(row.logprobs)], 1, 9)
    assert values.tolist() == [[0.0, 0.0, -0.25, -1.5, 0.0, 0.0, -2.0, 0.0]]
    with pytest.raises(ValueError, match="1 sampler log-probs for 2 generated tokens"):
        _append_policy_tokens(row, [9, 10], "z", [-1.0])


@pytest.mark.parametrize("field, value, message", [
    ("old_logprobs", "rollout", "grpo.old_logprobs='rollout' must be 'trainer' or 'sampler'"),
    ("old_logprobs_tolerance", -0.1, "grpo.old_logprobs_tolerance=-0.1 must be >= 0")])
def test_config_refuses_unknown_old_logprobs(field, value, message):
    from toolrl.rl.config import base_config

    config = base_config()
    config.grpo[field] = value
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        validate(config)

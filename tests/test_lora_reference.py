"""The KL reference of a LoRA run is the frozen base plus the adapters at GRPO's start: it stores only the
adapters (no second copy of the weights), gives a full copy's log-probs, stays put while a LoRA update
moves the policy, and reads back from disk (a resumed run) unchanged; without LoRA it is a full copy."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from toolrl.models.lora import LoraSpec, adapter_count, lora_state
from toolrl.policy.checkpoint import save_params
from toolrl.policy.reference import Reference
from toolrl.policy.runtime import Policy
from toolrl.rl import steps


def _batch(policy):
    """Two right-padded rows of a real prompt and a made-up answer: tokens, attention, loss mask [2, L]."""
    ids = policy.prompt_ids([{"role": "user", "content": "a flight from Oslo to Rome on Friday"}], (), "signature")
    rows = [(ids + policy.chat.encode(text), [0] * len(ids) + [1] * len(policy.chat.encode(text)))
            for text in ("Searching flights.", "Done.")]
    width = max(len(r) for r, _ in rows)
    tokens, attn, loss = (np.zeros((2, width), dt) for dt in (np.int32, bool, bool))
    for i, (r, f) in enumerate(rows):
        tokens[i, :len(r)], attn[i, :len(r)], loss[i, :len(r)] = r, True, f
    return jnp.asarray(tokens), jnp.asarray(attn), jnp.asarray(loss)


def _lora_policy():
    """The tiny policy with rank-4 adapters whose B is non-zero (so that the adapters change the function)."""
    policy = Policy.load(preset="tiny", seed=2, lora=LoraSpec(rank=4, alpha=8.0))
    adapters = lora_state(policy.model)
    leaves, treedef = jax.tree.flatten(adapters)
    keys = jax.random.split(jax.random.key(5), len(leaves))
    nnx.update(policy.model, jax.tree.unflatten(treedef, [x + 0.05 * jax.random.normal(k, x.shape, x.dtype)
                                                          for x, k in zip(leaves, keys)]))
    return policy


def _lora_update(policy, tokens, attn, loss):
    """One SFT step of the trainer's (optimizer over the adapters only, as a LoRA run's)."""
    optimizer = steps.make_optimizer(policy.model, 1e-2, wrt=nnx.LoRAParam)
    graphdef, state = nnx.split((policy.model, optimizer))
    state, metrics = steps.make_sft_step(graphdef, None, state, loss_positions_only=False)(
        jax.tree.map(jnp.copy, state), {"tokens": tokens, "attention_mask": attn, "loss_mask": loss})
    nnx.update((policy.model, optimizer), state)
    return float(metrics["loss"])


def _bytes_on_disk(path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def test_lora_reference_keeps_only_the_adapters(tmp_path):
    policy = _lora_policy()
    tokens, attn, loss = _batch(policy)
    base_before = jax.tree.map(np.asarray, nnx.state(policy.model, nnx.All(nnx.Param, nnx.Not(nnx.LoRAParam))))
    full = Reference(policy, jax.tree.map(jnp.copy, policy.params()))  # the old reference: every parameter
    reference = Reference.frozen_at(policy, tmp_path / "reference", save=True)
    # Stored: the adapters and nothing else, a tenth of the tiny model's bytes (SmolLM2 at rank 16: 4 %).
    stored = nnx.to_flat_state(reference.params)
    assert stored and all(isinstance(v, nnx.LoRAParam) for _, v in stored)
    assert reference.nbytes == 4 * adapter_count(policy.model)
    assert reference.nbytes * 9 < full.nbytes
    save_params(tmp_path / "full", full.params)
    print(f"reference bytes: LoRA {reference.nbytes} (on disk {_bytes_on_disk(tmp_path / 'reference')}), "
          f"full copy {full.nbytes} (on disk {_bytes_on_disk(tmp_path / 'full')})")
    assert _bytes_on_disk(tmp_path / "reference") * 4 < _bytes_on_disk(tmp_path / "full")
    # The same log-probs as a full copy's, and as the policy's own at the start.
    before = np.asarray(policy.logprobs_fn(0.8)(nnx.state(policy.model), tokens, attn))
    np.testing.assert_array_equal(np.asarray(reference.logprobs(0.8, tokens, attn)),
                                  np.asarray(full.logprobs(0.8, tokens, attn)))
    np.testing.assert_array_equal(np.asarray(reference.logprobs(0.8, tokens, attn)), before)
    # A LoRA update moves the policy, not the reference; the reference read back from disk (a resumed
    # run: the file exists, so it is not overwritten) is the same; the base did not move.
    _lora_update(policy, tokens, attn, loss)
    after = np.asarray(policy.logprobs_fn(0.8)(nnx.state(policy.model), tokens, attn))
    changed = np.abs(after - before)[np.asarray(loss)[:, 1:]]
    assert changed.max() > 1e-3
    resumed = Reference.frozen_at(policy, tmp_path / "reference", save=True)
    for ref in (reference, resumed, full):
        np.testing.assert_array_equal(np.asarray(ref.logprobs(0.8, tokens, attn)), before)
    packed = steps.pack_plain([(list(np.asarray(t)[np.asarray(a)]), list(np.asarray(m)[np.asarray(a)]))
                               for t, a, m in zip(tokens, attn, loss)], np.zeros(2), 0, 2, tokens.shape[1], 32)
    inputs = steps.to_device_batch({k: packed[k] for k in steps.packed_keys(False, ())}, None)
    np.testing.assert_allclose(np.asarray(reference.packed_logprobs(0.8, False, inputs)),
                               np.asarray(full.packed_logprobs(0.8, False, inputs)), atol=0)
    jax.tree.map(np.testing.assert_array_equal,
                 nnx.state(policy.model, nnx.All(nnx.Param, nnx.Not(nnx.LoRAParam))), base_before)


def test_a_full_copy_reference_file_of_a_lora_run_still_reads(tmp_path):
    """A LoRA run whose reference file holds every parameter (written before the reference kept only the
    adapters) resumes with the adapters read from it."""
    policy = _lora_policy()
    tokens, attn, loss = _batch(policy)
    before = np.asarray(policy.logprobs_fn(1.0)(nnx.state(policy.model), tokens, attn))
    save_params(tmp_path / "reference", policy.params())
    _lora_update(policy, tokens, attn, loss)
    resumed = Reference.frozen_at(policy, tmp_path / "reference", save=True)
    assert all(isinstance(v, nnx.LoRAParam) for _, v in nnx.to_flat_state(resumed.params))
    np.testing.assert_array_equal(np.asarray(resumed.logprobs(1.0, tokens, attn)), before)


def test_without_lora_the_reference_is_every_parameter(tmp_path):
    policy = Policy.load(preset="tiny", seed=2)
    reference = Reference.frozen_at(policy, tmp_path / "reference", save=True)
    assert reference.nbytes == sum(int(x.nbytes) for x in jax.tree.leaves(policy.params()))
    assert len(nnx.to_flat_state(reference.params)) == len(nnx.to_flat_state(policy.params()))
    save_params(tmp_path / "other", nnx.state(policy.model, lambda path, _: "embed" in path))
    with pytest.raises(ValueError):  # a file of another structure is an error, not silently cut
        Reference.frozen_at(policy, tmp_path / "other")


def _varied_reward(batch):
    from toolrl.rewards.registry import RewardOutput

    n = len(batch.rows)
    reward = np.asarray([(sum(i * x for i, x in enumerate(ids)) % 13) / 13.0 for ids, _ in batch.rows], np.float32)
    return RewardOutput(reward, {}, np.zeros((n, 1), np.int32), np.zeros(n, np.int32))


@pytest.mark.slow
def test_a_lora_run_with_kl_resumes_exactly(tmp_path):
    """LoRA, grpo.beta > 0: the run's reference file holds the adapters only, and a run stopped after its
    first GRPO step and resumed logs the same KL and loss as the uninterrupted run."""
    from pathlib import Path

    from toolrl.main import train
    from toolrl.rl.config import config_from_file, validate
    from toolrl.rl.metrics import read_metrics

    def config_for(name):
        config = config_from_file(Path(__file__).resolve().parents[1] / "configs" / "tiny.py")
        config.workdir = str(tmp_path / name)
        config.wandb.mode = "disabled"
        config.model.lora.rank, config.model.lora.alpha = 4, 8.0
        config.grpo.beta, config.optim.learning_rate = 0.04, 1e-2
        config.sft.num_steps, config.train.num_steps, config.train.save_every, config.eval.every = 1, 2, 1, 0
        config.rollout.max_turns, config.rollout.max_new_tokens, config.data.drop_unfit = 1, 32, False
        validate(config)
        return config

    straight = read_metrics(train(config_for("straight"), reward_fn=_varied_reward).metrics)
    train(config_for("resumed"), reward_fn=_varied_reward, stop_after=2)  # SFT, then the first GRPO step
    resumed = read_metrics(train(config_for("resumed"), reward_fn=_varied_reward).metrics)
    last, again = straight[-1], resumed[-1]
    assert last["step"] == again["step"] == 3 and last["grpo/kl"] > 0.0  # the policy left the reference
    for key in ("grpo/kl", "grpo/loss", "reward/mean"):
        assert again[key] == pytest.approx(last[key], rel=1e-5, abs=1e-9), key
    stored = sum(f.stat().st_size for f in (tmp_path / "straight" / "reference").rglob("*") if f.is_file())
    policy = Policy.from_config(config_for("straight"))
    full = sum(int(x.nbytes) for x in jax.tree.leaves(policy.params()))
    assert stored < full / 3  # the adapters (32 KiB) and orbax's metadata, not the 350 KiB of weights

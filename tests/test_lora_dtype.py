"""LoRA under mixed precision (bfloat16 compute, float32 parameters and adapters): the adapted
projections keep the compute dtype, so the residual stream stays bfloat16 and the remat scan (whose
carry must keep its dtype) trains the adapters; B = 0 still gives the base's numbers."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from model_fixtures import random_model
from toolrl.models.config import ModelConfig
from toolrl.models.decoder import left_pad_positions, sequence_logprobs
from toolrl.models.lora import LoraSpec, apply_lora

TOKENS = jnp.array([[0, 0, 5, 9, 17, 3, 44, 2], [7, 8, 9, 10, 11, 12, 13, 14]], jnp.int32)
MASK = jnp.array([[0, 0, 1, 1, 1, 1, 1, 1], [1] * 8], bool)


@nnx.jit
def _hidden(model, tokens, mask):
    return model.hidden_states(tokens, left_pad_positions(mask), mask)[0]


def test_bf16_adapted_model_keeps_compute_dtype_and_base_numbers():
    config = ModelConfig.tiny_qwen3().with_dtype("bfloat16")
    model = random_model(config)
    base = _hidden(model, TOKENS, MASK)
    apply_lora(model, LoraSpec(rank=4, alpha=8.0))
    adapted = _hidden(model, TOKENS, MASK)
    assert base.dtype == adapted.dtype == jnp.bfloat16
    # B = 0: the adapters add 0 to each bf16 projection, cast back to bf16 exactly.
    np.testing.assert_array_equal(np.asarray(adapted, np.float32), np.asarray(base, np.float32))


def test_bf16_remat_update_trains_the_adapters():
    config = ModelConfig.tiny_qwen3(remat=True).with_dtype("bfloat16")
    model = apply_lora(random_model(config), LoraSpec(rank=4, alpha=8.0))
    graph, adapters, rest = nnx.split(model, nnx.LoRAParam, ...)

    @jax.jit
    def loss_and_grads(adapters):
        def loss(adapters):
            return -jnp.mean(sequence_logprobs(nnx.merge(graph, adapters, rest), TOKENS, MASK))

        return jax.value_and_grad(loss)(adapters)

    loss, grads = loss_and_grads(adapters)  # before the fix: the scan's carry turned float32 (TypeError)
    flat = {"/".join(map(str, p)): np.asarray(v.get_value()) for p, v in nnx.to_flat_state(grads)}
    assert np.isfinite(float(loss))
    assert all(g.dtype == np.float32 and np.isfinite(g).all() for g in flat.values())
    # With B = 0 only B gets a gradient (dL/dA goes through B).
    assert any(np.abs(g).max() > 0 for p, g in flat.items() if p.endswith("_lora_b"))
    assert all(np.abs(g).max() == 0 for p, g in flat.items() if p.endswith("_lora_a"))

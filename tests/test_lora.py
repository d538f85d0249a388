"""LoRA through qwix (toolrl.models.lora): B = 0 reproduces the base logits (to float32 rounding), an optax update
on the adapters changes only adapter leaves, the adapters act on every path (jit, sampler trunk with
cache, remat scan, eager), and merging gives the adapted model's logits."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from model_fixtures import random_model
from toolrl.models.config import ModelConfig
from toolrl.models.decoder import KVCache, left_pad_positions, sequence_logprobs
from toolrl.models.lora import (LoraSpec, adapter_count, apply_lora, lora_optimizer, lora_state, merge_lora,
                                merged_kernels)

TOKENS = jnp.array([[0, 0, 5, 9, 17, 3, 44, 2], [7, 8, 9, 10, 11, 12, 13, 14]], jnp.int32)
MASK = jnp.array([[0, 0, 1, 1, 1, 1, 1, 1], [1] * 8], bool)
POS = left_pad_positions(MASK)


@nnx.jit
def _logits(model, tokens, positions, mask):
    return model(tokens, positions, mask)[0]


def _flat(state):
    return {"/".join(map(str, p)): np.asarray(v.get_value()) for p, v in nnx.to_flat_state(state)}


def _randomise_b(model, seed=3):
    """Non-zero B so that the adapters change the function (B = 0 after apply_lora)."""
    state = lora_state(model)
    leaves, treedef = jax.tree.flatten(state)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    nnx.update(model, jax.tree.unflatten(treedef, [x + 0.05 * jax.random.normal(k, x.shape, x.dtype)
                                                   for x, k in zip(leaves, keys)]))


@pytest.mark.parametrize("preset", ["tiny_qwen3", "tiny_qwen2"])
def test_zero_b_reproduces_base_logits_exactly(preset):
    model = random_model(ModelConfig.preset(preset))
    base = np.asarray(_logits(model, TOKENS, POS, MASK))
    apply_lora(model, LoraSpec(rank=4, alpha=8.0))
    # 2 layers x (q, k, v, o, gate, up, down) x (A, B)
    assert len(jax.tree.leaves(lora_state(model))) == 2 * 7 * 2
    adapted = np.asarray(_logits(model, TOKENS, POS, MASK))
    # The adapters add exactly 0, but the adapted program is another XLA program, whose CPU fusions round
    # differently: the base model's own jit and eager results differ by ~1e-6. Equal to that rounding:
    np.testing.assert_allclose(adapted, base, atol=1e-6, rtol=0)
    assert all(float(jnp.abs(x).max()) == 0 for p, x in _flat(lora_state(model)).items() if p.endswith("_lora_b"))


def test_targets_and_adapter_shapes():
    c = ModelConfig.tiny_qwen3()
    model = apply_lora(random_model(c), LoraSpec(rank=2, alpha=4.0, targets=("attn",)))
    names = sorted(_flat(lora_state(model)))
    assert names[:2] == ["layers/0/attn/k_kernel_lora_a", "layers/0/attn/k_kernel_lora_b"]
    assert not any("/mlp/" in n for n in names)
    flat = _flat(lora_state(model))
    assert flat["layers/0/attn/q_kernel_lora_a"].shape == (c.hidden_size, 2)
    assert flat["layers/0/attn/q_kernel_lora_b"].shape == (2, c.num_heads * c.head_dim)
    assert flat["layers/0/attn/o_kernel_lora_b"].shape == (2, c.hidden_size)
    axes = model.layers[0].attn.o_kernel_lora_b.get_metadata()["out_sharding"]
    assert axes == (None, "embed")  # the sharding rules read these names
    d, q, kv = c.hidden_size, c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim
    per_layer = 2 * ((d + q) + 2 * (d + kv) + (q + d))  # rank x (in + out) for q, k, v, o
    assert adapter_count(model) == c.num_layers * per_layer
    with pytest.raises(ValueError, match="targets"):
        LoraSpec(rank=2, alpha=1.0, targets=("lm_head",))


def test_optax_update_changes_only_adapters():
    model = apply_lora(random_model(ModelConfig.tiny_qwen3()), LoraSpec(rank=4, alpha=8.0))
    before = _flat(nnx.state(model, nnx.Param))
    optimizer = lora_optimizer(model, optax.adam(1e-2))

    @nnx.jit
    def step(model, optimizer):
        def loss_fn(adapters):
            # A differentiable function of the adapters only; the base parameters are closed over.
            graph, _, rest = nnx.split(model, nnx.LoRAParam, ...)
            logp = sequence_logprobs(nnx.merge(graph, adapters, rest), TOKENS, MASK)
            return -jnp.sum(jnp.where(MASK[:, 1:], logp, 0.0))

        grads = jax.grad(loss_fn)(nnx.state(model, nnx.LoRAParam))
        optimizer.update(model, grads)

    step(model, optimizer)
    after = _flat(nnx.state(model, nnx.Param))
    changed = {k for k in before if not np.array_equal(before[k], after[k])}
    assert changed and all("_lora_" in k for k in changed)
    # Both halves learn: B leaves its zero start, A moves once B is non-zero (second step).
    assert any(k.endswith("_lora_b") for k in changed)
    step(model, optimizer)
    again = _flat(nnx.state(model, nnx.Param))
    assert any(k.endswith("_lora_a") and not np.array_equal(after[k], again[k]) for k in again)
    # The optimizer keeps moments for the adapters only.
    moments = jax.tree.leaves(nnx.state(optimizer))
    assert sum(x.size for x in moments) < 3 * adapter_count(model) + 10


@pytest.mark.parametrize("remat", [False, True])
def test_merge_gives_the_adapted_logits_on_every_path(remat):
    config = ModelConfig.tiny_qwen3(remat=remat)
    model = apply_lora(random_model(config), LoraSpec(rank=4, alpha=16.0))
    base = np.asarray(_logits(merge_lora(model), TOKENS, POS, MASK))  # B = 0: the base model
    _randomise_b(model)
    adapted = np.asarray(_logits(model, TOKENS, POS, MASK))
    assert np.max(np.abs(adapted - base)) > 1e-3  # the adapters act
    merged = merge_lora(model)
    assert not jax.tree.leaves(nnx.state(merged, nnx.LoRAParam))
    np.testing.assert_allclose(np.asarray(_logits(merged, TOKENS, POS, MASK)), adapted, atol=2e-5, rtol=2e-5)
    # Eager call (routed through jit), and the sampler's cached trunk: the adapters act there too.
    eager, _ = model(TOKENS, POS, MASK)
    np.testing.assert_allclose(np.asarray(eager), adapted, atol=2e-5, rtol=2e-5)

    @nnx.jit
    def cached(model):
        cache = KVCache.init(model.config, 2, 8)
        return model(TOKENS, POS, MASK, cache)[0]

    np.testing.assert_allclose(np.asarray(cached(model)), adapted, atol=2e-5, rtol=2e-5)
    assert set(merged_kernels(model)) == {f"layers.{i}.{m}.{k}" for i in range(2) for m, ks in
                                          (("attn", "qkvo"), ("mlp", ("gate", "up", "down"))) for k in
                                          ([f"{c}_kernel" for c in ks])}


def test_lora_spec_from_config():
    import ml_collections

    lora = ml_collections.ConfigDict({"rank": 0, "alpha": 16.0, "targets": "attn,mlp"})
    assert LoraSpec.from_config(lora) is None
    lora.rank = 8
    assert LoraSpec.from_config(lora) == LoraSpec(8, 16.0, ("attn", "mlp"))


SHARDED = r"""
import os, sys
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"; os.environ["JAX_PLATFORMS"] = "cpu"
sys.path.insert(0, "tests")
import jax, jax.numpy as jnp, numpy as np
from flax import nnx
from model_fixtures import random_model
from toolrl.models.config import ModelConfig
from toolrl.models.decoder import left_pad_positions
from toolrl.models.lora import LoraSpec, apply_lora, lora_state
from toolrl.models.sharding import make_mesh, shard_model
tokens = jnp.array([[0, 0, 5, 9, 17, 3, 44, 2], [7, 8, 9, 10, 11, 12, 13, 14]], jnp.int32)
mask = tokens != 0
f = nnx.jit(lambda m, t, p, k: m(t, p, k)[0])
ref = apply_lora(random_model(ModelConfig.tiny_qwen3()), LoraSpec(4, 8.0))
mesh = make_mesh(1, 2, 2)
model = random_model(ModelConfig.tiny_qwen3())
shard_model(model, mesh)                    # as load_pretrained(mesh=...) leaves it
apply_lora(model, LoraSpec(4, 8.0))
shard_model(model, mesh)                    # the adapters placed by the logical-axis rules
specs = {"/".join(map(str, p)): str(v.get_value().sharding.spec) for p, v in nnx.to_flat_state(lora_state(model))}
assert specs["layers/0/attn/q_kernel_lora_a"] == "P('fsdp', None)", specs
assert specs["layers/0/attn/q_kernel_lora_b"] == "P(None, 'tensor')", specs
assert specs["layers/0/attn/o_kernel_lora_b"] == "P(None, 'fsdp')", specs
leaves, treedef = jax.tree.flatten(lora_state(model))
new = [x + 0.05 * jax.random.normal(k, x.shape) for x, k in zip(leaves, jax.random.split(jax.random.key(0), len(leaves)))]
nnx.update(model, jax.tree.unflatten(treedef, new))
nnx.update(ref, jax.tree.unflatten(jax.tree.structure(lora_state(ref)), [np.asarray(x) for x in new]))
positions = left_pad_positions(mask)
diff = np.abs(np.asarray(f(model, tokens, positions, mask)) - np.asarray(f(ref, tokens, positions, mask))).max()
assert diff < 1e-5, diff
print("ok")
"""


@pytest.mark.slow  # a 4-device subprocess: ~15-50 s on 2 shared cores
def test_adapters_on_a_sharded_model():
    """LoRA on a model already placed on a (fsdp=2, tensor=2) mesh: adapters sharded by the rules, same
    logits as the unsharded adapted model."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    out = subprocess.run([sys.executable, "-c", SHARDED], cwd=repo, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]

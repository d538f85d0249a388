"""Llama / Qwen2 / Qwen3 (dense) family decoder in Flax NNX.

RMSNorm, rotary position embeddings (with optional Llama-3 / linear frequency scaling), grouped-query
attention, SwiGLU MLP, optional q/k/v bias (Qwen2), optional per-head q/k RMSNorm (Qwen3) and tied
embeddings (SmolLM2, Qwen2.5 <= 3B, Qwen3 <= 4B).

Shapes: B batch, T new tokens, S cache slots, D hidden, H query heads, K kv heads, G = H / K,
Dh head dim, F MLP width, V vocab. Parameters carry LOGICAL axis names only (``out_sharding``
metadata); :mod:`toolrl.models.sharding` maps them to the mesh.

Forward contract (used by the sampler and the GRPO trainer)::

    logits, new_cache = model(tokens[B,T] int32, positions[B,T] int32,
                              attention_mask[B,T] bool, cache=None)

``attention_mask`` is True for real tokens; left or right padding are both fine because the mask
(and not the position in the row) decides which keys are visible. ``positions`` are the RoPE
positions (for left padding: ``cumsum(mask) - 1``). Logits are float32 whatever the compute dtype.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, struct

from toolrl.models.config import ModelConfig
from toolrl.models.query_chunks import map_query_chunks

Array = jax.Array

# Masked attention scores get the most negative finite float instead of -inf: a query row with no
# visible key (a padding token) then gets a uniform softmax rather than NaNs.
_MASK_VALUE = float(np.finfo(np.float32).min)


# --------------------------------------------------------------------------- pure math


def rms_norm(x: Array, scale: Array, eps: float) -> Array:
    """RMSNorm over the last axis, computed in float32 like HF (then cast back to ``x.dtype``).

    x: [..., D]; scale: [D]. Returns [..., D] in x.dtype.
    """
    x32 = x.astype(jnp.float32)
    normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + eps)
    # HF casts back to the input dtype before multiplying by the weight.
    return scale.astype(x.dtype) * normed.astype(x.dtype)


def rope_inverse_frequencies(config: ModelConfig) -> np.ndarray:
    """Inverse RoPE frequencies [Dh/2] (float64 numpy, computed once at trace time)."""
    dh = config.head_dim
    inv = 1.0 / (config.rope_theta ** (np.arange(0, dh, 2, dtype=np.float64) / dh))
    s = config.rope_scaling
    if s is None:
        return inv
    if s.kind == "linear":
        return inv / s.factor
    # Llama 3: long wavelengths are slowed by `factor`, short ones kept, the band between blended.
    low_wavelen = s.original_max_position / s.low_freq_factor
    high_wavelen = s.original_max_position / s.high_freq_factor
    wavelen = 2 * math.pi / inv
    scaled = np.where(wavelen > low_wavelen, inv / s.factor, inv)
    smooth = (s.original_max_position / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor)
    blended = (1 - smooth) * scaled / s.factor + smooth * scaled
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return np.where(medium, blended, scaled)


def rope_tables(positions: Array, inv_freq: np.ndarray, dtype: jnp.dtype) -> tuple[Array, Array]:
    """cos, sin [B, T, 1, Dh] for ``positions`` [B, T] (angles in float32 as HF, cast to ``dtype``).

    Computed once per forward and shared by every layer.
    """
    angles = positions.astype(jnp.float32)[..., None] * jnp.asarray(inv_freq, jnp.float32)  # [B, T, Dh/2]
    angles = jnp.concatenate([angles, angles], axis=-1)[:, :, None, :]  # [B, T, 1, Dh]
    return jnp.cos(angles).astype(dtype), jnp.sin(angles).astype(dtype)


def rotate(x: Array, cos: Array, sin: Array) -> Array:
    """Apply precomputed RoPE tables to ``x`` [B, T, N, Dh] (HF "rotate half" layout)."""
    half = x.shape[-1] // 2
    rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos + rotated * sin


def apply_rope(x: Array, positions: Array, inv_freq: np.ndarray) -> Array:
    """Rotate ``x`` [B, T, N, Dh] by ``positions`` [B, T] (HF "rotate half" layout, not interleaved)."""
    cos, sin = rope_tables(positions, inv_freq, x.dtype)
    return rotate(x, cos, sin)


def attend(q: Array, keys: Array, values: Array, mask: Array, impl: str = "xla", query_chunk: int = 0) -> Array:
    """Grouped-query attention on the KV-cache layout.

    q: [B, T, H, Dh]; keys, values: [B, K, S, Dh] (heads before slots: the layout the two batched
    matmuls want, so XLA inserts no per-step transpose of the cache); mask: [B, T, S] bool
    (True = may attend). Returns [B, T, H, Dh] in q.dtype.

    ``impl="xla"``: explicit einsums. The [B, K, G, T, S] score array is materialised in the compute
    dtype (float32 accumulation inside the dot; for bf16 it is stored in bf16, like HF's eager
    attention, instead of a float32 copy twice the size); the softmax runs in float32 and the
    probabilities are cast back to the compute dtype for the value product. A query row with no
    visible key (padding) gets a uniform softmax instead of NaNs.

    ``query_chunk`` C (``ModelConfig.attention_query_chunk``), 0 < C < T: "xla" takes the queries C rows
    at a time in a loop (``query_chunks.map_query_chunks``), holding [B, K, G, C, S] scores instead of
    [B, K, G, T, S]; each row's softmax is its own, so the outputs are the same. 0 or C >= T: as above.

    ``impl="dot_product_attention"``: ``jax.nn.dot_product_attention`` (cuDNN flash attention on
    GPU when shapes / dtypes allow, which never materialises scores; its XLA fallback elsewhere).
    Same numbers as ``"xla"`` in float32. A ``query_chunk`` with it is a ValueError.
    """
    b, t, h, dh = q.shape
    kv = keys.shape[1]
    if impl == "dot_product_attention":
        if query_chunk:
            raise ValueError(f"query_chunk={query_chunk} applies to impl='xla' only, not {impl!r}")
        return jax.nn.dot_product_attention(q, keys.swapaxes(1, 2), values.swapaxes(1, 2),
                                            mask=mask[:, None, :, :], scale=1.0 / math.sqrt(dh))
    if impl != "xla":
        raise ValueError(f"unknown attention impl {impl!r}")
    if 0 < query_chunk < t:
        return map_query_chunks(lambda rows, visible: attend(rows, keys, values, visible), q, mask, query_chunk)
    qg = q.reshape(b, t, kv, h // kv, dh).transpose(0, 2, 3, 1, 4)  # [B, K, G, T, Dh]
    scores = jnp.einsum("bkgtd,bksd->bkgts", qg, keys, preferred_element_type=q.dtype)
    scores = scores.astype(jnp.float32) * (1.0 / math.sqrt(dh))
    scores = jnp.where(mask[:, None, None, :, :], scores, _MASK_VALUE)
    probs = jax.nn.softmax(scores, axis=-1).astype(values.dtype)
    out = jnp.einsum("bkgts,bksd->bkgtd", probs, values)  # [B, K, G, T, Dh]
    return out.transpose(0, 3, 1, 2, 4).reshape(b, t, h, dh)


def grouped_attention(q: Array, k: Array, v: Array, mask: Array, impl: str = "xla") -> Array:
    """Grouped-query attention with keys / values in token-major layout.

    q: [B, T, H, Dh]; k, v: [B, S, K, Dh]; mask: [B, T, S] bool (True = may attend).
    Returns [B, T, H, Dh] in q.dtype. See :func:`attend` for the implementations and precision.
    """
    return attend(q, k.swapaxes(1, 2), v.swapaxes(1, 2), mask, impl)


def token_logprobs(logits: Array, targets: Array, temperature: float = 1.0) -> Array:
    """log softmax(logits / temperature)[target]: [..., V], [...] -> [...] float32.

    Gathers one logit and subtracts the logsumexp, so no [..., V] log-softmax array is kept.
    ``temperature`` is a Python float (1.0 = the model's own distribution).
    """
    logits = logits.astype(jnp.float32)
    if temperature != 1.0:
        logits = logits / temperature
    picked = jnp.take_along_axis(logits, targets[..., None].astype(jnp.int32), axis=-1)[..., 0]
    return picked - jax.nn.logsumexp(logits, axis=-1)


def left_pad_positions(attention_mask: Array) -> Array:
    """RoPE positions [B, T] for left- or right-padded rows: index among real tokens (pads get 0)."""
    return jnp.maximum(jnp.cumsum(attention_mask.astype(jnp.int32), axis=-1) - 1, 0)


# --------------------------------------------------------------------------- KV cache


@struct.dataclass
class KVCache:
    """Preallocated key/value cache (a pytree; pass it through jit / while_loop).

    k, v: per layer [B, K, S, Dh] (heads before slots, the layout attention reads without a
    transpose; keys stored after RoPE). Updated in place (``dynamic_update_slice`` on the while-loop
    carry / donated buffers). mask: [B, S] bool, slots holding real
    tokens. index: int32 scalar, next slot to write (all rows write the same slots, so prompts are
    left-padded to a common length).
    """

    k: tuple[Array, ...]
    v: tuple[Array, ...]
    mask: Array
    index: Array

    @classmethod
    def init(cls, config: ModelConfig, batch: int, length: int, dtype: jnp.dtype | None = None) -> "KVCache":
        """An empty cache for ``batch`` rows of ``length`` slots (dtype defaults to the compute dtype)."""
        dtype = dtype or config.compute_dtype
        shape = (batch, config.num_kv_heads, length, config.head_dim)
        zeros = tuple(jnp.zeros(shape, dtype) for _ in range(config.num_layers))
        return cls(k=zeros, v=tuple(jnp.zeros(shape, dtype) for _ in range(config.num_layers)),
                   mask=jnp.zeros((batch, length), bool), index=jnp.zeros((), jnp.int32))

    @property
    def length(self) -> int:
        """S, the number of slots."""
        return self.mask.shape[1]


# --------------------------------------------------------------------------- modules


def _param(rngs: nnx.Rngs | None, shape: Sequence[int], axes: tuple[str | None, ...], dtype: jnp.dtype,
           init: str = "normal") -> nnx.Param:
    """A parameter with logical axis metadata (not sharded eagerly: ``shard_model`` places it)."""
    if init == "ones":
        value = jnp.ones(shape, dtype)
    elif init == "zeros":
        value = jnp.zeros(shape, dtype)
    else:
        assert rngs is not None
        value = (0.02 * jax.random.normal(rngs.params(), shape, jnp.float32)).astype(dtype)
    return nnx.Param(value, out_sharding=axes, eager_sharding=False)


class RMSNorm(nnx.Module):
    """RMSNorm with a learned scale [D] (logical axis ``norm``)."""

    def __init__(self, dim: int, eps: float, dtype: jnp.dtype):
        self.scale = _param(None, (dim,), ("norm",), dtype, init="ones")
        self.eps = eps

    def __call__(self, x: Array) -> Array:
        return rms_norm(x, self.scale[...], self.eps)


class Attention(nnx.Module):
    """GQA self-attention. Kernels: q [D, H, Dh], k/v [D, K, Dh], o [H, Dh, D]; optional q/k/v bias,
    optional q/k RMSNorm over Dh (scales [Dh], Qwen3)."""

    def __init__(self, config: ModelConfig, rngs: nnx.Rngs):
        c, pd = config, config.weight_dtype
        self.config = config
        self.q_kernel = _param(rngs, (c.hidden_size, c.num_heads, c.head_dim), ("embed", "heads", "head_dim"), pd)
        self.k_kernel = _param(rngs, (c.hidden_size, c.num_kv_heads, c.head_dim), ("embed", "kv_heads", "head_dim"), pd)
        self.v_kernel = _param(rngs, (c.hidden_size, c.num_kv_heads, c.head_dim), ("embed", "kv_heads", "head_dim"), pd)
        self.o_kernel = _param(rngs, (c.num_heads, c.head_dim, c.hidden_size), ("heads", "head_dim", "embed"), pd)
        if c.qkv_bias:
            self.q_bias = _param(None, (c.num_heads, c.head_dim), ("heads", "head_dim"), pd, init="zeros")
            self.k_bias = _param(None, (c.num_kv_heads, c.head_dim), ("kv_heads", "head_dim"), pd, init="zeros")
            self.v_bias = _param(None, (c.num_kv_heads, c.head_dim), ("kv_heads", "head_dim"), pd, init="zeros")
        if c.qk_norm:
            self.q_norm = RMSNorm(c.head_dim, c.rms_norm_eps, pd)
            self.k_norm = RMSNorm(c.head_dim, c.rms_norm_eps, pd)

    def __call__(self, x: Array, rope: tuple[Array, Array], mask: Array,
                 cache_kv: tuple[Array, Array] | None, index: Array | None) -> tuple[Array, tuple[Array, Array] | None]:
        """x: [B, T, D]; rope: (cos, sin) [B, T, 1, Dh]; mask: [B, T, S] (S = T without cache).

        Returns ([B, T, D], updated (k, v) cache arrays [B, K, S, Dh] or None). Projections are
        plain 2-D matmuls on the kernels reshaped (free, row-major) to [D, H*Dh] / [H*Dh, D].
        """
        c, dt = self.config, x.dtype
        b, t, d = x.shape
        h, kvh, dh = c.num_heads, c.num_kv_heads, c.head_dim
        # jnp.dot (not `@`): LoRA (toolrl.models.lora, qwix) intercepts jnp.dot calls on a parameter.
        q = jnp.dot(x, self.q_kernel[...].reshape(d, h * dh).astype(dt))
        k = jnp.dot(x, self.k_kernel[...].reshape(d, kvh * dh).astype(dt))
        v = jnp.dot(x, self.v_kernel[...].reshape(d, kvh * dh).astype(dt))
        if c.qkv_bias:
            q = q + self.q_bias[...].reshape(h * dh).astype(dt)
            k = k + self.k_bias[...].reshape(kvh * dh).astype(dt)
            v = v + self.v_bias[...].reshape(kvh * dh).astype(dt)
        cos, sin = rope
        q, k = q.reshape(b, t, h, dh), k.reshape(b, t, kvh, dh)
        if c.qk_norm:  # Qwen3: normalise each head's q and k before the rotation (as HF does)
            q, k = self.q_norm(q), self.k_norm(k)
        q = rotate(q, cos, sin)
        k = rotate(k, cos, sin).swapaxes(1, 2)  # [B, K, T, Dh]
        v = v.reshape(b, t, kvh, dh).swapaxes(1, 2)
        new_kv = None
        if cache_kv is not None:
            ck, cv = cache_kv
            ck = jax.lax.dynamic_update_slice(ck, k.astype(ck.dtype), (0, 0, index, 0))
            cv = jax.lax.dynamic_update_slice(cv, v.astype(cv.dtype), (0, 0, index, 0))
            new_kv = (ck, cv)
            k, v = ck.astype(dt), cv.astype(dt)
        out = attend(q, k, v, mask, c.attention_impl, c.attention_query_chunk)
        return jnp.dot(out.reshape(b, t, h * dh), self.o_kernel[...].reshape(h * dh, d).astype(dt)), new_kv


class MLP(nnx.Module):
    """SwiGLU: down(silu(x @ gate) * (x @ up)). gate/up [D, F], down [F, D]."""

    def __init__(self, config: ModelConfig, rngs: nnx.Rngs):
        c, pd = config, config.weight_dtype
        self.gate_kernel = _param(rngs, (c.hidden_size, c.intermediate_size), ("embed", "mlp"), pd)
        self.up_kernel = _param(rngs, (c.hidden_size, c.intermediate_size), ("embed", "mlp"), pd)
        self.down_kernel = _param(rngs, (c.intermediate_size, c.hidden_size), ("mlp", "embed"), pd)

    def __call__(self, x: Array) -> Array:
        dt = x.dtype
        gate = jnp.dot(x, self.gate_kernel[...].astype(dt))  # jnp.dot: visible to LoRA, as in Attention
        up = jnp.dot(x, self.up_kernel[...].astype(dt))
        return jnp.dot(jax.nn.silu(gate) * up, self.down_kernel[...].astype(dt))


def constrain_batch(x: Array) -> Array:
    """Pin an activation [B, ...] to the batch sharding of the mesh in context (``jax.set_mesh``).

    Without it the SPMD partitioner lets the embedding lookup's output inherit the table's sharding
    (its width over "fsdp"), and since "batch" maps to "fsdp" too, every later activation keeps the
    whole batch on every device (it all-gathers rows instead of weights): FSDP's memory saving is lost
    (``python -m toolrl.plan`` showed 8 x the activations on an fsdp=8 mesh). No mesh in context: no-op.
    """
    from toolrl.models.sharding import logical_to_mesh_spec

    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or not set(mesh.axis_names) >= {"data", "fsdp"}:
        return x
    spec = logical_to_mesh_spec(("batch",) + (None,) * (x.ndim - 1), mesh=mesh)
    return jax.lax.with_sharding_constraint(x, spec) if any(spec) else x


class Block(nnx.Module):
    """Pre-norm decoder block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, config: ModelConfig, rngs: nnx.Rngs):
        self.attn_norm = RMSNorm(config.hidden_size, config.rms_norm_eps, config.weight_dtype)
        self.attn = Attention(config, rngs)
        self.mlp_norm = RMSNorm(config.hidden_size, config.rms_norm_eps, config.weight_dtype)
        self.mlp = MLP(config, rngs)

    def __call__(self, x, rope, mask, cache_kv, index):
        x = constrain_batch(x)
        h, new_kv = self.attn(self.attn_norm(x), rope, mask, cache_kv, index)
        x = x + h
        x = x + self.mlp(self.mlp_norm(x))
        return x, new_kv


def run_blocks(layers: Sequence[Block], x: Array, apply: Callable[[Block, Array], Array],
               remat: bool = False) -> Array:
    """``x`` [B, T, D] through every block in order, ``apply(layer, x) -> x`` (no KV cache).

    With ``remat`` the blocks run as one ``lax.scan`` over their stacked parameters, each step under
    ``jax.checkpoint``: the backward pass keeps only each block's input and recomputes the rest.
    An unrolled loop of checkpointed blocks gives the same numbers but saves no memory on XLA's CPU
    backend (its scheduler moves the recomputations back next to the forward pass; jax-ml/jax#19822);
    inside a scan each block is recomputed in its own iteration of the backward loop. Stacking
    copies the block parameters once per call (and their gradients once), which is small next to
    the activations this frees."""
    if not remat:
        for layer in layers:
            x = apply(layer, x)
        return x
    graphdefs, states = zip(*(nnx.split(layer) for layer in layers))
    graphdef = graphdefs[0]
    if any(other != graphdef for other in graphdefs[1:]):
        raise ValueError("remat stacks the blocks' parameters: every block must have the same structure")
    stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), *states)

    @jax.checkpoint
    def step(x, state):
        return apply(nnx.merge(graphdef, state), x)

    x, _ = jax.lax.scan(lambda carry, state: (step(carry, state), None), x, stacked)
    return x


class Decoder(nnx.Module):
    """Causal LM: embedding [V, D], L blocks, final RMSNorm, LM head [D, V] (or the tied embedding)."""

    def __init__(self, config: ModelConfig, rngs: nnx.Rngs | None = None):
        rngs = rngs if rngs is not None else nnx.Rngs(0)
        c = config
        self.config = config
        self.embed = _param(rngs, (c.vocab_size, c.hidden_size), ("vocab", "embed"), c.weight_dtype)
        self.layers = nnx.List([Block(c, rngs) for _ in range(c.num_layers)])
        self.final_norm = RMSNorm(c.hidden_size, c.rms_norm_eps, c.weight_dtype)
        if not c.tie_word_embeddings:
            self.lm_head = _param(rngs, (c.hidden_size, c.vocab_size), ("embed", "vocab"), c.weight_dtype)

    # ----------------------------------------------------------------- pieces
    def unembedding(self) -> Array:
        """The LM head matrix [D, V] (the transposed embedding when tied)."""
        if self.config.tie_word_embeddings:
            return self.embed[...].T
        return self.lm_head[...]

    def hidden_states(self, tokens: Array, positions: Array, attention_mask: Array,
                      cache: KVCache | None = None) -> tuple[Array, KVCache | None]:
        """Final normed hidden states [B, T, D] (compute dtype) and the updated cache."""
        c = self.config
        dt = c.compute_dtype
        attention_mask = attention_mask.astype(bool)
        x = jnp.take(self.embed[...], tokens, axis=0).astype(dt)
        t = tokens.shape[1]
        if cache is None:
            causal = jnp.tril(jnp.ones((t, t), bool))
            mask = causal[None] & attention_mask[:, None, :]  # [B, T, T]
            index = None
            new_mask = None
        else:
            index = cache.index
            new_mask = jax.lax.dynamic_update_slice(cache.mask, attention_mask, (0, index))
            slots = jnp.arange(cache.length)
            query_slots = index + jnp.arange(t)
            mask = new_mask[:, None, :] & (slots[None, None, :] <= query_slots[None, :, None])  # [B, T, S]
        rope = rope_tables(positions, rope_inverse_frequencies(c), dt)  # once, shared by all layers

        if cache is None:
            x = run_blocks(self.layers, x, lambda layer, h: layer(h, rope, mask, None, None)[0], c.remat)
            return self.final_norm(x), None
        new_k, new_v = [], []
        for i, layer in enumerate(self.layers):
            x, (k, v) = layer(x, rope, mask, (cache.k[i], cache.v[i]), index)
            new_k.append(k)
            new_v.append(v)
        new_cache = KVCache(k=tuple(new_k), v=tuple(new_v), mask=new_mask, index=index + t)
        return self.final_norm(x), new_cache

    def logits_from_hidden(self, hidden: Array) -> Array:
        """[..., D] hidden -> [..., V] float32 logits (LM head in the compute dtype, f32 accumulation)."""
        if self.config.tie_word_embeddings:
            # Contract with the [V, D] embedding directly: no transposed copy of the table.
            w = self.embed[...].astype(hidden.dtype)
            return jnp.einsum("...d,vd->...v", hidden, w, preferred_element_type=jnp.float32)
        w = self.lm_head[...].astype(hidden.dtype)
        return jnp.einsum("...d,dv->...v", hidden, w, preferred_element_type=jnp.float32)

    def __call__(self, tokens: Array, positions: Array, attention_mask: Array,
                 cache: KVCache | None = None) -> tuple[Array, KVCache | None]:
        """tokens, positions [B, T] int32; attention_mask [B, T] bool -> (logits [B, T, V] f32, cache)."""
        hidden, new_cache = self.hidden_states(tokens, positions, attention_mask, cache)
        return self.logits_from_hidden(hidden), new_cache


def _head_logprobs(model: Decoder, hidden: Array, targets: Array, temperature: float,
                   chunk_size: int | None) -> Array:
    """log softmax(LM head(hidden) / temperature)[targets]: [B, T, D], [B, T] -> [B, T] float32.

    With ``chunk_size`` the head runs over chunks of positions (``lax.map``), so only [B, chunk, V]
    logits exist at once.
    """
    b, t, d = hidden.shape
    if chunk_size is None or t <= chunk_size:
        return token_logprobs(model.logits_from_hidden(hidden), targets, temperature)
    n = -(-t // chunk_size)
    pad = n * chunk_size - t
    hidden = jnp.pad(hidden, ((0, 0), (0, pad), (0, 0))).reshape(b, n, chunk_size, d).swapaxes(0, 1)
    tgt = jnp.pad(targets, ((0, 0), (0, pad))).reshape(b, n, chunk_size).swapaxes(0, 1)

    def chunk(args: tuple[Array, Array]) -> Array:
        h, y = args
        return token_logprobs(model.logits_from_hidden(h), y, temperature)

    out = jax.lax.map(chunk, (hidden, tgt))  # [n, B, chunk]
    return out.swapaxes(0, 1).reshape(b, n * chunk_size)[:, :t]


def sequence_logprobs(model: Decoder, tokens: Array, attention_mask: Array, positions: Array | None = None,
                      chunk_size: int | None = 128, temperature: float = 1.0) -> Array:
    """log softmax(logits_t / temperature)[tokens[:, t+1]] for every t: returns [B, T-1] float32.

    ``temperature`` must be the sampling temperature for GRPO's importance ratio / KL to compare like
    with like (the sampler returns log-probs under the same tempered distribution).
    The LM head is applied over chunks of ``chunk_size`` positions (``lax.map``), so only
    [B, chunk, V] logits exist at once — the trainer's memory does not scale with T * V.
    Entries whose target is padding are meaningless; mask them with ``attention_mask[:, 1:]``.
    """
    if positions is None:
        positions = left_pad_positions(attention_mask)
    hidden, _ = model.hidden_states(tokens, positions, attention_mask)
    return _head_logprobs(model, hidden[:, :-1], tokens[:, 1:], temperature, chunk_size)


def selected_logprobs(model: Decoder, tokens: Array, attention_mask: Array, gather_index: Array,
                      temperature: float = 1.0, positions: Array | None = None,
                      chunk_size: int | None = 128) -> Array:
    """Log-probs at chosen positions only: [B, K] float32.

    ``gather_index`` [B, K] int32 holds positions t in [0, T-1); entry [b, k] is
    log softmax(logits[b, t] / temperature)[tokens[b, t + 1]] with t = gather_index[b, k] — i.e.
    ``sequence_logprobs(...)[b, gather_index[b, k]]`` — but the trunk runs once and the LM head and
    log-softmax only at the K gathered positions (the loss positions), not at all T. Padding entries
    of ``gather_index`` may point anywhere valid; mask their results. Gradients flow to the trunk and
    head exactly as for the full computation.
    """
    if positions is None:
        positions = left_pad_positions(attention_mask)
    hidden, _ = model.hidden_states(tokens, positions, attention_mask)
    t = tokens.shape[1]
    idx = jnp.clip(gather_index.astype(jnp.int32), 0, t - 2)
    picked = jnp.take_along_axis(hidden, idx[..., None], axis=1)  # [B, K, D]
    targets = jnp.take_along_axis(tokens, idx + 1, axis=1)  # [B, K]
    return _head_logprobs(model, picked, targets, temperature, chunk_size)


def init_model(config: ModelConfig, seed: int = 0) -> Decoder:
    """A randomly initialised decoder (normal(0.02) weights, unit norms, zero biases)."""
    return Decoder(config, nnx.Rngs(seed))

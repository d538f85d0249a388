"""The policy's log-probs and entropy, at every position or only at a packed batch's loss positions,
and the GRPO loss on a packed batch (:mod:`toolrl.rl.packing`). Pure functions of a model and
arrays; :mod:`toolrl.rl.steps` differentiates and jits them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from toolrl.models.decoder import left_pad_positions, token_logprobs
from toolrl.rl import grpo

Batch = dict[str, jax.Array]


def _block_mask(segments: jax.Array) -> jax.Array:
    """[R, W, W] attention mask of the shared layout: causal, and a suffix sees the prefix and itself."""
    w = segments.shape[1]
    causal = jnp.tril(jnp.ones((w, w), bool))
    q, k = segments[:, :, None], segments[:, None, :]
    return causal[None] & (k > 0) & ((k == 1) | (k == q))


def masked_hidden_states(model: nnx.Module, tokens: jax.Array, positions: jax.Array, mask: jax.Array) -> jax.Array:
    """The decoder's trunk with an explicit [R, W, W] attention mask: final normed hidden states [R, W, D].

    Composes the decoder's public pieces (embedding, blocks, final norm, RoPE tables) exactly as
    `Decoder.hidden_states` does, but with the given mask instead of causal & padding (the decoder
    takes only a [B, T] padding mask)."""
    from toolrl.models import decoder as dec

    c = model.config
    dt = c.compute_dtype
    x = jnp.take(model.embed[...], tokens, axis=0).astype(dt)
    rope = dec.rope_tables(positions, dec.rope_inverse_frequencies(c), dt)
    x = dec.run_blocks(model.layers, x, lambda layer, h: layer(h, rope, mask, None, None)[0], c.remat)
    return model.final_norm(x)


def token_entropy(logits: jax.Array, temperature: float = 1.0) -> jax.Array:
    """Entropy of softmax(logits / T) per position: [..., V] -> [...] float32, no gradient (a diagnostic)."""
    z = jax.lax.stop_gradient(logits).astype(jnp.float32)
    if temperature != 1.0:
        z = z / temperature
    lse = jax.nn.logsumexp(z, axis=-1)
    return lse - jnp.sum(jnp.exp(z - lse[..., None]) * z, axis=-1)


def _head_parts(model: nnx.Module, hidden: jax.Array, targets: jax.Array, temperature: float
                ) -> tuple[jax.Array, jax.Array]:
    """(log-prob of the targets, entropy) of softmax(head(hidden) / T), from the same logits."""
    logits = model.logits_from_hidden(hidden)
    return token_logprobs(logits, targets, temperature), token_entropy(logits, temperature)


def _gathered_head(model: nnx.Module, picked: jax.Array, targets: jax.Array, temperature: float,
                   chunk: int = 128) -> tuple[jax.Array, jax.Array]:
    """(log softmax(head(picked) / T)[targets], entropy): [N, K, D], [N, K] -> 2 x [N, K], over chunks
    of K (lax.map) so only [N, chunk, V] logits exist at once."""
    n, k, d = picked.shape
    if k <= chunk:
        return _head_parts(model, picked, targets, temperature)
    m = -(-k // chunk)
    pad = m * chunk - k
    h = jnp.pad(picked, ((0, 0), (0, pad), (0, 0))).reshape(n, m, chunk, d).swapaxes(0, 1)
    y = jnp.pad(targets, ((0, 0), (0, pad))).reshape(n, m, chunk).swapaxes(0, 1)
    outs = jax.lax.map(lambda a: _head_parts(model, a[0], a[1], temperature), (h, y))
    return tuple(o.swapaxes(0, 1).reshape(n, m * chunk)[:, :k] for o in outs)


def sequence_logprobs_entropy(model: nnx.Module, tokens: jax.Array, attention_mask: jax.Array,
                              temperature: float = 1.0) -> tuple[jax.Array, jax.Array]:
    """`decoder.sequence_logprobs` [B, L-1] and the policy's entropy at the same positions [B, L-1],
    from the same logits (one forward pass)."""
    hidden, _ = model.hidden_states(tokens, left_pad_positions(attention_mask), attention_mask)
    return _gathered_head(model, hidden[:, :-1], tokens[:, 1:], temperature)


def packed_logprobs_entropy(model: nnx.Module, batch: Batch, temperature: float = 1.0
                            ) -> tuple[jax.Array, jax.Array]:
    """Log-probs and the policy's entropy at the packed batch's loss positions: 2 x [R, S, K] float32."""
    r, s, k = batch["gather"].shape
    if "segments" not in batch:  # plain layout, S = 1: as `decoder.selected_logprobs`
        tokens, attn = batch["tokens"], batch["attention_mask"]
        hidden, _ = model.hidden_states(tokens, left_pad_positions(attn), attn)
        idx = jnp.clip(batch["gather"][:, 0].astype(jnp.int32), 0, tokens.shape[1] - 2)
        picked = jnp.take_along_axis(hidden, idx[..., None], axis=1)  # [R, K, D]
        targets = jnp.take_along_axis(tokens, idx + 1, axis=1)
        return tuple(o[:, None] for o in _gathered_head(model, picked, targets, temperature))
    hidden = masked_hidden_states(model, batch["tokens"], batch["positions"], _block_mask(batch["segments"]))
    picked = jnp.take_along_axis(hidden, batch["gather"].reshape(r, s * k)[..., None], axis=1)  # [R, S*K, D]
    outs = _gathered_head(model, picked.reshape(r * s, k, -1), batch["targets"].reshape(r * s, k), temperature)
    return tuple(o.reshape(r, s, k) for o in outs)


def packed_logprobs(model: nnx.Module, batch: Batch, temperature: float = 1.0) -> jax.Array:
    """Log-probs at the packed batch's loss positions: [R, S, K] float32 (either layout)."""
    return packed_logprobs_entropy(model, batch, temperature)[0]


def _flat(x: jax.Array) -> jax.Array:
    return x.reshape(-1, *x.shape[2:])


def packed_denominator(batch: Batch, loss_config: grpo.LossConfig) -> jax.Array:
    """The aggregation's denominator over a whole packed batch (micro-batches divide by it)."""
    mask = _flat(batch["loss_mask"])
    return jnp.maximum(grpo.aggregate_parts(jnp.zeros(mask.shape, jnp.float32), mask, loss_config.aggregation,
                                            loss_config.constant_tokens)[1], 1.0)


def packed_grpo_loss(model: nnx.Module, batch: Batch, loss_config: grpo.LossConfig, temperature: float = 1.0,
                     use_old_logp: bool = False, denominator: jax.Array | None = None
                     ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """`grpo.grpo_loss` on a packed batch (sequences = R·S slots, tokens = their K loss positions)."""
    logp, entropy = (_flat(x) for x in packed_logprobs_entropy(model, batch, temperature))  # [R*S, K]
    old = _flat(batch["old_logp"]) if use_old_logp else jax.lax.stop_gradient(logp)
    ref = _flat(batch["ref_logp"]) if "ref_logp" in batch else None
    return grpo.grpo_loss(logp, old, ref, _flat(batch["advantages"]), _flat(batch["loss_mask"]), loss_config,
                          denominator, entropy=entropy)

"""Batched sampling with a KV cache under one jit (the rollout's generation step).

A thin layer over the decoder's KV-cache forward (`toolrl.models.decoder`): prefill the left-padded
prompts, then sample `max_new_tokens` tokens in a `lax.fori_loop`. Rows stop at the end token (their
later tokens are padding, completion mask False). Shapes are static per (batch, prompt bucket), so a
run compiles once per prompt-length bucket.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import nnx

from toolrl.models.decoder import KVCache, token_logprobs

Array = jax.Array


def sample_logits(key: Array, logits: Array, temperature: float, top_k: int) -> Array:
    """Samples one token per row. logits: [B, V] float32 -> [B] int32."""
    logits = logits / temperature
    if top_k > 0:
        kth = jax.lax.top_k(logits, top_k)[0][:, -1:]
        logits = jnp.where(logits < kth, -jnp.inf, logits)
    return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)


def make_generate(graphdef: nnx.GraphDef, max_new_tokens: int, temperature: float, top_k: int,
                  end_id: int, pad_id: int, shardings: Any = None) -> Callable[..., tuple[Array, Array, Array]]:
    """A jitted `generate(state, tokens, mask, key) -> (new_tokens, logprobs, completion_mask)`.

    Args (of the returned function):
      state: the model's nnx.State (parameters).
      tokens: [B, P] int32 left-padded prompts.
      mask: [B, P] bool, True on real prompt tokens.
      key: PRNG key.

    Returns:
      new_tokens [B, N] int32 (pad after the end token), logprobs [B, N] float32 of the sampled
      tokens under the sampling distribution's logits (before temperature), completion_mask [B, N]
      bool (True up to and including the end token).
    """

    def generate(state: nnx.State, tokens: Array, mask: Array, key: Array) -> tuple[Array, Array, Array]:
        model = nnx.merge(graphdef, state)
        b, p = tokens.shape
        n = max_new_tokens
        cache = KVCache.init(model.config, b, p + n)
        positions = jnp.maximum(jnp.cumsum(mask.astype(jnp.int32), axis=1) - 1, 0)
        logits, cache = model(tokens, positions, mask, cache)
        last = logits[:, -1]
        next_pos = mask.sum(axis=1).astype(jnp.int32)  # [B]

        def body(i, carry):
            cache, last, pos, done, out, lps, cmask, key = carry
            key, sub = jax.random.split(key)
            tok = sample_logits(sub, last, temperature, top_k)
            lp = token_logprobs(last, tok)
            active = ~done
            tok = jnp.where(active, tok, pad_id)
            out = out.at[:, i].set(tok)
            lps = lps.at[:, i].set(jnp.where(active, lp, 0.0))
            cmask = cmask.at[:, i].set(active)
            done = done | (tok == end_id)
            logits, cache = model(tok[:, None], pos[:, None], active[:, None], cache)
            return cache, logits[:, 0], pos + 1, done, out, lps, cmask, key

        init = (cache, last, next_pos, jnp.zeros((b,), bool), jnp.full((b, n), pad_id, jnp.int32),
                jnp.zeros((b, n), jnp.float32), jnp.zeros((b, n), bool), key)
        _, _, _, _, out, lps, cmask, _ = jax.lax.fori_loop(0, n, body, init)
        return out, lps, cmask

    if shardings is None:
        return jax.jit(generate)
    state_sh, batch_sh = shardings
    return jax.jit(generate, in_shardings=(state_sh, batch_sh, batch_sh, None))


@functools.lru_cache(maxsize=None)
def bucket(length: int, multiple: int = 32) -> int:
    """Rounds a length up to a multiple (limits recompilation to one program per bucket)."""
    return -(-length // multiple) * multiple

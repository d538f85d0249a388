"""The rollout's generation step: the models package's jitted KV-cache sampler, bound to settings.

`toolrl.models.sampler.generate_arrays` prefills the left-padded prompts and samples under one jit
(stopping early once every row has emitted a stop token); this module fixes the sampling settings
for a run and exposes the `generate(state, tokens, mask, key)` shape the rollout uses. Shapes are
static per (batch, prompt bucket), so a run compiles once per prompt-length bucket.
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
from flax import nnx

from toolrl.models.sampler import SamplingParams, generate_arrays

Array = jax.Array


def make_generate(graphdef: nnx.GraphDef, max_new_tokens: int, temperature: float, top_k: int,
                  end_id: int, pad_id: int) -> Callable[[nnx.State, Array, Array, Array], tuple[Array, Array, Array]]:
    """`generate(state, tokens, mask, key) -> (new_tokens, logprobs, completion_mask)`.

    Args (of the returned function):
      state: the model's nnx.State (current parameters; no recompilation when they change).
      tokens: [B, P] int32 left-padded prompts (placed with the batch sharding on a mesh).
      mask: [B, P] bool, True on real prompt tokens.
      key: PRNG key.

    Returns:
      new_tokens [B, N] int32 (pad after the end token), logprobs [B, N] float32 (log pi at
      temperature 1), completion_mask [B, N] bool (True up to and including the end token).
    """
    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k,
                            stop_token_ids=(end_id,))

    def generate(state: nnx.State, tokens: Array, mask: Array, key: Array) -> tuple[Array, Array, Array]:
        out = generate_arrays(graphdef, state, tokens, mask, key, params=params, pad_id=pad_id)
        return out["tokens"], out["logprobs"], out["mask"]

    return generate


@functools.lru_cache(maxsize=None)
def bucket(length: int, multiple: int = 32) -> int:
    """Rounds a length up to a multiple (limits recompilation to one program per bucket)."""
    return -(-length // multiple) * multiple

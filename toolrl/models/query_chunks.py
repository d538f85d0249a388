"""Row-wise computations over chunks of query rows, one chunk at a time: bounded transient memory.

`decoder.attend` (``ModelConfig.attention_query_chunk``) runs its "xla" attention through
:func:`map_query_chunks`: a prefill of T tokens then holds [B, K, G, C, S] scores (and the mask,
softmax and probabilities of that size) instead of [B, K, G, T, S]. Measured with XLA's memory
analysis of the compiled program (``benchmarks/attention_memory.py``).

Why a ``lax.map`` and not a Python loop of slices: XLA schedules the unrolled chunks side by side,
so their scores coexist (XLA:CPU plans 5,184 MiB of temporaries for 16 chunks of a 4096-token prefill
at batch 8 on SmolLM2-135M's heads, against 9,216 MiB whole; the loop plans 648 MiB).

Why every chunk has C rows (the last one starts at T - C and overlaps its predecessor, whose rows are
kept): one dot shape for every row. XLA:CPU (YNNPACK) rounds a dot of few rows (below about 50)
differently from a tall one, so a short remainder chunk would not give the whole path's bits; C rows
cost at most C - 1 rows of extra work.

Why ``jax.checkpoint`` on each chunk: without it a gradient keeps every chunk's probabilities for the
backward pass, T rows again; with it each chunk is recomputed in its own iteration of the backward
loop (one more forward of the scores and softmax). A forward pass is unchanged by it.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

Array = jax.Array


def map_query_chunks(fn: Callable[[Array, Array], Array], q: Array, mask: Array, chunk: int) -> Array:
    """``fn(q, mask)`` computed ``chunk`` query rows at a time (0 < chunk < T).

    q: [B, T, ...] queries, mask: [B, T, ...] their visibility rows; ``fn`` maps [B, C, ...] rows of
    both to [B, C, ...] outputs, each output row depending only on its own query and mask rows (and on
    whatever ``fn`` closes over: keys, values). Returns [B, T, ...], the rows of ``fn`` over all T.
    The ``ceil(T / chunk)`` chunks run in a ``lax.map`` under ``jax.checkpoint`` (module docstring).
    """
    t = q.shape[1]
    if not 0 < chunk < t:
        raise ValueError(f"chunk={chunk} must be in (0, T={t})")
    n = -(-t // chunk)
    starts = jnp.minimum(jnp.arange(n, dtype=jnp.int32) * chunk, t - chunk)  # the last one ends at T

    def one(start: Array) -> Array:
        rows = jax.lax.dynamic_slice_in_dim(q, start, chunk, axis=1)
        visible = jax.lax.dynamic_slice_in_dim(mask, start, chunk, axis=1)
        return fn(rows, visible)

    # prevent_cse=False: inside a loop XLA cannot merge the recomputation with the forward pass anyway.
    out = jax.lax.map(jax.checkpoint(one, prevent_cse=False), starts)  # [n, B, chunk, ...]
    head = out[:n - 1].swapaxes(0, 1).reshape(out.shape[1], (n - 1) * chunk, *out.shape[3:])
    tail = out[n - 1][:, n * chunk - t:]  # rows (n - 1) * chunk .. T - 1, from the last chunk
    return jnp.concatenate([head, tail], axis=1)

"""Jitted, sharded train steps over an nnx (model, optimizer) state: GRPO, SFT, and log-prob passes.

Each builder takes the split graph definition and returns a `jax.jit` function of pure pytrees, with
explicit in/out shardings when a mesh is given (parameters and optimizer moments as the model's
logical-axis rules place them, the batch split over ("data", "fsdp")). The state is donated: an
update rewrites the parameters in place.

Batch dict keys (all [B, L] unless noted):
  tokens int32, attention_mask bool, loss_mask bool (policy tokens), advantages [B] float32,
  valid [B] bool (sequence counts in the loss), old_logp / ref_logp [B, L-1] float32 (optional).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from toolrl.models.decoder import left_pad_positions, sequence_logprobs, token_logprobs
from toolrl.models.sharding import batch_sharding
from toolrl.rl import grpo

Batch = dict[str, jax.Array]


def make_optimizer(model: nnx.Module, learning_rate: float, warmup_steps: int = 0, weight_decay: float = 0.0,
                   b1: float = 0.9, b2: float = 0.99, grad_clip: float = 1.0) -> nnx.Optimizer:
    """AdamW with optional linear warmup and global-norm clipping, over the model's nnx.Params."""
    schedule = (optax.linear_schedule(0.0, learning_rate, warmup_steps) if warmup_steps
                else optax.constant_schedule(learning_rate))
    parts = [optax.clip_by_global_norm(grad_clip)] if grad_clip > 0 else []
    parts.append(optax.adamw(schedule, b1=b1, b2=b2, weight_decay=weight_decay))
    return nnx.Optimizer(model, optax.chain(*parts), wrt=nnx.Param)


def state_shardings(state: Any) -> Any:
    """The shardings the state's arrays already have (set when the model/optimizer were placed)."""
    return jax.tree.map(lambda x: x.sharding, state)


def _batch_shardings(mesh: Mesh | None, batch_spec: dict[str, int]) -> Any:
    if mesh is None:
        return None
    return {k: batch_sharding(mesh, ndim) for k, ndim in batch_spec.items()}


# Per-update metrics accumulated over micro-batches: token-weighted means, except pg_loss (adds like the loss).
MICRO_KEYS = ("kl", "clip_fraction", "clip_low", "clip_high", "ratio_mean", "entropy", "pg_loss")

GRPO_BATCH = {"tokens": 2, "attention_mask": 2, "loss_mask": 2, "advantages": 1, "valid": 1,
              "old_logp": 2, "ref_logp": 2}
SFT_BATCH = {"tokens": 2, "attention_mask": 2, "loss_mask": 2}


def make_grpo_step(graphdef: nnx.GraphDef, loss_config: grpo.LossConfig, mesh: Mesh | None, state: Any,
                   use_old_logp: bool, micro_batches: int = 1, temperature: float = 1.0) -> Callable[[Any, Batch], tuple[Any, dict[str, jax.Array]]]:
    """`step(state, batch) -> (state, metrics)`: one GRPO gradient update.

    Args:
      graphdef: from `nnx.split((model, optimizer))`.
      loss_config: static loss hyper-parameters.
      mesh: the device mesh (None: let jit place things).
      state: an example state (its shardings are reused for the output).
      use_old_logp: read batch["old_logp"] (several updates per rollout); otherwise the sampling
        policy is the current one and old_logp = stop_gradient(logp) (ratio 1, clip inactive).
      micro_batches: split the batch into this many chunks and accumulate gradients (`lax.scan`):
        activation memory / micro_batches, same gradient (each chunk's numerator is divided by the
        whole batch's denominator, `grpo.aggregate_parts`).
      temperature: the sampling temperature; log-probs are those of softmax(logits / T), the
        distribution the rollout sampled from (TRL and verl do the same).
    """

    def micro_loss(model: nnx.Module, mb: Batch, total_den: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        mask = mb["loss_mask"][:, 1:] & mb["valid"][:, None]
        logp, entropy = sequence_logprobs_entropy(model, mb["tokens"], mb["attention_mask"], temperature)  # [b, L-1]
        old = mb["old_logp"] if use_old_logp else jax.lax.stop_gradient(logp)
        return grpo.grpo_loss(logp, old, mb.get("ref_logp"), mb["advantages"], mask, loss_config, total_den,
                              entropy=entropy)

    def step(state: Any, batch: Batch) -> tuple[Any, dict[str, jax.Array]]:
        model, optimizer = nnx.merge(graphdef, state)
        full_mask = batch["loss_mask"][:, 1:] & batch["valid"][:, None]
        total_den = jnp.maximum(grpo.aggregate_parts(jnp.zeros(full_mask.shape, jnp.float32), full_mask,
                                                     loss_config.aggregation, loss_config.constant_tokens)[1], 1.0)
        # Differentiate a pure function of the parameters (not the module): it can run inside scan.
        mgraph, params, rest = nnx.split(model, nnx.Param, ...)

        def params_loss(params: Any, mb: Batch, total_den: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
            return micro_loss(nnx.merge(mgraph, params, rest), mb, total_den)

        grad_fn = jax.value_and_grad(params_loss, has_aux=True)
        if micro_batches == 1:
            (loss, metrics), grads = grad_fn(params, batch, total_den)
        else:
            chunks = jax.tree.map(lambda x: x.reshape(micro_batches, -1, *x.shape[1:]), batch)
            zero = jax.tree.map(jnp.zeros_like, params)

            def body(carry, mb):
                grads, loss, tokens, sums = carry
                (l, m), g = grad_fn(params, mb, total_den)
                n = m["tokens"]
                # Token-weighted sums of the per-token diagnostics; pg_loss adds like the loss.
                sums = {k: sums[k] + (m[k] * n if k not in ("pg_loss",) else m[k]) for k in sums}
                return (jax.tree.map(jnp.add, grads, g), loss + l, tokens + n, sums), None

            keys = MICRO_KEYS
            init = (zero, jnp.zeros(()), jnp.zeros(()), {k: jnp.zeros(()) for k in keys})
            (grads, loss, tokens, sums), _ = jax.lax.scan(body, init, chunks)
            metrics = {k: sums[k] / jnp.maximum(tokens, 1.0) for k in keys if k != "pg_loss"}
            # Each chunk's pg_loss is already divided by the whole batch's denominator: their sum is
            # the whole batch's pg_loss, as for the loss.
            metrics["pg_loss"] = sums["pg_loss"]
            metrics["tokens"] = tokens
        metrics = dict(metrics, loss=loss, grad_norm=optax.global_norm(grads))
        optimizer.update(model, grads)
        return nnx.state((model, optimizer)), metrics

    keys = {k: v for k, v in GRPO_BATCH.items() if k != "old_logp" or use_old_logp}
    if loss_config.beta == 0.0:
        keys.pop("ref_logp")
    return _jit(step, mesh, state, keys)


def make_sft_step(graphdef: nnx.GraphDef, mesh: Mesh | None, state: Any,
                  loss_positions_only: bool = True) -> Callable[[Any, Batch], tuple[Any, dict[str, jax.Array]]]:
    """`step(state, batch) -> (state, metrics)`: one next-token NLL update on policy tokens.

    With `loss_positions_only` the LM head and log-softmax run only at the positions whose next token
    is a policy token (same loss and gradient): the returned callable reads the [B, L] loss mask back
    to the host, gathers those positions into a [B, K] index (K on a small ladder, one compiled
    program per K) and runs the gathered step. Batches that are not fully addressable from this
    process (multi-host) take the plain step.
    """
    plain = _make_sft_step(graphdef, mesh, state, False)
    if not loss_positions_only:
        return plain
    gathered: dict[int, Callable] = {}

    def step(state: Any, batch: Batch) -> tuple[Any, dict[str, jax.Array]]:
        if not getattr(batch["loss_mask"], "is_fully_addressable", True):
            return plain(state, batch)
        import numpy as np

        host = np.asarray(batch["loss_mask"])
        per_row = [loss_positions(row) for row in host]
        k = _ladder(max(max((len(p) for p in per_row), default=1), 1), 16)
        index = np.zeros((host.shape[0], k), np.int32)
        valid = np.zeros((host.shape[0], k), bool)
        for i, p in enumerate(per_row):
            index[i, :len(p)] = p
            valid[i, :len(p)] = True
        extra = to_device_batch({"gather": index, "gather_mask": valid}, mesh)
        if k not in gathered:
            gathered[k] = _make_sft_step(graphdef, mesh, state, True)
        return gathered[k](state, dict(batch, **extra))

    return step


def _make_sft_step(graphdef: nnx.GraphDef, mesh: Mesh | None, state: Any, gathered: bool) -> Callable:
    def step(state: Any, batch: Batch) -> tuple[Any, dict[str, jax.Array]]:
        model, optimizer = nnx.merge(graphdef, state)

        def loss_fn(model: nnx.Module) -> tuple[jax.Array, dict[str, jax.Array]]:
            if gathered:
                from toolrl.models.decoder import selected_logprobs

                logp = selected_logprobs(model, batch["tokens"], batch["attention_mask"], batch["gather"])
                return grpo.sft_loss(logp, batch["gather_mask"])
            logp = sequence_logprobs(model, batch["tokens"], batch["attention_mask"])
            return grpo.sft_loss(logp, batch["loss_mask"][:, 1:])

        (loss, metrics), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
        metrics = dict(metrics, loss=loss, grad_norm=optax.global_norm(grads))
        optimizer.update(model, grads)
        return nnx.state((model, optimizer)), metrics

    return _jit(step, mesh, state, dict(SFT_BATCH, gather=2, gather_mask=2) if gathered else SFT_BATCH)


def _jit(step: Callable, mesh: Mesh | None, state: Any, batch_keys: dict[str, int]) -> Callable:
    if mesh is None:
        return jax.jit(step, donate_argnums=0)
    state_sh = state_shardings(state)
    batch_sh = _batch_shardings(mesh, batch_keys)
    replicated = NamedSharding(mesh, PartitionSpec())
    return jax.jit(step, donate_argnums=0, in_shardings=(state_sh, batch_sh),
                   out_shardings=(state_sh, replicated))


def make_logprob_fn(graphdef: nnx.GraphDef, mesh: Mesh | None, state: Any,
                    temperature: float = 1.0) -> Callable[[Any, jax.Array, jax.Array], jax.Array]:
    """`logp(model_state, tokens, attention_mask) -> [B, L-1]` at `temperature` (reference / old-policy pass)."""

    def fn(state: Any, tokens: jax.Array, attention_mask: jax.Array) -> jax.Array:
        model = nnx.merge(graphdef, state)
        return sequence_logprobs(model, tokens, attention_mask, temperature=temperature)

    if mesh is None:
        return jax.jit(fn)
    b2 = batch_sharding(mesh, 2)
    return jax.jit(fn, in_shardings=(state_shardings(state), b2, b2), out_shardings=b2)


def to_device_batch(batch: dict[str, Any], mesh: Mesh | None) -> Batch:
    """Host arrays -> device arrays placed with the batch sharding."""
    if mesh is None:
        return {k: jnp.asarray(v) for k, v in batch.items()}
    return {k: jax.device_put(v, batch_sharding(mesh, v.ndim)) for k, v in batch.items()}


# ============================================================================= fast path
#
# The plain GRPO step above runs the LM head and log-softmax at every position of every (padded)
# row. The fast path below computes exactly the same loss and gradient with less work:
#
# * loss positions only: the head runs only at the K positions t whose next token is a policy token
#   (`loss_mask[t + 1]`), gathered per sequence (`selected_logprobs`), K padded to a small ladder;
# * shared prefix (Prefix Grouper, arXiv 2506.05433): rows that start with the same tokens (a GRPO
#   group's prompt; in turn mode the whole golden history) are packed into ONE row
#   [prefix, suffix_1, ..., suffix_n] with a block attention mask: the prefix attends to itself
#   causally, suffix i to the prefix and to itself causally, with positions restarting after the
#   prefix. Every token then sees exactly the tokens (and RoPE positions) it sees in its own row, so
#   each hidden state equals the plain one (up to float summation order), and the gradient of the
#   prefix is the sum of its G rows' gradients, as in the plain batch — the prefix is run once.
#
# Packed batch (host numpy, then device), R packed rows of width W, S sequence slots per packed row,
# K loss positions per sequence:
#   tokens [R, W] int32; attention_mask [R, W] bool (plain layout) or segments [R, W] int32 + positions
#   [R, W] int32 (shared layout: 0 = padding, 1 = shared prefix, 2 + i = suffix of slot i);
#   gather [R, S, K] int32 (the packed-row position whose logits score the token), targets [R, S, K]
#   int32 (the scored token), loss_mask [R, S, K] bool, advantages [R, S] float32, optional
#   old_logp / ref_logp [R, S, K] float32.

PACKED_BATCH = {"tokens": 2, "attention_mask": 2, "segments": 2, "positions": 2, "gather": 3, "targets": 3,
                "loss_mask": 3, "advantages": 2, "old_logp": 3, "ref_logp": 3}


def loss_positions(flags: Any) -> Any:
    """Positions t (0-based, t < len - 1) whose logits score a policy token: flags[t + 1] set."""
    import numpy as np

    return np.flatnonzero(np.asarray(flags, bool)[1:])


def _ladder(n: int, multiple: int) -> int:
    """n rounded up on the 2^k / 1.5·2^k ladder, then to a multiple of `multiple` (few compiles)."""
    size = max(int(multiple), 1)
    while size < n:
        size = size * 3 // 2 if size & (size - 1) == 0 and size >= 4 else 1 << size.bit_length()
    return -(-size // multiple) * multiple


def pack_plain(rows: Any, advantages: Any, pad_id: int, n_rows: int, width: int, k: int) -> dict[str, Any]:
    """Plain layout (one sequence per row, S = 1) with the K loss positions of each row.

    rows: (ids, flags) per sequence (at most n_rows, each at most `width` tokens); advantages [n].
    Rows beyond len(rows) are padding (no loss)."""
    import numpy as np

    tokens = np.full((n_rows, width), pad_id, np.int32)
    attn = np.zeros((n_rows, width), bool)
    gather = np.zeros((n_rows, 1, k), np.int32)
    targets = np.full((n_rows, 1, k), pad_id, np.int32)
    mask = np.zeros((n_rows, 1, k), bool)
    adv = np.zeros((n_rows, 1), np.float32)
    attn[:, 0] = True  # padding rows hold one pad token (as the plain path's padding rows)
    for i, (ids, flags) in enumerate(rows):
        ids = np.asarray(ids, np.int32)
        tokens[i, :len(ids)] = ids
        attn[i, :len(ids)] = True
        pos = loss_positions(flags)
        gather[i, 0, :len(pos)] = pos
        targets[i, 0, :len(pos)] = ids[pos + 1]
        mask[i, 0, :len(pos)] = True
        adv[i, 0] = advantages[i]
    return {"tokens": tokens, "attention_mask": attn, "gather": gather, "targets": targets, "loss_mask": mask,
            "advantages": adv}


def _common_prefix(a: Any, b: Any) -> int:
    import numpy as np

    n = min(len(a), len(b))
    diff = np.flatnonzero(np.asarray(a[:n]) != np.asarray(b[:n]))
    return int(diff[0]) if len(diff) else n


def row_cost(length: int, linear: float, quadratic: float) -> float:
    """Trunk work of one row of `length` tokens: per-token matmuls + dense (masked) attention pairs."""
    return linear * length + quadratic * length * length


def trunk_costs(model_config: Any) -> tuple[float, float]:
    """(FLOPs per token, FLOPs per attended query-key pair) of the trunk's forward, per the config."""
    c = model_config
    d, h, kv, dh, f = c.hidden_size, c.num_heads, c.num_kv_heads, c.head_dim, c.intermediate_size
    per_layer = 2 * (d * (h + 2 * kv) * dh + h * dh * d + 3 * d * f)
    return float(per_layer * c.num_layers), float(4 * h * dh * c.num_layers)


def plan_groups(rows: Any, max_slots: int, linear: float = 1.0, quadratic: float = 0.0,
                max_len: int | None = None) -> list[list[int]]:
    """Consecutive rows packed into shared-prefix groups (at most `max_slots` rows each).

    Greedy: a row joins the current group when the group's packed row [common prefix, suffixes]
    with it costs less trunk work (`row_cost`) than the group plus the row on its own, and stays
    within `max_len` tokens (the dense [W, W] attention of a long packed row costs memory)."""
    groups: list[list[int]] = []
    prefix = 0
    lengths = [len(ids) for ids, _ in rows]
    for i, (ids, _) in enumerate(rows):
        if groups and len(groups[-1]) < max_slots:
            g = groups[-1]
            new_prefix = min(prefix, _common_prefix(rows[g[0]][0], ids))
            packed_now = prefix + sum(lengths[j] - prefix for j in g)
            packed_new = new_prefix + sum(lengths[j] - new_prefix for j in g) + lengths[i] - new_prefix
            if (max_len is None or packed_new <= max_len) and row_cost(packed_new, linear, quadratic) < (
                    row_cost(packed_now, linear, quadratic)
                                                          + row_cost(lengths[i], linear, quadratic)):
                g.append(i)
                prefix = new_prefix
                continue
        groups.append([i])
        prefix = lengths[i]
    return groups


def packed_length(rows: Any, group: list[int]) -> int:
    """Tokens of a group's packed row: the common prefix once plus every suffix."""
    prefix = min((_common_prefix(rows[group[0]][0], rows[j][0]) for j in group), default=0)
    prefix = min([prefix] + [len(rows[j][0]) for j in group])
    return prefix + sum(len(rows[j][0]) - prefix for j in group)


def pack_shared(rows: Any, advantages: Any, pad_id: int, groups: list[list[int]], n_rows: int, width: int,
                slots: int, k: int) -> dict[str, Any]:
    """Shared-prefix layout: group g -> packed row g = [prefix, suffix of each member] (see above)."""
    import numpy as np

    tokens = np.full((n_rows, width), pad_id, np.int32)
    segments = np.zeros((n_rows, width), np.int32)
    positions = np.zeros((n_rows, width), np.int32)
    gather = np.zeros((n_rows, slots, k), np.int32)
    targets = np.full((n_rows, slots, k), pad_id, np.int32)
    mask = np.zeros((n_rows, slots, k), bool)
    adv = np.zeros((n_rows, slots), np.float32)
    for r, group in enumerate(groups):
        members = [np.asarray(rows[j][0], np.int32) for j in group]
        prefix = min(min(len(m) for m in members),
                     min(_common_prefix(members[0], m) for m in members))
        tokens[r, :prefix] = members[0][:prefix]
        segments[r, :prefix] = 1
        positions[r, :prefix] = np.arange(prefix)
        offset = prefix
        for s, (j, ids) in enumerate(zip(group, members)):
            n = len(ids) - prefix
            tokens[r, offset:offset + n] = ids[prefix:]
            segments[r, offset:offset + n] = 2 + s
            positions[r, offset:offset + n] = np.arange(prefix, len(ids))
            pos = loss_positions(rows[j][1])
            # Position t of sequence j lives at t in the shared prefix, else at offset + (t - prefix).
            gather[r, s, :len(pos)] = np.where(pos < prefix, pos, offset + pos - prefix)
            targets[r, s, :len(pos)] = ids[pos + 1]
            mask[r, s, :len(pos)] = True
            adv[r, s] = advantages[j]
            offset += n
    return {"tokens": tokens, "segments": segments, "positions": positions, "gather": gather, "targets": targets,
            "loss_mask": mask, "advantages": adv}


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


def packed_keys(shared: bool, extra: tuple[str, ...]) -> dict[str, int]:
    names = (("segments", "positions") if shared else ("attention_mask",)) + (
        "tokens", "gather", "targets", "loss_mask", "advantages") + extra
    return {n: PACKED_BATCH[n] for n in names}


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


def make_packed_grpo_step(graphdef: nnx.GraphDef, loss_config: grpo.LossConfig, mesh: Mesh | None, state: Any,
                          use_old_logp: bool, micro_batches: int = 1, temperature: float = 1.0,
                          shared: bool = False) -> Callable[[Any, Batch], tuple[Any, dict[str, jax.Array]]]:
    """`step(state, packed_batch) -> (state, metrics)`: the GRPO update of `make_grpo_step` on a packed
    batch (`pack_plain` / `pack_shared`): same loss, gradient and metrics, the head only at loss positions.

    `micro_batches` splits the R packed rows (a shared-layout row is a whole group); the loss of the
    "constant" aggregation needs loss_config.constant_tokens > 0 (the plain T is not known here).
    """

    def micro_loss(model: nnx.Module, mb: Batch, total_den: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        return packed_grpo_loss(model, mb, loss_config, temperature, use_old_logp, total_den)

    def step(state: Any, batch: Batch) -> tuple[Any, dict[str, jax.Array]]:
        model, optimizer = nnx.merge(graphdef, state)
        total_den = packed_denominator(batch, loss_config)
        mgraph, params, rest = nnx.split(model, nnx.Param, ...)

        def params_loss(params: Any, mb: Batch, total_den: jax.Array):
            return micro_loss(nnx.merge(mgraph, params, rest), mb, total_den)

        grad_fn = jax.value_and_grad(params_loss, has_aux=True)
        if micro_batches == 1:
            (loss, metrics), grads = grad_fn(params, batch, total_den)
        else:
            chunks = jax.tree.map(lambda x: x.reshape(micro_batches, -1, *x.shape[1:]), batch)
            keys = MICRO_KEYS

            def body(carry, mb):
                grads, loss, tokens, sums = carry
                (l, m), g = grad_fn(params, mb, total_den)
                n = m["tokens"]
                sums = {k: sums[k] + (m[k] * n if k != "pg_loss" else m[k]) for k in sums}
                return (jax.tree.map(jnp.add, grads, g), loss + l, tokens + n, sums), None

            init = (jax.tree.map(jnp.zeros_like, params), jnp.zeros(()), jnp.zeros(()),
                    {k: jnp.zeros(()) for k in keys})
            (grads, loss, tokens, sums), _ = jax.lax.scan(body, init, chunks)
            metrics = {k: sums[k] / jnp.maximum(tokens, 1.0) for k in keys if k != "pg_loss"}
            metrics["pg_loss"] = sums["pg_loss"]  # chunk parts over the whole denominator: they add
            metrics["tokens"] = tokens
        metrics = dict(metrics, loss=loss, grad_norm=optax.global_norm(grads))
        optimizer.update(model, grads)
        return nnx.state((model, optimizer)), metrics

    extra = (("old_logp",) if use_old_logp else ()) + (("ref_logp",) if loss_config.beta > 0.0 else ())
    return _jit(step, mesh, state, packed_keys(shared, extra))


def make_packed_logprob_fn(graphdef: nnx.GraphDef, mesh: Mesh | None, state: Any, temperature: float = 1.0,
                           shared: bool = False) -> Callable[[Any, Batch], jax.Array]:
    """`logp(model_state, packed_batch) -> [R, S, K]` (old-policy / reference pass on a packed batch)."""
    keys = packed_keys(shared, ())

    def fn(state: Any, batch: Batch) -> jax.Array:
        return packed_logprobs(nnx.merge(graphdef, state), {k: batch[k] for k in keys}, temperature)

    if mesh is None:
        return jax.jit(fn)
    return jax.jit(fn, in_shardings=(state_shardings(state), _batch_shardings(mesh, keys)),
                   out_shardings=batch_sharding(mesh, 3))

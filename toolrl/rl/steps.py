"""Jitted, sharded train steps over an nnx (model, optimizer) state: GRPO, SFT, and log-prob passes.

Each builder takes the split graph definition and returns a `jax.jit` function of pure pytrees, with
explicit in/out shardings when a mesh is given (parameters and optimizer moments as the model's
logical-axis rules place them, the batch split over ("data", "fsdp")). The state is donated: an
update rewrites the parameters in place.

Batch dict keys (all [B, L] unless noted):
  tokens int32, attention_mask bool, loss_mask bool (policy tokens), advantages [B] float32,
  valid [B] bool (sequence counts in the loss), old_logp / ref_logp [B, L-1] float32 (optional).

The fast path (LM head at loss positions only, shared-prefix packing) takes a packed batch: the
host-side packing is :mod:`toolrl.rl.packing`, the log-probs and loss on it :mod:`toolrl.rl.logprobs`;
their names used by the trainer are re-exported here.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from toolrl.models.decoder import selected_logprobs, sequence_logprobs
from toolrl.models.sharding import batch_sharding
from toolrl.rl import grpo
from toolrl.rl.logprobs import (  # noqa: F401  (re-exported: the trainer and tests reach them as steps.*)
    Batch, packed_denominator, packed_grpo_loss, packed_logprobs, packed_logprobs_entropy,
    sequence_logprobs_entropy, token_entropy)
from toolrl.rl.packing import (  # noqa: F401  (re-exported, as above)
    PACKED_BATCH, ladder_size, loss_positions, pack_plain, pack_shared, packed_length, plan_groups, row_cost,
    trunk_costs)


def make_optimizer(model: nnx.Module, learning_rate: float, warmup_steps: int = 0, weight_decay: float = 0.0,
                   b1: float = 0.9, b2: float = 0.99, grad_clip: float = 1.0, wrt: Any = nnx.Param) -> nnx.Optimizer:
    """AdamW with optional linear warmup and global-norm clipping, over the model's `wrt` variables
    (nnx.Param: full fine-tuning; nnx.LoRAParam: the LoRA adapters only, the base gets no moments)."""
    schedule = (optax.linear_schedule(0.0, learning_rate, warmup_steps) if warmup_steps
                else optax.constant_schedule(learning_rate))
    parts = [optax.clip_by_global_norm(grad_clip)] if grad_clip > 0 else []
    parts.append(optax.adamw(schedule, b1=b1, b2=b2, weight_decay=weight_decay))
    return nnx.Optimizer(model, optax.chain(*parts), wrt=wrt)


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


def accumulate_gradients(grad_fn: Callable, params: Any, batch: Batch, total_den: jax.Array, micro_batches: int
                         ) -> tuple[jax.Array, dict[str, jax.Array], Any]:
    """(loss, metrics, grads) of a whole batch from `grad_fn(params, chunk, total_den) -> ((loss, metrics),
    grads)`, over `micro_batches` equal chunks of its leading axis accumulated under `lax.scan`:
    activation memory / micro_batches, same gradient, because each chunk's numerator is divided by the
    whole batch's denominator `total_den` (`grpo.aggregate_parts`)."""
    if micro_batches == 1:
        (loss, metrics), grads = grad_fn(params, batch, total_den)
        return loss, metrics, grads
    chunks = jax.tree.map(lambda x: x.reshape(micro_batches, -1, *x.shape[1:]), batch)

    def body(carry, mb):
        grads, loss, tokens, sums = carry
        (chunk_loss, m), g = grad_fn(params, mb, total_den)
        n = m["tokens"]
        # Token-weighted sums of the per-token diagnostics; pg_loss adds like the loss.
        sums = {k: sums[k] + (m[k] * n if k != "pg_loss" else m[k]) for k in sums}
        return (jax.tree.map(jnp.add, grads, g), loss + chunk_loss, tokens + n, sums), None

    init = (jax.tree.map(jnp.zeros_like, params), jnp.zeros(()), jnp.zeros(()), {k: jnp.zeros(()) for k in MICRO_KEYS})
    (grads, loss, tokens, sums), _ = jax.lax.scan(body, init, chunks)
    metrics = {k: sums[k] / jnp.maximum(tokens, 1.0) for k in MICRO_KEYS if k != "pg_loss"}
    # Each chunk's pg_loss is already divided by the whole batch's denominator: their sum is the whole
    # batch's pg_loss, as for the loss.
    metrics["pg_loss"] = sums["pg_loss"]
    metrics["tokens"] = tokens
    return loss, metrics, grads


def _update_step(graphdef: nnx.GraphDef, micro_loss: Callable, denominator: Callable[[Batch], jax.Array],
                 micro_batches: int) -> Callable[[Any, Batch], tuple[Any, dict[str, jax.Array]]]:
    """`step(state, batch)`: one optimizer update on `micro_loss(model, chunk, total_den)`, the GRPO
    steps' common body (plain and packed differ only in their loss and denominator)."""

    def step(state: Any, batch: Batch) -> tuple[Any, dict[str, jax.Array]]:
        model, optimizer = nnx.merge(graphdef, state)
        total_den = denominator(batch)
        # Differentiate a pure function of the parameters (not the module): it can run inside scan.
        mgraph, params, rest = nnx.split(model, optimizer.wrt, ...)  # what the optimizer updates (LoRA: adapters)

        def params_loss(params: Any, mb: Batch, total_den: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
            return micro_loss(nnx.merge(mgraph, params, rest), mb, total_den)

        grad_fn = jax.value_and_grad(params_loss, has_aux=True)
        loss, metrics, grads = accumulate_gradients(grad_fn, params, batch, total_den, micro_batches)
        metrics = dict(metrics, loss=loss, grad_norm=optax.global_norm(grads))
        optimizer.update(model, grads)
        return nnx.state((model, optimizer)), metrics

    return step


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
      micro_batches: split the batch into this many chunks and accumulate gradients
        (:func:`accumulate_gradients`).
      temperature: the sampling temperature; log-probs are those of softmax(logits / T), the
        distribution the rollout sampled from (TRL and verl do the same).
    """

    def micro_loss(model: nnx.Module, mb: Batch, total_den: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        mask = mb["loss_mask"][:, 1:] & mb["valid"][:, None]
        logp, entropy = sequence_logprobs_entropy(model, mb["tokens"], mb["attention_mask"], temperature)  # [b, L-1]
        old = mb["old_logp"] if use_old_logp else jax.lax.stop_gradient(logp)
        return grpo.grpo_loss(logp, old, mb.get("ref_logp"), mb["advantages"], mask, loss_config, total_den,
                              entropy=entropy)

    def denominator(batch: Batch) -> jax.Array:
        full_mask = batch["loss_mask"][:, 1:] & batch["valid"][:, None]
        return jnp.maximum(grpo.aggregate_parts(jnp.zeros(full_mask.shape, jnp.float32), full_mask,
                                                loss_config.aggregation, loss_config.constant_tokens)[1], 1.0)

    keys = {k: v for k, v in GRPO_BATCH.items() if k != "old_logp" or use_old_logp}
    if loss_config.beta == 0.0:
        keys.pop("ref_logp")
    return _jit(_update_step(graphdef, micro_loss, denominator, micro_batches), mesh, state, keys)


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
        host = np.asarray(batch["loss_mask"])
        per_row = [loss_positions(row) for row in host]
        k = ladder_size(max(max((len(p) for p in per_row), default=1), 1), 16)
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
                logp = selected_logprobs(model, batch["tokens"], batch["attention_mask"], batch["gather"])
                return grpo.sft_loss(logp, batch["gather_mask"])
            logp = sequence_logprobs(model, batch["tokens"], batch["attention_mask"])
            return grpo.sft_loss(logp, batch["loss_mask"][:, 1:])

        (loss, metrics), grads = nnx.value_and_grad(loss_fn, has_aux=True,
                                                    argnums=nnx.DiffState(0, optimizer.wrt))(model)
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


# ----------------------------------------------------------------------------- packed batches (fast path)


def packed_keys(shared: bool, extra: tuple[str, ...]) -> dict[str, int]:
    names = (("segments", "positions") if shared else ("attention_mask",)) + (
        "tokens", "gather", "targets", "loss_mask", "advantages") + extra
    return {n: PACKED_BATCH[n] for n in names}


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

    def denominator(batch: Batch) -> jax.Array:
        return packed_denominator(batch, loss_config)

    extra = (("old_logp",) if use_old_logp else ()) + (("ref_logp",) if loss_config.beta > 0.0 else ())
    return _jit(_update_step(graphdef, micro_loss, denominator, micro_batches), mesh, state,
                packed_keys(shared, extra))


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

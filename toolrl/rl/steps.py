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

from toolrl.models.decoder import sequence_logprobs
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
        logp = sequence_logprobs(model, mb["tokens"], mb["attention_mask"], temperature=temperature)  # [b, L-1]
        old = mb["old_logp"] if use_old_logp else jax.lax.stop_gradient(logp)
        return grpo.grpo_loss(logp, old, mb.get("ref_logp"), mb["advantages"], mask, loss_config, total_den)

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

            keys = ("kl", "clip_fraction", "clip_low", "clip_high", "ratio_mean", "pg_loss")
            init = (zero, jnp.zeros(()), jnp.zeros(()), {k: jnp.zeros(()) for k in keys})
            (grads, loss, tokens, sums), _ = jax.lax.scan(body, init, chunks)
            metrics = {k: sums[k] / jnp.maximum(tokens, 1.0) for k in keys if k != "pg_loss"}
            metrics["pg_loss"] = sums["pg_loss"] / micro_batches  # diagnostic only (unweighted mean)
            metrics["tokens"] = tokens
        metrics = dict(metrics, loss=loss, grad_norm=optax.global_norm(grads))
        optimizer.update(model, grads)
        return nnx.state((model, optimizer)), metrics

    keys = {k: v for k, v in GRPO_BATCH.items() if k != "old_logp" or use_old_logp}
    if loss_config.beta == 0.0:
        keys.pop("ref_logp")
    return _jit(step, mesh, state, keys)


def make_sft_step(graphdef: nnx.GraphDef, mesh: Mesh | None, state: Any) -> Callable[[Any, Batch], tuple[Any, dict[str, jax.Array]]]:
    """`step(state, batch) -> (state, metrics)`: one next-token NLL update on policy tokens."""

    def step(state: Any, batch: Batch) -> tuple[Any, dict[str, jax.Array]]:
        model, optimizer = nnx.merge(graphdef, state)

        def loss_fn(model: nnx.Module) -> tuple[jax.Array, dict[str, jax.Array]]:
            logp = sequence_logprobs(model, batch["tokens"], batch["attention_mask"])
            return grpo.sft_loss(logp, batch["loss_mask"][:, 1:])

        (loss, metrics), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
        metrics = dict(metrics, loss=loss, grad_norm=optax.global_norm(grads))
        optimizer.update(model, grads)
        return nnx.state((model, optimizer)), metrics

    return _jit(step, mesh, state, SFT_BATCH)


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

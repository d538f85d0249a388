"""GRPO as pure functions: group advantages, the clipped surrogate, k3 KL, loss aggregation.

Everything here is side-effect free and jit-able; shapes use
  B = sequences in the batch (= prompts · G), G = samples per prompt (group size),
  T = token positions of a (right-padded) sequence.

The objective for one token t of sequence i (Shao et al. 2024, DeepSeekMath; the asymmetric clip
from DAPO, Yu et al. 2025):

    r_it  = exp(logp_it - old_logp_it)
    L_it  = -min(r_it · A_i, clip(r_it, 1 - eps_low, 1 + eps_high) · A_i) + beta · KL_it
    KL_it = exp(ref_it - logp_it) - (ref_it - logp_it) - 1            (k3, Schulman 2020)

and A_i = (R_i - mean_group(R)) / (std_group(R) + eps), or without the division (Dr.GRPO, Liu et
al. 2025, which argues the std scaling biases towards too-easy / too-hard prompts).

A *degenerate* group has all rewards equal: every advantage is 0 and it carries no policy-gradient
signal, but its tokens would still dilute a token-mean and drag the KL term. They are masked out of
the loss (optionally) and always counted, so logs show how much of a batch was wasted.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Literal

import jax
import jax.numpy as jnp

Array = jax.Array

Aggregation = Literal["token_mean", "sequence_mean", "constant"]


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """Static hyper-parameters of the GRPO loss (hashable: safe as a jit static argument).

    Attributes:
      epsilon_low: lower clip, ratio floor is 1 - epsilon_low (PPO/GRPO: 0.2).
      epsilon_high: upper clip, ratio ceiling is 1 + epsilon_high (DAPO "clip-higher": 0.28 keeps
        exploration alive by letting unlikely good tokens grow faster; 0.2 is symmetric PPO).
      beta: weight of the k3 KL to the frozen reference; 0 disables it (and the reference model).
      aggregation: how per-token losses become a scalar, see `AGGREGATIONS`.
      constant_tokens: the denominator of the "constant" aggregation (Dr.GRPO): batch size x the most
        completion tokens a row can have (the trainer sets it from the budgets); 0 = batch x T.
    """

    epsilon_low: float = 0.2
    epsilon_high: float = 0.28
    beta: float = 0.04
    aggregation: Aggregation = "token_mean"
    constant_tokens: int = 0


# ----------------------------------------------------------------------------- advantages


def group_advantages(
    rewards: Array, group_size: int, *, scale_by_std: bool = True, eps: float = 1e-6, tol: float = 1e-6
) -> tuple[Array, Array]:
    """Group-normalised advantages.

    Args:
      rewards: [B] float, consecutive runs of `group_size` entries share a prompt.
      group_size: G; B must be a multiple of it.
      scale_by_std: divide by the group std (GRPO) or not (Dr.GRPO).
      eps: added to the std before dividing.
      tol: a group whose max - min is at most `tol` is degenerate.

    Returns:
      (advantages [B] float32, degenerate [B] bool): advantages are exactly 0 in degenerate groups;
      `degenerate` marks every member of such a group.
    """
    rewards = rewards.astype(jnp.float32)
    grouped = rewards.reshape(-1, group_size)  # [B/G, G]
    mean = grouped.mean(axis=1, keepdims=True)
    centered = grouped - mean
    if scale_by_std:
        # Unbiased sample std (ddof=1), as TRL, verl and tunix compute it; with G = 4 it is 15 % larger
        # than the population std, so advantages are that much smaller.
        centered = centered / (grouped.std(axis=1, keepdims=True, ddof=1) + eps)
    degenerate = (grouped.max(axis=1, keepdims=True) - grouped.min(axis=1, keepdims=True)) <= tol
    advantages = jnp.where(degenerate, 0.0, centered)
    return advantages.reshape(-1), jnp.broadcast_to(degenerate, grouped.shape).reshape(-1)


# ----------------------------------------------------------------------------- token terms


def token_logprobs(logits: Array, targets: Array) -> Array:
    """Log-probability of each target token.

    Args:
      logits: [B, T, V] (any float dtype; computed in float32).
      targets: [B, T] int token ids; position t scores targets[:, t] under logits[:, t].

    Returns:
      [B, T] float32.
    """
    logits = logits.astype(jnp.float32)
    picked = jnp.take_along_axis(logits, targets[..., None].astype(jnp.int32), axis=-1)[..., 0]
    return picked - jax.nn.logsumexp(logits, axis=-1)


def kl_k3(logp: Array, ref_logp: Array) -> Array:
    """k3 estimator of KL(pi || ref) per token: exp(ref - logp) - (ref - logp) - 1 >= 0. [B, T]."""
    delta = ref_logp - logp
    return jnp.exp(delta) - delta - 1.0


def clipped_surrogate(
    logp: Array, old_logp: Array, advantages: Array, epsilon_low: float, epsilon_high: float
) -> tuple[Array, Array, Array]:
    """Per-token clipped policy-gradient loss.

    Args:
      logp: [B, T] log-probs under the policy being optimised.
      old_logp: [B, T] log-probs under the policy that sampled (no gradient flows through it).
      advantages: [B] per sequence.
      epsilon_low, epsilon_high: ratio clip range [1 - epsilon_low, 1 + epsilon_high].

    Returns:
      (loss [B, T], ratio [B, T], clipped [B, T] bool): `clipped` marks tokens whose gradient the
      clip removed (ratio beyond the bound on the side the advantage pushes towards).
    """
    ratio = jnp.exp(logp - jax.lax.stop_gradient(old_logp))
    adv = advantages[:, None].astype(jnp.float32)
    unclipped = ratio * adv
    clipped_ratio = jnp.clip(ratio, 1.0 - epsilon_low, 1.0 + epsilon_high)
    loss = -jnp.minimum(unclipped, clipped_ratio * adv)
    clipped = ((ratio > 1.0 + epsilon_high) & (adv > 0)) | ((ratio < 1.0 - epsilon_low) & (adv < 0))
    return loss, ratio, clipped


# ----------------------------------------------------------------------------- aggregation

AGGREGATIONS: dict[str, Callable[[Array, Array, int], tuple[Array, Array]]] = {}


def register_aggregation(name: str):
    """Registers `fn(per_token [B, T], mask [B, T] float, constant_tokens) -> (numerator, denominator)`.

    The loss is numerator / denominator. Numerators add over sequences, so a batch split into
    micro-batches is exact when each chunk's numerator is divided by the whole batch's denominator.
    Masked positions are selected away (`masked`), never multiplied by 0: a masked value may be inf."""

    def wrap(fn):
        AGGREGATIONS[name] = fn
        return fn

    return wrap


def masked(values: Array, mask: Array) -> Array:
    """values where mask is set, else 0: `jnp.where`, since inf · 0 = NaN at a masked position."""
    return jnp.where(mask > 0, values, jnp.zeros((), values.dtype))


@register_aggregation("token_mean")
def _token_mean(per_token: Array, mask: Array, constant_tokens: int) -> tuple[Array, Array]:
    """Mean over every unmasked token of the batch (DAPO): long sequences weigh more."""
    del constant_tokens
    return masked(per_token, mask).sum(), mask.sum()


@register_aggregation("sequence_mean")
def _sequence_mean(per_token: Array, mask: Array, constant_tokens: int) -> tuple[Array, Array]:
    """Mean over tokens within each sequence, then over sequences with any token (original GRPO)."""
    del constant_tokens
    lengths = mask.sum(axis=1)
    per_seq = masked(per_token, mask).sum(axis=1) / jnp.maximum(lengths, 1.0)
    return per_seq.sum(), (lengths > 0).sum().astype(jnp.float32)


@register_aggregation("constant")
def _constant(per_token: Array, mask: Array, constant_tokens: int) -> tuple[Array, Array]:
    """Sum over tokens / (batch size x max completion tokens) (Dr.GRPO): a constant, no length bias."""
    denominator = constant_tokens if constant_tokens > 0 else per_token.shape[0] * per_token.shape[1]
    return masked(per_token, mask).sum(), jnp.asarray(denominator, jnp.float32)


def aggregate_parts(per_token: Array, mask: Array, aggregation: str, constant_tokens: int = 0) -> tuple[Array, Array]:
    """(numerator, denominator) of the named aggregation; per_token, mask: [B, T]."""
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {aggregation!r}; expected one of {sorted(AGGREGATIONS)}")
    return AGGREGATIONS[aggregation](per_token, mask.astype(jnp.float32), constant_tokens)


def aggregate(per_token: Array, mask: Array, aggregation: str, constant_tokens: int = 0) -> Array:
    """Scalar loss from [B, T] per-token values and a [B, T] mask, by the named aggregation."""
    numerator, denominator = aggregate_parts(per_token, mask, aggregation, constant_tokens)
    return numerator / jnp.maximum(denominator, 1.0)


# ----------------------------------------------------------------------------- the loss


def grpo_loss(
    logp: Array,
    old_logp: Array,
    ref_logp: Array | None,
    advantages: Array,
    loss_mask: Array,
    config: LossConfig,
    denominator: Array | None = None,
    entropy: Array | None = None,
) -> tuple[Array, dict[str, Array]]:
    """The GRPO objective (to minimise) and its diagnostics.

    Args:
      logp: [B, T] policy log-probs of the sequence tokens (gradient flows here).
      old_logp: [B, T] log-probs of the sampling policy (treated as constants).
      ref_logp: [B, T] log-probs of the frozen reference, or None when config.beta == 0.
      advantages: [B] per sequence.
      loss_mask: [B, T] bool/float, 1 on tokens the policy generated (assistant tokens) of sequences
        that count (degenerate groups already removed by the caller if wanted).
      config: `LossConfig`.
      denominator: the aggregation's denominator over the WHOLE batch when this is a micro-batch of it
        (None: this batch's own).
      entropy: [B, T] the policy's per-token entropy (a diagnostic, from the same logits), or None.

    Returns:
      (loss scalar, metrics {name: scalar}): pg_loss, kl (token mean), clip_fraction (share of
      masked tokens clipped), clip_low / clip_high fractions, ratio_mean, tokens, and with `entropy`
      its mean over the loss tokens.
    """
    mask = loss_mask.astype(jnp.float32)
    # Masked positions (padding, environment tokens) may hold any log-prob, -inf included: replace
    # them by 0 BEFORE the exp of the ratio and the KL, so neither the loss nor its gradient sees an
    # inf there (a `where` after the exp would still send 0 · inf = NaN back through it).
    live = mask > 0
    logp = jnp.where(live, logp, 0.0)
    old_logp = jnp.where(live, old_logp, 0.0)
    if ref_logp is not None:
        ref_logp = jnp.where(live, ref_logp, 0.0)
    pg, ratio, clipped = clipped_surrogate(logp, old_logp, advantages, config.epsilon_low, config.epsilon_high)
    per_token = pg
    n_tokens = jnp.maximum(mask.sum(), 1.0)
    metrics: dict[str, Array] = {}
    if config.beta > 0.0:
        if ref_logp is None:
            raise ValueError("beta > 0 needs ref_logp")
        kl = kl_k3(logp, jax.lax.stop_gradient(ref_logp))
        per_token = per_token + config.beta * kl
        metrics["kl"] = masked(kl, mask).sum() / n_tokens
    else:
        metrics["kl"] = jnp.zeros((), jnp.float32)
    numerator, own = aggregate_parts(per_token, mask, config.aggregation, config.constant_tokens)
    denominator = jnp.maximum(own if denominator is None else denominator, 1.0)
    loss = numerator / denominator
    adv = advantages[:, None]
    metrics["pg_loss"] = aggregate_parts(pg, mask, config.aggregation, config.constant_tokens)[0] / denominator
    metrics["clip_fraction"] = (clipped & live).sum() / n_tokens
    metrics["clip_low"] = ((ratio < 1.0 - config.epsilon_low) & (adv < 0) & live).sum() / n_tokens
    metrics["clip_high"] = ((ratio > 1.0 + config.epsilon_high) & (adv > 0) & live).sum() / n_tokens
    metrics["ratio_mean"] = masked(ratio, mask).sum() / n_tokens
    metrics["tokens"] = mask.sum()
    if entropy is not None:
        metrics["entropy"] = masked(jax.lax.stop_gradient(entropy), mask).sum() / n_tokens
    return loss, metrics


def sft_loss(logp: Array, loss_mask: Array) -> tuple[Array, dict[str, Array]]:
    """Token-mean negative log-likelihood over masked (assistant) tokens. logp, loss_mask: [B, T]."""
    mask = loss_mask.astype(jnp.float32)
    n = jnp.maximum(mask.sum(), 1.0)
    nll = -masked(logp, mask).sum() / n
    return nll, {"nll": nll, "tokens": mask.sum()}


def degenerate_summary(degenerate: Array, group_size: int) -> dict[str, Array]:
    """Counts of degenerate groups. degenerate: [B] bool (as from `group_advantages`)."""
    per_group = degenerate.reshape(-1, group_size)[:, 0]
    return {
        "degenerate_groups": per_group.sum().astype(jnp.int32),
        "degenerate_fraction": per_group.mean().astype(jnp.float32),
    }

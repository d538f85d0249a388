"""The GRPO update of one rollout batch: the padded layouts and the two paths that compute it.

`bucket` / `row_buckets` are the width and row-count ladders (few compiled programs); `pack_rows` the
plain layout. `GrpoUpdate` is the trainer's update: the packed path (`grpo.loss_positions_only` /
`grpo.shared_prefix`: the LM head only at loss positions, a group's shared prompt run once) or the plain
path; both compute the same loss and gradient (tests/test_rl_fast_step.py). The old policy's and the
KL reference's log-probs come from the policy side (`Policy.logprobs_fn`, `Policy.packed_logprobs_fn`,
`toolrl.policy.reference.Reference`); the jitted steps from `steps.py`.

Old log-probs (`grpo.old_logprobs`): "trainer" (the default) recomputes them with the trainer's pass
before the first update when grpo.num_iterations > 1, and with one update takes the current policy's
own log-probs (ratio 1). "sampler" takes the log-probs the sampler computed while generating (the
rollout's `RolloutBatch.logprobs`) when they agree with the trainer's pass of the same batch within
`grpo.old_logprobs_tolerance` at the loss positions (max absolute difference), else the trainer's;
the agreement is logged (`grpo/sampler_logp_max_abs_diff`, `_mean_abs_diff`, `grpo/sampler_logp_used`).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Sequence

import numpy as np
from flax import nnx

from toolrl.rl import steps
from toolrl.rl.guards import checked_first

log = logging.getLogger(__name__)


def bucket(length: int, multiple: int) -> int:
    """A padded width for `length`: the next of 2^k and 1.5 * 2^k, rounded up to a multiple of
    `multiple`. Above 128 tokens at most a third of a row is padding, and a run compiles a handful of widths (an
    update program per width: compiling SmolLM2's step costs tens of seconds on a CPU)."""
    size = max(int(multiple), 1)
    while size < length:
        size = size * 3 // 2 if size & (size - 1) == 0 and size >= 4 else 1 << size.bit_length()
    return -(-size // multiple) * multiple


def pack_rows(rows: Sequence[tuple[list[int], list[int]]], pad_id: int, width: int) -> tuple[np.ndarray, ...]:
    """Right-pads (ids, flags) rows to `width`: tokens [B, W] int32, attention [B, W], loss [B, W] bool."""
    tokens = np.full((len(rows), width), pad_id, np.int32)
    attn = np.zeros((len(rows), width), bool)
    loss = np.zeros((len(rows), width), bool)
    for i, (ids, flags) in enumerate(rows):
        if len(ids) > width:
            raise ValueError(f"row {i} has {len(ids)} tokens, more than the width {width}")
        tokens[i, :len(ids)] = ids
        attn[i, :len(ids)] = True
        loss[i, :len(flags)] = np.asarray(flags, bool)
    return tokens, attn, loss


def plain_row_values(values: Sequence[np.ndarray], n_rows: int, width: int) -> np.ndarray:
    """Per-token values of rows (aligned with each row's ids) in the plain update's next-token layout:
    out[i, t] = values[i][t + 1] (position t scores token t + 1), 0 beyond a row and on padding rows.
    [n_rows, width - 1] float32."""
    out = np.zeros((n_rows, width - 1), np.float32)
    for i, v in enumerate(values):
        v = np.asarray(v, np.float32)
        out[i, :len(v) - 1] = v[1:]
    return out


def packed_row_values(values: Sequence[np.ndarray], rows: Sequence[tuple[list[int], list[int]]],
                      placement: Sequence[tuple[int, int]], shape: tuple[int, int, int]) -> np.ndarray:
    """Per-token values of rows in a packed batch's [R, S, K] loss-position layout (`steps.pack_plain` /
    `steps.pack_shared`): row j sits in slot placement[j] = (r, s), its k-th loss position t scores
    token t + 1, so out[r, s, k] = values[j][t + 1]; 0 elsewhere."""
    out = np.zeros(shape, np.float32)
    for (r, s), v, (_, flags) in zip(placement, values, rows):
        pos = steps.loss_positions(flags)
        out[r, s, :len(pos)] = np.asarray(v, np.float32)[pos + 1]
    return out


def logprob_agreement(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """(max, mean) of |a - b| over the positions `mask` selects (0, 0 when none); same-shape arrays."""
    diff = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))[np.asarray(mask, bool)]
    return (float(diff.max()), float(diff.mean())) if diff.size else (0.0, 0.0)


def reads_old_logprobs(grpo_config: Any) -> bool:
    """Whether the update reads old log-probs from its batch (several updates per rollout batch, or the
    sampler's log-probs as the old policy's) instead of taking the current policy's (ratio 1)."""
    return int(grpo_config.num_iterations) > 1 or grpo_config.get("old_logprobs", "trainer") == "sampler"


def row_buckets(batch: int, unit: int) -> list[int]:
    """Row counts an update batch is padded to: a few fractions of the batch, multiples of `unit`."""
    return sorted({max(unit, bucket(max(batch // d, 1), unit)) for d in (8, 4, 2, 1)})


class GrpoUpdate:
    """The update half of the `Trainer` (a mixin: it reads the trainer's config, mesh, policy, model,
    optimizer, reference, loss config, row buckets and step cache, and its non-finite checks)."""

    def _update(self, rows: list[tuple[list[int], list[int]]], advantages: np.ndarray,
                logprobs: Sequence[np.ndarray] | None = None) -> dict[str, float]:
        """GRPO update(s) on the live rows; skipped if none.

        grpo.loss_positions_only / grpo.shared_prefix take the packed path (`_update_packed`: the LM
        head only at loss positions, a group's shared prompt run once); both off, the plain path
        (`_update_plain`). All compute the same loss and gradient.

        logprobs: per row, the sampler's log-probs aligned with its ids (`RolloutBatch.logprobs`); the
        old policy's with grpo.old_logprobs = "sampler" when they agree with the trainer's."""
        if not rows:
            return {"loss": 0.0, "grad_norm": 0.0, "tokens": 0.0}
        g = self.config.grpo
        if logprobs is not None and len(logprobs) != len(rows):
            raise ValueError(f"{len(logprobs)} rows of sampler log-probs for {len(rows)} rows")
        shared = bool(g.get("shared_prefix", False))
        if shared or bool(g.get("loss_positions_only", True)):
            return self._update_packed(rows, advantages, shared, logprobs)
        return self._update_plain(rows, advantages, logprobs)

    def _old_logprobs(self, trainer_logp: Any, sampler_logp: Any, mask: np.ndarray
                      ) -> tuple[Any, dict[str, float]]:
        """The old log-probs of an update batch and what decided them (metrics).

        trainer_logp: the trainer's pass over the batch (device array); sampler_logp: the sampler's in
        the same layout (host array), or None; mask: the loss positions (host bool, same shape).
        With grpo.old_logprobs = "sampler", the sampler's when their max absolute difference from the
        trainer's at the loss positions is within grpo.old_logprobs_tolerance; otherwise the trainer's."""
        g = self.config.grpo
        if sampler_logp is None:
            if g.get("old_logprobs", "trainer") == "sampler":
                log.warning("grpo.old_logprobs='sampler' but the rows carry no sampler log-probs: the trainer's used")
                return trainer_logp, {"sampler_logp_used": 0.0}
            return trainer_logp, {}
        from toolrl.policy.runtime import to_host

        max_diff, mean_diff = logprob_agreement(sampler_logp, to_host(trainer_logp), mask)
        metrics = {"sampler_logp_max_abs_diff": max_diff, "sampler_logp_mean_abs_diff": mean_diff}
        if g.get("old_logprobs", "trainer") != "sampler":
            return trainer_logp, metrics
        tolerance = float(g.get("old_logprobs_tolerance", 0.0))
        if max_diff > tolerance:
            log.warning("step %d: the sampler's log-probs differ from the trainer's by up to %.3g (> "
                        "grpo.old_logprobs_tolerance=%.3g): the trainer's are the old log-probs",
                        self.step + 1, max_diff, tolerance)
            return trainer_logp, dict(metrics, sampler_logp_used=0.0)
        return steps.to_device_batch({"old_logp": sampler_logp}, self.mesh)["old_logp"], dict(
            metrics, sampler_logp_used=1.0)

    def _plain_shape(self, rows: list[tuple[list[int], list[int]]]) -> tuple[int, int]:
        """(rows, width) of the plain layout: a row bucket and a width bucket."""
        c = self.config
        n_rows = next(b for b in self.row_buckets if b >= len(rows))
        # Rows never exceed max_seq_len: cap the bucket there, not at its next bucket.
        width = min(bucket(max(len(ids) for ids, _ in rows), c.rollout.pad_multiple), self._widest_width())
        return n_rows, width

    def _widest_width(self) -> int:
        """The widest plain update width of this run: max_seq_len rounded up to a multiple of 8."""
        return -(-self.config.rollout.max_seq_len // 8) * 8

    def _packed_batch(self, rows: list[tuple[list[int], list[int]]], advantages: np.ndarray,
                      shared: bool) -> tuple[dict[str, np.ndarray], bool, int]:
        """The packed host batch (`steps.pack_plain` / `steps.pack_shared`), whether it is the shared
        layout (used only when its trunk work is below the plain layout's), and its micro-batch count."""
        return self._packed_layout(rows, advantages, shared)[:3]

    def _packed_layout(self, rows: list[tuple[list[int], list[int]]], advantages: np.ndarray,
                       shared: bool) -> tuple[dict[str, np.ndarray], bool, int, list[tuple[int, int]]]:
        """`_packed_batch` and each row's place in it, (packed row, slot)."""
        c = self.config
        pad_id = self.policy.chat.pad_id
        k = bucket(max(max(len(steps.loss_positions(f)) for _, f in rows), 1), 16)
        _, width = self._plain_shape(rows)
        micro = int(c.grpo.micro_batches)
        shards = 1 if self.mesh is None else int(self.mesh.shape["data"] * self.mesh.shape["fsdp"])
        # Rows per micro-batch as configured (memory); the row count on a ladder of that unit, so a
        # batch with few live rows runs fewer chunks instead of padding rows (each costs a whole row).
        unit = shards * max(1, (c.rollout.prompts_per_step * c.rollout.group_size) // (micro * shards))
        n_rows = bucket(len(rows), unit)
        if shared:
            linear, quadratic = steps.trunk_costs(self.policy.model_config)
            # A packed row may take the memory of a micro-batch of plain rows at the widest width
            # the run allows (its attention scores grow with the square of the width); a step whose
            # rows are short may therefore pack its groups wider than its own plain width.
            max_len = max(width, int(self._widest_width() * (unit // shards) ** 0.5))
            groups = steps.plan_groups(rows, int(c.rollout.group_size), linear, quadratic, max_len)
            s_rows = -(-len(groups) // shards) * shards  # a padding row would cost a whole packed row
            s_width = bucket(max(steps.packed_length(rows, g) for g in groups), c.rollout.pad_multiple)
            slots = max(len(g) for g in groups)
            if slots > 1 and (s_rows * steps.row_cost(s_width, linear, quadratic)
                              < n_rows * steps.row_cost(width, linear, quadratic)):
                per_shard = s_rows // shards
                s_micro = max(d for d in range(1, min(micro, per_shard) + 1) if per_shard % d == 0)
                placement = [(-1, -1)] * len(rows)
                for r, group in enumerate(groups):
                    for slot, j in enumerate(group):
                        placement[j] = (r, slot)
                return (steps.pack_shared(rows, advantages, pad_id, groups, s_rows, s_width, slots, k), True,
                        s_micro, placement)
        return (steps.pack_plain(rows, advantages, pad_id, n_rows, width, k), False, n_rows // unit,
                [(i, 0) for i in range(len(rows))])

    def _update_packed(self, rows: list[tuple[list[int], list[int]]], advantages: np.ndarray,
                       shared: bool, logprobs: Sequence[np.ndarray] | None = None) -> dict[str, float]:
        """The packed update: same loss and gradient as `_update_plain`, less work (see steps.py)."""
        c = self.config
        host, shared, micro, placement = self._packed_layout(rows, advantages, shared)
        r, s, k = host["gather"].shape
        width = host["tokens"].shape[1]
        device = steps.to_device_batch(host, self.mesh)
        use_old = reads_old_logprobs(c.grpo)
        old_metrics: dict[str, float] = {}
        temperature = float(c.rollout.temperature)
        loss_config = self.loss_config
        if loss_config.aggregation == "constant" and loss_config.constant_tokens == 0:
            n_rows, plain_width = self._plain_shape(rows)  # the plain path's batch x T
            loss_config = dataclasses.replace(loss_config, constant_tokens=n_rows * (plain_width - 1))
        graphdef, state = nnx.split((self.model, self.optimizer))
        shape = (shared, r, width, s, k)
        if use_old or self.reference is not None:  # the policy side's passes (old policy, KL reference)
            mstate = nnx.state(self.model)
            inputs = {n: device[n] for n in steps.packed_keys(shared, ())}
            if use_old:
                sampler = None if logprobs is None else packed_row_values(logprobs, rows, placement, (r, s, k))
                device["old_logp"], old_metrics = self._old_logprobs(
                    self.policy.packed_logprobs_fn(temperature, shared)(mstate, inputs), sampler, host["loss_mask"])
            if self.reference is not None:
                device["ref_logp"] = self.reference.packed_logprobs(temperature, shared, inputs, mstate)
        fn = self._get(("packed_grpo", micro) + shape, lambda: steps.make_packed_grpo_step(
            graphdef, loss_config, self.mesh, state, use_old, micro, temperature, shared))
        metrics = self._iterate(fn, state, device)
        metrics.update(width=float(width), rows=float(r), loss_positions=float(k), shared_prefix=float(shared),
                       packed_tokens=float(r * width), **old_metrics)
        return metrics

    def _iterate(self, fn: Any, state: Any, device: dict[str, Any]) -> dict[str, float]:
        """grpo.num_iterations updates of one rollout batch through the compiled step `fn` (each checked
        for non-finite values), the result applied to the model and optimizer; the last update's metrics,
        and with several updates the first one's ratio and clip fraction (`first_ratio_mean`,
        `first_clip_fraction`: the sampling policy against the one that starts the step)."""
        metrics: dict[str, float] = {}
        first: dict[str, float] = {}
        state = self._donatable(state)
        for i in range(self.config.grpo.num_iterations):
            state, m = fn(state, device)
            metrics = {k: float(np.asarray(v)) for k, v in m.items()}
            self._nonfinite(checked_first(metrics, "grpo/"), "grpo")
            if i == 0 and self.config.grpo.num_iterations > 1:
                first = {"first_ratio_mean": metrics["ratio_mean"], "first_clip_fraction": metrics["clip_fraction"]}
        self._applied = True
        nnx.update((self.model, self.optimizer), state)
        return dict(metrics, **first)

    def _update_plain(self, rows: list[tuple[list[int], list[int]]], advantages: np.ndarray,
                      logprobs: Sequence[np.ndarray] | None = None) -> dict[str, float]:
        """The plain update: rows padded to a row bucket and a width bucket, logits at every position."""
        c = self.config
        n_rows, width = self._plain_shape(rows)
        pad = n_rows - len(rows)
        tokens, attn, loss_mask = pack_rows(rows + [([self.policy.chat.pad_id], [0])] * pad, self.policy.chat.pad_id, width)
        valid = np.arange(n_rows) < len(rows)
        host = {"tokens": tokens, "attention_mask": attn, "loss_mask": loss_mask,
                "advantages": np.concatenate([advantages, np.zeros(pad, np.float32)]).astype(np.float32), "valid": valid}
        device = steps.to_device_batch(host, self.mesh)
        use_old = reads_old_logprobs(c.grpo)
        old_metrics: dict[str, float] = {}
        temperature = float(c.rollout.temperature)
        graphdef, state = nnx.split((self.model, self.optimizer))
        if use_old or self.reference is not None:  # the policy side's passes (old policy, KL reference)
            mstate = nnx.state(self.model)
            if use_old:
                sampler = None if logprobs is None else plain_row_values(logprobs, n_rows, width)
                device["old_logp"], old_metrics = self._old_logprobs(
                    self.policy.logprobs_fn(temperature)(mstate, device["tokens"], device["attention_mask"]),
                    sampler, loss_mask[:, 1:] & valid[:, None])
            if self.reference is not None:
                device["ref_logp"] = self.reference.logprobs(temperature, device["tokens"], device["attention_mask"],
                                                             mstate)
        fn = self._get(("grpo", width, n_rows), lambda: steps.make_grpo_step(
            graphdef, self.loss_config, self.mesh, state, use_old, c.grpo.micro_batches, temperature))
        metrics = self._iterate(fn, state, device)
        metrics.update(width=float(width), rows=float(n_rows), **old_metrics)
        return metrics

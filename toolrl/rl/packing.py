"""Host-side packing of GRPO rows for the fast update: loss positions, shared-prefix groups, padded arrays.

The plain GRPO step (:func:`toolrl.rl.steps.make_grpo_step`) runs the LM head and log-softmax at
every position of every (padded) row. The fast path computes exactly the same loss and gradient
with less work:

* loss positions only: the head runs only at the K positions t whose next token is a policy token
  (``loss_mask[t + 1]``), gathered per sequence (``selected_logprobs``), K padded to a small ladder;
* shared prefix (Prefix Grouper, arXiv 2506.05433): rows that start with the same tokens (a GRPO
  group's prompt; in turn mode the whole golden history) are packed into ONE row
  [prefix, suffix_1, ..., suffix_n] with a block attention mask: the prefix attends to itself
  causally, suffix i to the prefix and to itself causally, with positions restarting after the
  prefix. Every token then sees exactly the tokens (and RoPE positions) it sees in its own row, so
  each hidden state equals the plain one (up to float summation order), and the gradient of the
  prefix is the sum of its G rows' gradients, as in the plain batch — the prefix is run once.

Packed batch (host numpy here, then device), R packed rows of width W, S sequence slots per packed
row, K loss positions per sequence:
  tokens [R, W] int32; attention_mask [R, W] bool (plain layout) or segments [R, W] int32 + positions
  [R, W] int32 (shared layout: 0 = padding, 1 = shared prefix, 2 + i = suffix of slot i);
  gather [R, S, K] int32 (the packed-row position whose logits score the token), targets [R, S, K]
  int32 (the scored token), loss_mask [R, S, K] bool, advantages [R, S] float32, optional
  old_logp / ref_logp [R, S, K] float32.

This module is numpy only: which rows share a prefix and how they are laid out is decided on the
host, before anything is compiled; :mod:`toolrl.rl.logprobs` computes on the result.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# The packed batch's arrays and their ranks (the module docstring); the batch sharding follows the rank.
PACKED_BATCH = {"tokens": 2, "attention_mask": 2, "segments": 2, "positions": 2, "gather": 3, "targets": 3,
                "loss_mask": 3, "advantages": 2, "old_logp": 3, "ref_logp": 3}


def loss_positions(flags: Any) -> Any:
    """Positions t (0-based, t < len - 1) whose logits score a policy token: flags[t + 1] set."""
    return np.flatnonzero(np.asarray(flags, bool)[1:])


def ladder_size(n: int, multiple: int) -> int:
    """n rounded up on the 2^k / 1.5·2^k ladder, then to a multiple of `multiple` (few compiles)."""
    size = max(int(multiple), 1)
    while size < n:
        size = size * 3 // 2 if size & (size - 1) == 0 and size >= 4 else 1 << size.bit_length()
    return -(-size // multiple) * multiple


def pack_plain(rows: Any, advantages: Any, pad_id: int, n_rows: int, width: int, k: int) -> dict[str, Any]:
    """Plain layout (one sequence per row, S = 1) with the K loss positions of each row.

    rows: (ids, flags) per sequence (at most n_rows, each at most `width` tokens); advantages [n].
    Rows beyond len(rows) are padding (no loss)."""
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


def common_prefix_length(a: Any, b: Any) -> int:
    """How many leading tokens two id sequences share."""
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
            new_prefix = min(prefix, common_prefix_length(rows[g[0]][0], ids))
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
    prefix = min((common_prefix_length(rows[group[0]][0], rows[j][0]) for j in group), default=0)
    prefix = min([prefix] + [len(rows[j][0]) for j in group])
    return prefix + sum(len(rows[j][0]) - prefix for j in group)


def pack_shared(rows: Any, advantages: Any, pad_id: int, groups: list[list[int]], n_rows: int, width: int,
                slots: int, k: int) -> dict[str, Any]:
    """Shared-prefix layout: group g -> packed row g = [prefix, suffix of each member] (see above)."""
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
                     min(common_prefix_length(members[0], m) for m in members))
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

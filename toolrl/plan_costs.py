"""What a device has and what a GRPO step costs, from the config's shapes alone (no jax program).

The device kinds a plan stands for (memory, dense bf16 peak, HBM bandwidth), the widest update and
rollout the config allows (:class:`Shapes`), the bytes a pytree of sharded arrays holds per device, and
the hand estimates the plan shows beside XLA's figures: FLOPs per step, the KV cache, the activations
of one micro-batch. ``toolrl/plan.py`` assembles them into a plan.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

GiB = 1024 ** 3


@dataclasses.dataclass(frozen=True)
class DeviceKind:
    """One accelerator: memory per chip, dense bf16 peak, HBM bandwidth."""

    name: str
    memory_bytes: int
    bf16_flops: float  # dense (no 2:4 sparsity), per chip
    hbm_bytes_per_s: float
    source: str


# Sources (vendor data sheets / docs, read 2026-12):
# * H100 SXM5 80 GB: 989.4 TFLOP/s dense BF16 (the data sheet's 1,979 is with sparsity), 3.35 TB/s HBM3;
#   nvidia-smi reports 81,559 MiB. https://www.nvidia.com/en-us/data-center/h100/
# * H200 SXM 141 GB: same compute as H100 SXM, 4.8 TB/s HBM3e; nvidia-smi reports 143,771 MiB.
#   https://www.nvidia.com/en-us/data-center/h200/
# * A100 SXM4 80 GB: 312 TFLOP/s dense BF16, 2,039 GB/s HBM2e; 81,920 MiB.
#   https://www.nvidia.com/en-us/data-center/a100/
# * TPU v5e: 197 TFLOP/s BF16, 16 GiB HBM2 at 819 GB/s per chip. https://cloud.google.com/tpu/docs/v5e
# * TPU v5p: 459 TFLOP/s BF16, 95 GiB HBM2e at 2,765 GB/s per chip. https://cloud.google.com/tpu/docs/v5p
DEVICES: dict[str, DeviceKind] = {
    "h100": DeviceKind("h100", 81_559 * 2**20, 989.4e12, 3.35e12, "NVIDIA H100 SXM5 data sheet"),
    "h200": DeviceKind("h200", 143_771 * 2**20, 989.4e12, 4.8e12, "NVIDIA H200 SXM data sheet"),
    "a100-80g": DeviceKind("a100-80g", 81_920 * 2**20, 312e12, 2.039e12, "NVIDIA A100 80GB SXM4 data sheet"),
    "v5e": DeviceKind("v5e", 16 * GiB, 197e12, 819e9, "cloud.google.com/tpu/docs/v5e"),
    "v5p": DeviceKind("v5p", 95 * GiB, 459e12, 2.765e12, "cloud.google.com/tpu/docs/v5p"),
}



# ============================================================================ bytes of a pytree


def per_device_bytes(tree: Any) -> int:
    """Bytes one device holds of a pytree of sharded arrays or ``ShapeDtypeStruct`` (the first device's
    shard; the rules shard evenly or replicate)."""
    import jax

    total = 0
    for x in jax.tree.leaves(tree):
        sharding = getattr(x, "sharding", None)
        shape = sharding.shard_shape(x.shape) if sharding is not None else x.shape
        total += math.prod(shape) * x.dtype.itemsize
    return total


def global_bytes(tree: Any) -> int:
    """Bytes of a pytree of arrays / ``ShapeDtypeStruct`` over all devices (unsharded sizes)."""
    import jax

    return sum(math.prod(x.shape) * x.dtype.itemsize for x in jax.tree.leaves(tree))


# ============================================================================ shapes


@dataclasses.dataclass(frozen=True)
class Shapes:
    """The largest update and rollout the config allows (the programs the plan compiles)."""

    batch: int  # rows per GRPO step (prompts_per_step x group_size)
    rows: int  # update rows (batch, rounded to micro-batches x data-parallel shards)
    width: int  # update width W: max_seq_len rounded up to a multiple of 8 (the trainer's widest)
    loss_positions: int  # K: policy tokens per row, at most max_turns x max_new_tokens, on the ladder
    micro_batches: int
    prompt_width: int  # P: the longest prompt a turn can start from, padded to rollout.pad_multiple
    new_tokens: int  # N per generate call
    packed: bool  # the trainer's packed update (grpo.loss_positions_only / shared_prefix)


def update_shapes(config: Any, shards: int) -> Shapes:
    """The trainer's widest update: every row alive at max_seq_len (``Trainer._packed_batch``'s plain
    layout; a shared-prefix layout is used only when its trunk work is smaller)."""
    from toolrl.rl.trainer import bucket as _ladder  # the trainer's own widths, so the plan compiles its program

    r, g = config.rollout, config.grpo
    batch = int(r.prompts_per_step * r.group_size)
    micro = int(g.micro_batches)
    unit = shards * max(1, batch // (micro * shards))
    rows = _ladder(batch, unit)
    width = -(-int(r.max_seq_len) // 8) * 8
    k = _ladder(max(1, min(int(r.max_turns * r.max_new_tokens), width - 1)), 16)
    prompt = -(-int(r.max_seq_len - r.max_new_tokens) // int(r.pad_multiple)) * int(r.pad_multiple)
    packed = bool(g.get("loss_positions_only", True) or g.get("shared_prefix", False))
    return Shapes(batch, rows, width, k, rows // unit, prompt, int(r.max_new_tokens), packed)


# ============================================================================ estimates


def analytic_flops(mc: Any, config: Any, shapes: Shapes, adapter_params: int = 0) -> dict[str, float]:
    """FLOPs of one GRPO step over all devices (multiply-add = 2), from the shapes alone.

    update: forward + backward of the trunk on rows x W tokens (the decoder's attention is dense over W,
    masked pairs included) and of the LM head at the K loss positions, times grpo.num_iterations, plus a
    forward per log-prob pass (old policy, reference). A backward is two forwards' worth: the gradient of
    the activations and that of the weights; with LoRA (``adapter_params`` > 0, A [in, r] and B [r, out]
    of every adapted projection) the frozen weights (and the LM head) get none, so their matmuls cost
    x2 instead of x3, while attention's scores (no weights) and the adapters themselves (2 FLOPs per
    adapter weight and token) stay x3. Remat adds one more forward of the trunk.
    rollout: per turn, the group prefill over P tokens (one row per group) and N decode steps of the
    whole batch attending to P + N cache slots, LM head and adapters included; rollout.max_turns turns
    (an upper bound: rows end early)."""
    from toolrl.rl.steps import trunk_costs

    linear, pair = trunk_costs(mc)
    adapters = 2.0 * adapter_params  # per token, all layers
    head = 2.0 * mc.hidden_size * mc.vocab_size
    r, w, k = shapes.rows, shapes.width, (shapes.loss_positions if shapes.packed else shapes.width)
    weights = r * w * linear  # the matmuls with the (frozen under LoRA) weights
    trained = r * (w * adapters + pair * w * w)  # attention's pair terms and the adapters: full backward
    head_f = r * k * head
    forward = weights + trained + head_f
    remat = 1.0 if mc.remat else 0.0
    weight_grads = 0.0 if adapter_params else 1.0
    iters = int(config.grpo.num_iterations)
    passes = (1 if iters > 1 else 0) + (1 if config.grpo.beta > 0 else 0)
    update = (iters * ((2.0 + weight_grads + remat) * weights + (3.0 + remat) * trained + (2.0 + weight_grads) * head_f)
              + passes * forward)
    b, g, p, n = shapes.batch, int(config.rollout.group_size), shapes.prompt_width, shapes.new_tokens
    linear += adapters
    prefill = (b // g) * (linear * p + pair * p * p) + b * head
    decode = n * b * (linear + pair * (p + n) + head)
    turns = int(config.rollout.max_turns)
    return {"update": update, "rollout": turns * (prefill + decode), "decode_step": b * (linear + pair * (p + n) + head)}


def kv_cache_bytes(mc: Any, batch: int, slots: int) -> int:
    """Global bytes of the sampler's KV cache: 2 (k, v) x L x B x K heads x S slots x Dh (compute dtype)."""
    return 2 * mc.num_layers * batch * mc.num_kv_heads * slots * mc.head_dim * mc.compute_dtype.itemsize


def activation_estimate(mc: Any, shapes: Shapes) -> int:
    """A hand estimate of the activations one micro-batch keeps for its backward pass (global bytes).

    Per token and layer: the block's input, two norm outputs, q / k / v, the attention output, the
    MLP's gate, up and product (compute dtype), plus the attention probabilities over W keys (float32,
    H per token). With remat only each block's input is kept, plus one block's worth. The LM head at
    the K loss positions adds K x V float32 logits per row. XLA's temp bytes are the real figure."""
    dt = mc.compute_dtype.itemsize
    d, h, kv, dh, f = mc.hidden_size, mc.num_heads, mc.num_kv_heads, mc.head_dim, mc.intermediate_size
    rows = shapes.rows // max(shapes.micro_batches, 1)
    tokens = rows * shapes.width
    per_layer = tokens * (dt * (3 * d + 2 * h * dh + 2 * kv * dh + 3 * f) + 4 * h * shapes.width)
    k = shapes.loss_positions if shapes.packed else shapes.width
    head = rows * min(k, 128) * mc.vocab_size * 4  # the head runs over chunks of 128 positions
    if mc.remat:
        return mc.num_layers * tokens * d * dt + per_layer + head
    return mc.num_layers * per_layer + head


"""Ahead-of-time plan of a training job: will it fit, and how long will a step take?

    XLA_FLAGS=--xla_force_host_platform_device_count=8 python -m toolrl.plan --config=configs/grpo.py \\
        --config.model.preset=qwen3_8b --config.plan.device=h100 --config.mesh.fsdp=8

The GRPO update (the trainer's packed or plain step, ``toolrl/rl/steps.py``) and the rollout's sampler
(``toolrl/models/sampler.py:generate_arrays``: prefill, KV cache, decode loop) are lowered and compiled
for the configured model and mesh with *abstract* weights: ``nnx.eval_shape`` builds the model and the
optimizer as ``jax.ShapeDtypeStruct`` leaves carrying their ``NamedSharding``, so nothing is allocated.
The compiled programs run on simulated CPU devices standing in for ``plan.num_devices`` accelerators of
kind ``plan.device``; XLA's own memory analysis (``compiled.memory_analysis()``) then gives the bytes
each device needs, and ``compiled.cost_analysis()`` its FLOPs.

Caveats, printed with the table: XLA's CPU backend fuses and schedules differently from the GPU / TPU
backends (its temporaries are an estimate of theirs, usually an over-estimate: it keeps some bf16
arithmetic in f32), and ``cost_analysis`` counts the body of a loop once (``lax.scan`` over
micro-batches or remat'd layers, the decode ``while_loop``); the time estimate therefore uses the
analytic FLOP count (``analytic_flops``), and XLA's figure is shown beside it.

This module also owns :func:`enable_compilation_cache` (the persistent XLA cache of ``c.compile``).
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from pathlib import Path
from typing import Any, Mapping

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


# ============================================================================ abstract state


def model_config_of(config: Any) -> Any:
    """The ModelConfig a training config names (preset, or an HF ``config.json`` under model.path),
    with its dtype and execution options, without reading any weights."""
    from toolrl.models.config import ModelConfig

    m = config.model
    base = ModelConfig.from_hf_config(m.path) if m.path else ModelConfig.preset(m.preset)
    return base.with_dtype(m.dtype, "float32").replace(attention_impl=m.get("attention_impl", "xla"),
                                                       remat=bool(m.get("remat", False)))


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


def abstract_sharded(state: Any, mesh: Any) -> Any:
    """``state`` (an ``nnx.State`` of abstract Variables) with every value a ``ShapeDtypeStruct``
    carrying the ``NamedSharding`` its logical axes get on ``mesh`` (as ``shard_state`` would place it)."""
    import jax
    from flax import nnx

    from toolrl.models.sharding import state_shardings

    shardings = state_shardings(state, mesh)

    def one(v: Any, s: Any) -> Any:
        value = v.get_value() if isinstance(v, nnx.Variable) else v
        sds = jax.ShapeDtypeStruct(value.shape, value.dtype, sharding=s)
        return v.replace(sds) if isinstance(v, nnx.Variable) else sds

    return jax.tree.map(one, state, shardings, is_leaf=lambda x: isinstance(x, nnx.Variable))


def abstract_train_state(config: Any, model_config: Any, mesh: Any) -> tuple[Any, Any, Any, Any]:
    """(graphdef of (model, optimizer), their abstract sharded state, the model's graphdef, its state).

    The optimizer is the trainer's (``steps.make_optimizer`` with the GRPO learning rate): AdamW with
    float32 moments, whatever the compute dtype."""
    import jax
    from flax import nnx

    from toolrl.models.decoder import Decoder
    from toolrl.rl import steps

    o = config.optim

    def build() -> tuple[Any, Any]:
        model = Decoder(model_config, nnx.Rngs(int(config.seed)))
        return model, steps.make_optimizer(model, o.learning_rate, o.warmup_steps, o.weight_decay, o.b1, o.b2,
                                           o.grad_clip)

    # No mesh in context: the variables carry logical axis names, which only our rule table resolves.
    model, optimizer = nnx.eval_shape(build)
    graphdef, state = nnx.split((model, optimizer))
    mgraph, mstate = nnx.split(model)
    return graphdef, abstract_sharded(state, mesh), mgraph, abstract_sharded(mstate, mesh)


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


def update_batch(shapes: Shapes, mesh: Any, use_old: bool, use_ref: bool) -> dict[str, Any]:
    """Abstract, batch-sharded inputs of the update step (the keys the trainer passes)."""
    import jax
    import jax.numpy as jnp

    from toolrl.models.sharding import batch_sharding
    from toolrl.rl import steps

    r, w, k = shapes.rows, shapes.width, shapes.loss_positions
    if shapes.packed:
        extra = (("old_logp",) if use_old else ()) + (("ref_logp",) if use_ref else ())
        keys = steps.packed_keys(False, extra)
        shape = {2: (r, w), 3: (r, 1, k)}
        shape_of = {n: shape[d] for n, d in keys.items()}
        shape_of["advantages"] = (r, 1)
    else:
        keys = {n: d for n, d in steps.GRPO_BATCH.items()
                if (n != "old_logp" or use_old) and (n != "ref_logp" or use_ref)}
        shape_of = {n: ((r, w - 1) if n in ("old_logp", "ref_logp") else (r, w) if d == 2 else (r,))
                    for n, d in keys.items()}
    dtypes = {"tokens": jnp.int32, "gather": jnp.int32, "targets": jnp.int32, "attention_mask": jnp.bool_,
              "loss_mask": jnp.bool_, "valid": jnp.bool_}
    return {n: jax.ShapeDtypeStruct(shape_of[n], dtypes.get(n, jnp.float32),
                                    sharding=batch_sharding(mesh, len(shape_of[n]))) for n in keys}


# ============================================================================ compile


def loss_config_of(config: Any, shapes: Shapes) -> Any:
    from toolrl.rl import grpo

    r = config.rollout
    constant = shapes.batch * r.max_turns * r.max_new_tokens
    return grpo.LossConfig(epsilon_low=config.grpo.epsilon_low, epsilon_high=config.grpo.epsilon_high,
                           beta=config.grpo.beta, aggregation=config.grpo.aggregation, constant_tokens=constant)


def compile_update(config: Any, graphdef: Any, state: Any, shapes: Shapes, mesh: Any) -> Any:
    """The compiled GRPO update for the abstract state and the widest batch."""
    import jax

    from toolrl.rl import steps

    use_old = int(config.grpo.num_iterations) > 1
    use_ref = float(config.grpo.beta) > 0
    batch = update_batch(shapes, mesh, use_old, use_ref)
    temperature = float(config.rollout.temperature)
    loss_config = loss_config_of(config, shapes)
    if shapes.packed:
        fn = steps.make_packed_grpo_step(graphdef, loss_config, mesh, state, use_old, shapes.micro_batches,
                                         temperature, False)
    else:
        fn = steps.make_grpo_step(graphdef, loss_config, mesh, state, use_old, int(config.grpo.micro_batches),
                                  temperature)
    with jax.set_mesh(mesh):  # the decoder pins activations to the batch sharding of the mesh in context
        return fn.lower(state, batch).compile()


def compile_sampler(config: Any, mgraph: Any, mstate: Any, shapes: Shapes, mesh: Any) -> Any:
    """The compiled rollout program (``generate_arrays``: group prefill, KV cache, decode loop) for
    the step's batch at the longest prompt."""
    import jax
    import jax.numpy as jnp
    from jax.sharding import NamedSharding, PartitionSpec

    from toolrl.models.sampler import SamplingParams, generate_arrays
    from toolrl.models.sharding import batch_sharding

    r = config.rollout
    b, p = shapes.batch, shapes.prompt_width
    params = SamplingParams(max_new_tokens=shapes.new_tokens, temperature=float(r.temperature), top_k=int(r.top_k),
                            top_p=float(r.top_p), stop_token_ids=(0,))
    tokens = jax.ShapeDtypeStruct((b, p), jnp.int32, sharding=batch_sharding(mesh, 2))
    mask = jax.ShapeDtypeStruct((b, p), jnp.bool_, sharding=batch_sharding(mesh, 2))
    key = jax.ShapeDtypeStruct((2,), jnp.uint32, sharding=NamedSharding(mesh, PartitionSpec()))
    group = int(r.group_size)
    with jax.set_mesh(mesh):
        return generate_arrays.lower(mgraph, mstate, tokens, mask, key, params=params, pad_id=0,
                                     group_size=group).compile()


# ============================================================================ estimates


def analytic_flops(mc: Any, config: Any, shapes: Shapes) -> dict[str, float]:
    """FLOPs of one GRPO step over all devices (multiply-add = 2), from the shapes alone.

    update: forward + backward (x3; x4 of the trunk with remat) of the trunk on rows x W tokens (the
    decoder's attention is dense over W, masked pairs included) and of the LM head at the K loss
    positions, times grpo.num_iterations, plus a forward per log-prob pass (old policy, reference).
    rollout: per turn, the group prefill over P tokens (one row per group) and N decode steps of the
    whole batch attending to P + N cache slots, LM head included; rollout.max_turns turns (an upper
    bound: rows end early)."""
    from toolrl.rl.steps import trunk_costs

    linear, pair = trunk_costs(mc)
    head = 2.0 * mc.hidden_size * mc.vocab_size
    r, w, k = shapes.rows, shapes.width, (shapes.loss_positions if shapes.packed else shapes.width)
    trunk = r * (linear * w + pair * w * w)
    head_f = r * k * head
    forward = trunk + head_f
    backward_factor = 3.0 + (1.0 if mc.remat else 0.0)
    iters = int(config.grpo.num_iterations)
    passes = (1 if iters > 1 else 0) + (1 if config.grpo.beta > 0 else 0)
    update = iters * (backward_factor * trunk + 3.0 * head_f) + passes * forward
    b, g, p, n = shapes.batch, int(config.rollout.group_size), shapes.prompt_width, shapes.new_tokens
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


# ============================================================================ the plan


@dataclasses.dataclass
class Plan:
    """Everything the table shows (bytes per device unless named global)."""

    model: str
    device: DeviceKind
    num_devices: int
    mesh: tuple[int, int, int]
    shapes: Shapes
    param_count: int
    param_bytes: int  # per device
    optimizer_bytes: int  # per device
    param_bytes_global: int
    optimizer_bytes_global: int
    activation_estimate: int  # per device, one micro-batch
    kv_cache_bytes: int  # per device
    update_memory: dict[str, int]
    sampler_memory: dict[str, int] | None
    update_peak: int  # resident during the update (its XLA peak, + the reference model when beta > 0)
    rollout_peak: int  # resident during the rollout (the sampler's peak + optimizer moments + reference)
    xla_flops_update: float  # per device, loop bodies counted once
    xla_flops_sampler: float | None
    flops: dict[str, float]  # analytic, all devices
    step_seconds: dict[str, float]
    mfu: float
    memory_fraction: float
    compile_seconds: float

    @property
    def peak(self) -> int:
        return max(self.update_peak, self.rollout_peak)

    @property
    def capacity(self) -> int:
        return self.device.memory_bytes

    @property
    def fits(self) -> bool:
        return self.peak <= self.memory_fraction * self.capacity

    def verdict(self) -> str:
        """The one closing line."""
        return (f"plan: {'fits' if self.fits else 'does not fit'}, peak {self.peak / GiB:.1f} GiB per device of "
                f"{self.capacity / GiB:.1f} GiB ({self.num_devices} x {self.device.name})")

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["device"] = dataclasses.asdict(self.device)
        out.update(peak=self.peak, capacity=self.capacity, fits=self.fits, verdict=self.verdict())
        return out


def _memory_stats(compiled: Any) -> dict[str, int]:
    m = compiled.memory_analysis()
    names = ("argument_size_in_bytes", "output_size_in_bytes", "alias_size_in_bytes", "temp_size_in_bytes",
             "generated_code_size_in_bytes", "peak_memory_in_bytes")
    out = {n.replace("_size_in_bytes", "").replace("_in_bytes", ""): int(getattr(m, n, 0) or 0) for n in names}
    # XLA's CPU backend reports a peak that leaves out the temporaries: bound it below by what is live
    # at once in the worst case (arguments, outputs not aliased to them, every temporary).
    out["xla_peak"] = out.pop("peak_memory")
    out["peak_memory"] = max(out["xla_peak"], out["argument"] + out["output"] - out["alias"] + out["temp"])
    return out


def _flops(compiled: Any) -> float:
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else {}
    return float((cost or {}).get("flops", 0.0))


def make_plan(config: Any, devices: Any = None) -> Plan:
    """Lower and compile the update (and the sampler) for ``config`` on simulated devices; nothing is
    allocated. Needs at least the mesh's device count (``XLA_FLAGS=--xla_force_host_platform_device_count``).

    Raises:
      ConfigError: the mesh does not match ``plan.num_devices`` or the jax process has too few devices.
    """
    import time

    import jax
    from flax import nnx

    from toolrl.models.sharding import make_mesh
    from toolrl.rl.config import ConfigError, validate_for_devices

    p = config.plan
    kind = DEVICES[p.device]
    n = int(p.num_devices)
    data, fsdp, tensor = validate_for_devices(grpo_only(config), n)
    devices = list(devices if devices is not None else jax.devices())
    if len(devices) < n:
        raise ConfigError(f"plan.num_devices={n} needs {n} jax devices, this process has {len(devices)}: set "
                          f"XLA_FLAGS=--xla_force_host_platform_device_count={n} before jax starts")
    mesh = make_mesh(data, fsdp, tensor, devices[:n])
    mc = model_config_of(config)
    shapes = update_shapes(config, data * fsdp)
    started = time.perf_counter()
    graphdef, state, mgraph, mstate = abstract_train_state(config, mc, mesh)
    params = nnx.state(mstate, nnx.Param)
    opt_state = state[1]  # the split of (model, optimizer): 0 = model, 1 = optimizer
    update = compile_update(config, graphdef, state, shapes, mesh)
    sampler = compile_sampler(config, mgraph, mstate, shapes, mesh) if p.sampler else None
    compile_seconds = time.perf_counter() - started

    param_bytes, opt_bytes = per_device_bytes(params), per_device_bytes(opt_state)
    update_mem = _memory_stats(update)
    sampler_mem = _memory_stats(sampler) if sampler is not None else None
    shards = data * fsdp
    kv_shard = tensor if mc.num_kv_heads % tensor == 0 else 1
    kv = kv_cache_bytes(mc, shapes.batch, shapes.prompt_width + shapes.new_tokens) // (shards * kv_shard)
    ref = param_bytes if config.grpo.beta > 0 else 0
    update_peak = update_mem["peak_memory"] + ref
    rollout_peak = (sampler_mem["peak_memory"] + opt_bytes + ref) if sampler_mem else 0
    flops = analytic_flops(mc, config, shapes)
    achieved = n * kind.bf16_flops * float(p.mfu)
    # A decode step reads every parameter shard and the KV cache once: it is bandwidth bound unless the
    # batch is large. Its time is the larger of the two bounds.
    decode_bytes = param_bytes + kv
    decode_step = max(flops["decode_step"] / achieved, decode_bytes / kind.hbm_bytes_per_s)
    turns = int(config.rollout.max_turns)
    prefill = max(flops["rollout"] / turns - flops["decode_step"] * shapes.new_tokens, 0.0) / achieved
    seconds = {"update": flops["update"] / achieved,
               "rollout": turns * (prefill + shapes.new_tokens * decode_step)}
    seconds["step"] = seconds["update"] + seconds["rollout"]
    return Plan(
        model=mc.name, device=kind, num_devices=n, mesh=(data, fsdp, tensor), shapes=shapes,
        param_count=sum(math.prod(x.shape) for x in jax.tree.leaves(params)),
        param_bytes=param_bytes, optimizer_bytes=opt_bytes, param_bytes_global=global_bytes(params),
        optimizer_bytes_global=global_bytes(opt_state),
        activation_estimate=activation_estimate(mc, shapes) // shards, kv_cache_bytes=kv,
        update_memory=update_mem, sampler_memory=sampler_mem, update_peak=update_peak, rollout_peak=rollout_peak,
        xla_flops_update=_flops(update), xla_flops_sampler=_flops(sampler) if sampler is not None else None,
        flops=flops, step_seconds=seconds, mfu=float(p.mfu), memory_fraction=float(p.memory_fraction),
        compile_seconds=compile_seconds,
    )


def _gib(x: float) -> str:
    return f"{x / GiB:,.2f} GiB"


def _time(seconds: float) -> str:
    return f"{seconds * 1e3:,.1f} ms" if seconds < 1 else f"{seconds:,.2f} s"


def render(plan: Plan, config: Any) -> str:
    """The plan as a rich table (plain text), ending with :meth:`Plan.verdict`."""
    from rich.console import Console
    from rich.table import Table

    s, mc = plan.shapes, config.model
    data, fsdp, tensor = plan.mesh
    title = (f"{plan.model} ({plan.param_count / 1e9:.2f} B params, compute {mc.dtype}"
             f"{', remat' if mc.get('remat', False) else ''}) on {plan.num_devices} x {plan.device.name}, "
             f"mesh data={data} fsdp={fsdp} tensor={tensor}")
    table = Table(title=title, show_lines=False)
    table.add_column("quantity")
    table.add_column("per device", justify="right")
    table.add_column("note")
    table.add_row("parameters (f32)", _gib(plan.param_bytes), f"all devices {_gib(plan.param_bytes_global)}")
    table.add_row("optimizer state (AdamW, f32)", _gib(plan.optimizer_bytes),
                  f"all devices {_gib(plan.optimizer_bytes_global)}")
    table.add_row("activations, one micro-batch (estimate)", _gib(plan.activation_estimate),
                  f"{s.rows // max(s.micro_batches, 1)} rows x {s.width} tokens, "
                  f"{'K=' + str(s.loss_positions) + ' loss positions' if s.packed else 'head at every position'}")
    table.add_row("KV cache of a rollout batch", _gib(plan.kv_cache_bytes),
                  f"{s.batch} rows x {s.prompt_width + s.new_tokens} slots")
    u = plan.update_memory
    table.add_row("update: XLA arguments / outputs", f"{_gib(u['argument'])} / {_gib(u['output'])}",
                  f"aliased (donated) {_gib(u['alias'])}")
    table.add_row("update: XLA temporaries", _gib(u["temp"]), f"{s.micro_batches} micro-batch(es) of {s.rows} rows")
    table.add_row("update: XLA peak", _gib(plan.update_peak),
                  "arguments + outputs - aliased + temporaries" + (" + reference model" if config.grpo.beta > 0 else ""))
    if plan.sampler_memory is not None:
        m = plan.sampler_memory
        table.add_row("rollout: XLA arguments / temporaries", f"{_gib(m['argument'])} / {_gib(m['temp'])}",
                      f"prompt {s.prompt_width}, {s.new_tokens} new tokens, group {config.rollout.group_size}")
        table.add_row("rollout: peak (+ optimizer state)", _gib(plan.rollout_peak), "the moments stay on device")
        # XLA hoists the FSDP all-gathers of the weights out of the decode loop: each device holds whole
        # copies of the model during a rollout. Measured (Qwen3-8B, fsdp=8, CPU): ~2 copies in f32,
        # whatever the compute dtype, since the CPU backend runs bf16 matmuls in f32; an accelerator
        # keeps them in bf16, so this row overstates a bf16 rollout about twice.
        copies = m["temp"] / max(plan.param_count * 4, 1)
        table.add_row("rollout temporaries / whole model (f32)", f"{copies:.2f} x",
                      "weights gathered once before the decode loop (CPU: in f32; bf16 on an accelerator)")
    table.add_row("FLOPs per step (analytic, all devices)", f"{(plan.flops['update'] + plan.flops['rollout']):.3e}",
                  f"update {plan.flops['update']:.3e}, rollout {plan.flops['rollout']:.3e}")
    xla = f"{plan.xla_flops_update:.3e}"
    if plan.xla_flops_sampler is not None:
        xla += f" / {plan.xla_flops_sampler:.3e}"
    table.add_row("FLOPs XLA cost_analysis (update / rollout)", xla, "loop bodies counted once")
    table.add_row(f"time per step at {plan.mfu:.0%} MFU", _time(plan.step_seconds["step"]),
                  f"update {_time(plan.step_seconds['update'])}, rollout {_time(plan.step_seconds['rollout'])} "
                  f"(decode bound by max(FLOPs, HBM {plan.device.hbm_bytes_per_s / 1e12:.2f} TB/s))")
    table.add_row("device memory", _gib(plan.capacity),
                  f"usable {plan.memory_fraction:.0%}; {plan.device.bf16_flops / 1e12:.0f} TFLOP/s bf16")
    console = Console(record=True, width=140, file=open(os.devnull, "w"))
    console.print(table)
    notes = (f"lowered and compiled on {plan.num_devices} simulated CPU devices in {plan.compile_seconds:.0f} s; XLA's "
             "CPU temporaries stand in for the accelerator's (often larger: some bf16 math stays f32 on CPU)")
    if mc.dtype != "bfloat16":
        notes += (f"\ncompute dtype {mc.dtype}: the time assumes the bf16 peak, which {mc.dtype} matmuls do not reach "
                  "(--config.model.dtype=bfloat16 for an accelerator run)")
    return console.export_text() + notes + "\n" + plan.verdict()


# ============================================================================ compilation cache


def compilation_cache_dir(config: Any) -> str | None:
    """The directory ``c.compile.cache_dir`` names: "" = <workdir>/xla_cache, "off" = None."""
    cc = config.get("compile")
    raw = "" if cc is None else str(cc.cache_dir)
    if raw == "off":
        return None
    if raw:
        return raw
    workdir = str(config.workdir)
    return workdir.rstrip("/") + "/xla_cache" if "://" in workdir else str(Path(workdir).absolute() / "xla_cache")


def enable_compilation_cache(config_or_dir: Any, min_compile_time_secs: float | None = None,
                             min_entry_size_bytes: int | None = None) -> str | None:
    """Turn on JAX's persistent compilation cache; returns its directory (None when "off").

    ``config_or_dir``: a training config (``compile.*`` and ``workdir``) or a directory. Call it before
    the first jit compiles (programs compiled earlier are not written). The cache key covers the HLO,
    the compile options, the jax/jaxlib versions and the devices, so a stale entry cannot be reused.
    """
    import jax

    if isinstance(config_or_dir, (str, os.PathLike)):
        directory: str | None = os.fspath(config_or_dir)
        cc: Mapping[str, Any] = {}
    else:
        directory = compilation_cache_dir(config_or_dir)
        cc = config_or_dir.get("compile") or {}
    if directory is None or directory == "off":
        return None
    if "://" not in directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
    min_time = min_compile_time_secs if min_compile_time_secs is not None else float(cc.get("min_compile_time_secs", 1.0))
    min_size = min_entry_size_bytes if min_entry_size_bytes is not None else int(cc.get("min_entry_size_bytes", 0))
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_time))
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", int(min_size))
    try:  # a cache enabled after the first compile would otherwise stay off for this process
        from jax._src import compilation_cache

        compilation_cache.reset_cache()
    except (ImportError, AttributeError):
        pass
    return directory


# ============================================================================ CLI


def grpo_only(config: Any) -> Any:
    """A copy of ``config`` for the GRPO step the plan compiles: the SFT warm start is not planned, so
    its batch need not divide over the mesh (configs/grpo.py's sft.batch_size=1 would refuse fsdp > 1)."""
    checked = config.copy_and_resolve_references()
    checked.mode, checked.sft.num_steps = "grpo", 0
    m = checked.mesh
    if -1 not in (m.data, m.fsdp):
        checked.sft.batch_size = m.data * m.fsdp
    checked.train.num_steps = max(int(checked.train.num_steps), 1)
    return checked


def validate_for_plan(config: Any) -> None:
    """``validate`` of :func:`grpo_only` (raises ConfigError)."""
    from toolrl.rl.config import validate

    validate(grpo_only(config))


def run_plan(config: Any) -> Plan:
    """``--config.mode=plan`` of toolrl.main: validate, plan, print the table and the verdict line.

    jax must see ``plan.num_devices`` devices: when jax has not started yet, simulated CPU devices
    are set up here (as ``python -m toolrl.plan`` does); otherwise the process must have been started
    with ``XLA_FLAGS=--xla_force_host_platform_device_count=N``.
    """
    _ensure_cpu_devices([f"--config.plan.num_devices={int(config.plan.num_devices)}"])
    _quiet_xla()
    validate_for_plan(config)
    plan = make_plan(config)
    print(render(plan, config))
    return plan


def _ensure_cpu_devices(argv: list[str]) -> None:
    """Before jax starts: simulate plan.num_devices CPU devices unless XLA_FLAGS already sets a count."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" in flags or _backend_started():
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
        return
    n = 8
    for arg in argv:
        if arg.startswith("--config.plan.num_devices="):
            n = int(arg.split("=", 1)[1])
    os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={n}".strip()
    os.environ.setdefault("JAX_PLATFORMS", "cpu")


def _backend_started() -> bool:
    """Whether jax has created its backends (XLA_FLAGS is read then); importing jax alone does not."""
    if "jax" not in sys.modules:
        return False
    try:
        from jax._src import xla_bridge

        return bool(xla_bridge.backends_are_initialized())
    except (ImportError, AttributeError):  # another jax: assume started, the caller's error names XLA_FLAGS
        return True


def _quiet_xla() -> None:
    """The SPMD partitioner warns once per op it must replicate (the sampler's group broadcast of the
    prefilled cache): hundreds of lines around the table. TF_CPP_MIN_LOG_LEVEL=0 shows them."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv: list[str] | None = None) -> None:
    """``python -m toolrl.plan --config=configs/grpo.py [--config.field=value ...]``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    _ensure_cpu_devices(argv)
    _quiet_xla()
    from absl import app
    from ml_collections import config_flags

    config_flag = config_flags.DEFINE_config_file("config", "configs/grpo.py", "Training configuration file.")

    def run(_: list[str]) -> None:
        run_plan(config_flag.value)

    from toolrl.cli import run_cli
    from toolrl.rl.config import ConfigError

    # A config mistake is one line and exit 2 (--verbose shows the traceback), as in toolrl.main.
    run_cli(lambda args: app.run(run, argv=[sys.argv[0], *args]), argv=argv, prog="toolrl.plan",
            user_errors=(ConfigError,))


if __name__ == "__main__":
    main()

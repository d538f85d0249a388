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

Modules: ``toolrl/plan_costs.py`` (device kinds, shapes, bytes of a pytree, the analytic estimates),
``toolrl/plan_lowering.py`` (abstract state, lowering and compiling, XLA's analyses), this one (the
plan, its table and verdict line, the CLI). The persistent compilation cache is
``toolrl/compilation_cache.py``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from typing import Any

# Neither module imports jax at import time: run_plan must set up simulated devices before jax starts.
from toolrl.plan_costs import (DEVICES, DeviceKind, GiB, Shapes, activation_estimate, analytic_flops, global_bytes,
                               kv_cache_bytes, per_device_bytes, update_shapes)
from toolrl.plan_lowering import (abstract_train_state, compile_sampler, compile_update, lora_spec_of, memory_stats,
                                  model_config_of, xla_flops)

# ============================================================================ the plan


@dataclasses.dataclass
class Plan:
    """Everything the table shows (bytes per device unless named global)."""

    model: str
    device: DeviceKind
    num_devices: int
    mesh: tuple[int, int, int]
    shapes: Shapes
    param_count: int  # every parameter: the base and, with LoRA, its adapters
    param_bytes: int  # per device
    optimizer_bytes: int  # per device
    param_bytes_global: int
    optimizer_bytes_global: int
    lora: dict[str, Any] | None  # {"rank", "alpha", "targets"} (None: full fine-tuning)
    trainable_count: int  # what the optimizer updates: every parameter, or the LoRA adapters only
    trainable_bytes: int  # per device
    activation_estimate: int  # per device, one micro-batch
    kv_cache_bytes: int  # per device
    update_memory: dict[str, int]
    sampler_memory: dict[str, int] | None
    update_peak: int  # resident during the update (its XLA peak, + the KL reference when beta > 0)
    rollout_peak: int  # resident during the rollout (the sampler's peak + optimizer moments + reference)
    xla_flops_update: float  # per device, loop bodies counted once
    xla_flops_sampler: float | None
    flops: dict[str, float]  # analytic, all devices
    step_seconds: dict[str, float]
    mfu: float
    memory_fraction: float
    compile_seconds: float
    # Fields the plan set otherwise than the config, {field: [given, planned]}: a rollout batch that does
    # not divide over the data-parallel shards is planned at the next size that does.
    adjusted: dict[str, list[Any]] = dataclasses.field(default_factory=dict)

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
    given, config = config, grpo_only(config)
    data, fsdp, tensor = validate_for_devices(config, n)
    devices = list(devices if devices is not None else jax.devices())
    if len(devices) < n:
        raise ConfigError(f"plan.num_devices={n} needs {n} jax devices, this process has {len(devices)}: set "
                          f"XLA_FLAGS=--xla_force_host_platform_device_count={n} before jax starts")
    mesh = make_mesh(data, fsdp, tensor, devices[:n])
    mc = model_config_of(config)
    spec = lora_spec_of(config)
    shapes = update_shapes(config, data * fsdp)
    started = time.perf_counter()
    graphdef, state, mgraph, mstate = abstract_train_state(config, mc, mesh)
    params = nnx.state(mstate, nnx.Param)  # nnx.LoRAParam is an nnx.Param: the adapters are counted too
    trainable = nnx.state(mstate, nnx.LoRAParam) if spec is not None else params
    opt_state = state[1]  # the split of (model, optimizer): 0 = model, 1 = optimizer
    update = compile_update(config, graphdef, state, shapes, mesh)
    sampler = compile_sampler(config, mgraph, mstate, shapes, mesh) if p.sampler else None
    compile_seconds = time.perf_counter() - started

    param_bytes, opt_bytes = per_device_bytes(params), per_device_bytes(opt_state)
    update_mem = memory_stats(update)
    sampler_mem = memory_stats(sampler) if sampler is not None else None
    shards = data * fsdp
    kv_shard = tensor if mc.num_kv_heads % tensor == 0 else 1
    kv = kv_cache_bytes(mc, shapes.batch, shapes.prompt_width + shapes.new_tokens) // (shards * kv_shard)
    # The KL reference (toolrl/policy/reference.py) freezes a copy of what the optimizer moves: every
    # parameter, or with LoRA the adapters only (the base is shared with the policy).
    trainable_bytes = per_device_bytes(trainable)
    ref = trainable_bytes if config.grpo.beta > 0 else 0
    update_peak = update_mem["peak_memory"] + ref
    rollout_peak = (sampler_mem["peak_memory"] + opt_bytes + ref) if sampler_mem else 0
    trainable_count = sum(math.prod(x.shape) for x in jax.tree.leaves(trainable))
    flops = analytic_flops(mc, config, shapes, trainable_count if spec is not None else 0)
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
        lora=None if spec is None else {"rank": spec.rank, "alpha": spec.alpha, "targets": list(spec.targets)},
        trainable_count=trainable_count, trainable_bytes=trainable_bytes,
        activation_estimate=activation_estimate(mc, shapes) // shards, kv_cache_bytes=kv,
        update_memory=update_mem, sampler_memory=sampler_mem, update_peak=update_peak, rollout_peak=rollout_peak,
        xla_flops_update=xla_flops(update), xla_flops_sampler=xla_flops(sampler) if sampler is not None else None,
        flops=flops, step_seconds=seconds, mfu=float(p.mfu), memory_fraction=float(p.memory_fraction),
        compile_seconds=compile_seconds,
        adjusted=adjusted_fields(given, config),
    )


def adjusted_fields(given: Any, planned: Any) -> dict[str, list[Any]]:
    """{field: [given, planned]} of what :func:`grpo_only` changed that the plan's shapes depend on."""
    was, now = given.rollout.prompts_per_step, planned.rollout.prompts_per_step
    return {"rollout.prompts_per_step": [was, now]} if was != now else {}


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
             f"mesh data={data} fsdp={fsdp} tensor={tensor}, "
             + (f"LoRA rank {plan.lora['rank']} on {', '.join(plan.lora['targets'])}" if plan.lora else "full fine-tuning"))
    table = Table(title=title, show_lines=False)
    table.add_column("quantity")
    table.add_column("per device", justify="right")
    table.add_column("note")
    table.add_row("parameters (f32)", _gib(plan.param_bytes), f"all devices {_gib(plan.param_bytes_global)}")
    table.add_row("trainable parameters", _gib(plan.trainable_bytes),
                  f"{plan.trainable_count:,} of {plan.param_count:,} ({plan.trainable_count / plan.param_count:.2%})"
                  + (": the LoRA adapters, the base frozen" if plan.lora else ""))
    table.add_row("optimizer state (AdamW, f32)", _gib(plan.optimizer_bytes),
                  f"all devices {_gib(plan.optimizer_bytes_global)}" + ("; the adapters' moments only" if plan.lora else ""))
    table.add_row("activations, one micro-batch (estimate)", _gib(plan.activation_estimate),
                  f"{s.rows // max(s.micro_batches, 1)} rows x {s.width} tokens, "
                  f"{'K=' + str(s.loss_positions) + ' loss positions' if s.packed else 'head at every position'}")
    table.add_row("KV cache of a rollout batch", _gib(plan.kv_cache_bytes),
                  f"{s.batch} rows x {s.prompt_width + s.new_tokens} slots")
    u = plan.update_memory
    table.add_row("update: XLA arguments / outputs", f"{_gib(u['argument'])} / {_gib(u['output'])}",
                  f"aliased (donated) {_gib(u['alias'])}")
    table.add_row("update: XLA temporaries", _gib(u["temp"]), f"{s.micro_batches} micro-batch(es) of {s.rows} rows")
    reference = " + the KL reference's frozen copy" if config.grpo.beta > 0 else ""
    table.add_row("update: XLA peak", _gib(plan.update_peak), "arguments + outputs - aliased + temporaries" + reference)
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
    for field, (was, planned) in plan.adjusted.items():
        notes += (f"\n{field}={was} planned as {planned}: a rollout batch must divide over the {data * fsdp} "
                  f"data-parallel shards (training with {field}={was} on this mesh is refused)")
    if mc.dtype != "bfloat16":
        notes += (f"\ncompute dtype {mc.dtype}: the time assumes the bf16 peak, which {mc.dtype} matmuls do not reach "
                  "(--config.model.dtype=bfloat16 for an accelerator run)")
    return console.export_text() + notes + "\n" + plan.verdict()



# ============================================================================ CLI


def data_shards(config: Any) -> int:
    """mesh.data x mesh.fsdp, a -1 resolved against plan.num_devices (when the sizes do not divide the
    devices, validate_for_devices names the mismatch afterwards)."""
    m = config.mesh
    sizes = [int(m.data), int(m.fsdp), int(m.tensor)]
    known = math.prod(x for x in sizes if x != -1)
    if -1 in sizes:
        sizes[sizes.index(-1)] = max(int(config.plan.num_devices) // known, 1)
    return sizes[0] * sizes[1]


def grpo_only(config: Any) -> Any:
    """A copy of ``config`` for the GRPO step the plan compiles. The SFT warm start is not planned, so
    its batch need not divide over the mesh (configs/grpo.py's sft.batch_size=1 would refuse fsdp > 1);
    a rollout batch (prompts_per_step x group_size) that does not divide over the data-parallel shards
    gets the next prompts_per_step that does (configs/grpo.py's 1 x 4 rows on fsdp=8: 2 x 4), so that a
    small config still tells whether the model fits the mesh; :class:`Plan` records the change."""
    checked = config.copy_and_resolve_references()
    checked.mode, checked.sft.num_steps = "grpo", 0
    shards = data_shards(checked)
    checked.sft.batch_size = shards
    r = checked.rollout
    while (r.prompts_per_step * r.group_size) % shards:
        r.prompts_per_step += 1
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

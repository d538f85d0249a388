"""LoRA adapters on the decoder's attention and MLP projections, through qwix.

    from toolrl.models.lora import LoraSpec, apply_lora, lora_optimizer, merge_lora
    apply_lora(model, LoraSpec(rank=16, alpha=32.0, targets=("attn", "mlp")))   # in place
    optimizer = lora_optimizer(model, optax.adamw(1e-4))     # updates the adapters only
    merged = merge_lora(model)                               # plain Decoder for save_pretrained

qwix (``qwix.LoraProvider``) intercepts the ``jnp.dot`` calls a module makes on one of its parameters
and adds ``(x @ A) @ B * alpha / rank`` with A [in, r] (He-uniform) and B [r, out] (zeros), so an
adapted model starts equal to its base. The adapters are ``nnx.LoRAParam`` variables next to the
kernel they adapt (``q_kernel_lora_a``, ``q_kernel_lora_b``, ...); ``nnx.LoRAParam`` is a subclass of
``nnx.Param``, so checkpoints that save ``nnx.Param`` hold them, and an optimizer over
``nnx.LoRAParam`` touches nothing else.

Why per block: qwix wraps ONE method of the module it is given, and every path of ours (the sampler,
``Decoder.hidden_states``, the trainer's packed trunk that calls the blocks itself, the remat scan)
runs through ``Block.__call__``; wrapping ``Decoder.__call__`` would leave most of them unadapted.
Every block gets the same qwix subclass, so the remat scan can still stack them.

Why under jit: the projections use kernels reshaped and cast (``q_kernel[...].reshape(D, H*Dh)
.astype(dt)``); qwix recognises such an operand as the parameter by walking a tracer's unary
operations back to it, which only works while tracing. Creation therefore runs under ``nnx.jit``,
and an adapted block called eagerly (outside any jit) runs its call under ``nnx.jit`` too; every
training and sampling path is jitted anyway.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from toolrl.models.decoder import Block, Decoder, rope_inverse_frequencies, rope_tables

#: Target name -> the block submodule whose projections get adapters.
TARGETS: dict[str, str] = {"attn": "attn", "mlp": "mlp"}
#: Kernels each target holds, with how many leading axes are the input (the rest are the output).
KERNEL_INPUT_AXES: dict[str, dict[str, int]] = {
    "attn": {"q_kernel": 1, "k_kernel": 1, "v_kernel": 1, "o_kernel": 2},
    "mlp": {"gate_kernel": 1, "up_kernel": 1, "down_kernel": 1},
}


@dataclasses.dataclass(frozen=True)
class LoraSpec:
    """rank r, alpha (the update is scaled by alpha / r) and the targeted submodules ("attn", "mlp")."""

    rank: int
    alpha: float
    targets: tuple[str, ...] = ("attn", "mlp")

    def __post_init__(self) -> None:
        if self.rank < 1:
            raise ValueError(f"LoRA rank={self.rank} must be >= 1")
        unknown = sorted(set(self.targets) - set(TARGETS))
        if unknown or not self.targets:
            raise ValueError(f"LoRA targets {list(self.targets)}: each must be one of {sorted(TARGETS)}")

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    @classmethod
    def from_config(cls, lora: Any) -> "LoraSpec | None":
        """From ``config.model.lora`` (rank 0 = no LoRA); targets as a comma-separated string or a list."""
        if lora is None or int(lora.rank) == 0:
            return None
        targets = lora.targets.split(",") if isinstance(lora.targets, str) else list(lora.targets)
        return cls(int(lora.rank), float(lora.alpha), tuple(t.strip() for t in targets if t.strip()))


def _provider(spec: LoraSpec) -> Any:
    import qwix

    class LoraInComputeDtype(qwix.LoraProvider):
        """qwix's LoRA, each adapted product returned in the dtype of the plain product. The adapters are
        float32 like every parameter, so ``x @ W + (x @ A) @ B`` would turn a bfloat16 projection (and the
        residual stream after it) into float32: more memory, and the remat scan's carry would change
        dtype (an error)."""

        def dot_general(self, lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None,
                        out_sharding=None):
            out = super().dot_general(lhs, rhs, dimension_numbers, precision, preferred_element_type,
                                      out_sharding=out_sharding)
            if preferred_element_type is None and hasattr(rhs, "dtype"):
                return out.astype(jnp.result_type(lhs.dtype, rhs.dtype))
            return out

    # Module paths are relative to the block: ("attn",), ("mlp",).
    pattern = "^(" + "|".join(re.escape(TARGETS[t]) for t in spec.targets) + ")$"
    return LoraInComputeDtype(module_path=pattern, rank=spec.rank, alpha=spec.alpha)


def _example_inputs(config: Any) -> tuple[Any, ...]:
    """Inputs of a block call: x [1, 2, D], RoPE tables, a causal mask, no cache."""
    dt = config.compute_dtype
    x = jnp.zeros((1, 2, config.hidden_size), dt)
    positions = jnp.arange(2, dtype=jnp.int32)[None]
    rope = rope_tables(positions, rope_inverse_frequencies(config), dt)
    mask = jnp.tril(jnp.ones((2, 2), bool))[None]
    return x, rope, mask, None, None


def _adapted_class(block_class: type, qwix_class: type, spec: LoraSpec) -> type:
    """qwix's subclass of Block, with eager calls routed through nnx.jit (see the module docstring)."""
    wrapped = qwix_class.__call__

    @nnx.jit
    def jitted(module: Any, *args: Any) -> Any:
        return wrapped(module, *args)

    def __call__(self, x, rope, mask, cache_kv, index):  # noqa: N807
        if isinstance(x, jax.core.Tracer):
            return wrapped(self, x, rope, mask, cache_kv, index)
        return jitted(self, x, rope, mask, cache_kv, index)

    return type(block_class.__name__, (qwix_class,),
                {"__call__": __call__, "_lora_wrapped": wrapped, "_lora_spec": spec})


def _init_adapters(block: Any, inputs: tuple[Any, ...], seed: int) -> None:
    """Run one traced call so that qwix creates the block's adapters (it creates them on first use)."""
    for _, module in block.iter_modules():
        module.disable_quant_stats_update = True
        module.qwix_rngs = nnx.Rngs(seed)

    @nnx.jit
    def init(module: Any, *args: Any) -> Any:
        return type(module)._lora_wrapped(module, *args)[0]

    init(block, *inputs)
    block.set_attributes(disable_quant_stats_update=False, qwix_rngs=None)


def apply_lora(model: Decoder, spec: LoraSpec, seed: int = 0) -> Decoder:
    """Add rank-``spec.rank`` adapters to every block's targeted projections, in place (returns ``model``).

    The base parameters are untouched; the adapters' B is zero, so the adapted model computes the
    base model's logits exactly. Adapter A of block i is drawn from ``seed + i``.
    """
    import qwix

    if any(hasattr(type(layer), "_lora_wrapped") for layer in model.layers):
        raise ValueError("the model already has LoRA adapters")
    inputs = _example_inputs(model.config)
    provider = _provider(spec)
    # qwix clones the block and gives the clone a subclass whose __call__ intercepts; that subclass is
    # then shared by every block (one class: the remat scan stacks blocks of one structure).
    first = qwix.apply_lora_to_model(model.layers[0], provider, *inputs, rngs=nnx.Rngs(seed), skip_nnx_init=True)
    cls = _adapted_class(Block, type(first), spec)
    paths = {path: getattr(module, "qwix_path", path) for path, module in first.iter_modules()}
    for i, layer in enumerate(list(model.layers)):
        block = first if i == 0 else nnx.clone(layer)
        block.__class__ = cls
        for path, module in block.iter_modules():
            module.qwix_path = paths.get(path, path)
        _init_adapters(block, inputs, seed + i)
        _fix_adapter_axes(block, spec)
        model.layers[i] = block
    return model


def _fix_adapter_axes(block: Any, spec: LoraSpec) -> None:
    """Give A [in, r] and B [r, out] the logical axes of the kernel's first input / output axis.

    qwix copies the kernel's axis names by position of the reshaped operand, which names B of the
    attention output [r, D] 'head_dim' instead of 'embed'; the sharding rules read these names."""
    for target in spec.targets:
        module = getattr(block, TARGETS[target])
        for kernel, n_in in KERNEL_INPUT_AXES[target].items():
            axes = tuple(getattr(module, kernel).get_metadata().get("out_sharding") or ())
            if not axes:
                continue
            for suffix, names in (("_lora_a", (axes[0], None)), ("_lora_b", (None, axes[n_in]))):
                var = getattr(module, kernel + suffix, None)
                if var is not None:
                    var.set_metadata(out_sharding=names)


def has_lora(model: Decoder) -> bool:
    return any(hasattr(type(layer), "_lora_wrapped") for layer in model.layers)


def lora_state(model: nnx.Module) -> nnx.State:
    """The adapters only (``nnx.LoRAParam``)."""
    return nnx.state(model, nnx.LoRAParam)


def lora_optimizer(model: nnx.Module, tx: Any) -> nnx.Optimizer:
    """An ``nnx.Optimizer`` over the adapters only: the base parameters get no moments and no update."""
    return nnx.Optimizer(model, tx, wrt=nnx.LoRAParam)


def merged_kernels(model: Decoder) -> dict[str, np.ndarray]:
    """{our parameter path: kernel + alpha / r * (A @ B) reshaped to the kernel} for every adapted kernel."""
    out = {}
    for i, layer in enumerate(model.layers):
        spec = getattr(type(layer), "_lora_spec", None)
        if spec is None:
            continue
        for target in spec.targets:
            module = getattr(layer, TARGETS[target])
            for kernel in KERNEL_INPUT_AXES[target]:
                a = getattr(module, kernel + "_lora_a", None)
                b = getattr(module, kernel + "_lora_b", None)
                if a is None or b is None:
                    continue
                w = getattr(module, kernel)[...]
                # qwix's adapters act on the kernel reshaped to [in, out] (row-major), so the product
                # reshapes back to the kernel's own layout.
                delta = (a[...].astype(jnp.float32) @ b[...].astype(jnp.float32)) * spec.scale
                out[f"layers.{i}.{TARGETS[target]}.{kernel}"] = np.asarray(
                    (w.astype(jnp.float32) + delta.reshape(w.shape)).astype(w.dtype))
    return out


def merge_lora(model: Decoder) -> Decoder:
    """A plain Decoder (no adapters) whose targeted kernels are W + alpha / r * A @ B: the adapted
    model's function, exportable with ``save_pretrained`` and loadable without qwix."""
    merged = merged_kernels(model)
    plain = nnx.eval_shape(lambda: Decoder(model.config, nnx.Rngs(0)))
    graphdef, state = nnx.split(plain)
    source = {".".join(map(str, p)): v for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))
              if not isinstance(v, nnx.LoRAParam)}
    flat = []
    for path, var in nnx.to_flat_state(state):
        key = ".".join(map(str, path))
        value = merged[key] if key in merged else source[key].get_value()
        flat.append((path, var.replace(jnp.asarray(value))))
    return nnx.merge(graphdef, nnx.from_flat_state(flat))


def adapter_count(model: nnx.Module) -> int:
    """Number of adapter weights."""
    return sum(math.prod(x.shape) for x in jax.tree.leaves(lora_state(model)))


__all__: Sequence[str] = ("LoraSpec", "TARGETS", "adapter_count", "apply_lora", "has_lora", "lora_optimizer",
                          "lora_state", "merge_lora", "merged_kernels")

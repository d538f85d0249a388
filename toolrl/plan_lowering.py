"""The GRPO update and the rollout's sampler lowered and compiled with abstract weights.

``nnx.eval_shape`` builds the model and the optimizer as ``jax.ShapeDtypeStruct`` leaves carrying the
``NamedSharding`` their logical axes get on the mesh (as ``shard_state`` would place them), so nothing
is allocated; the trainer's own step functions (``toolrl/rl/steps.py``) and the sampler
(``toolrl/models/sampler.py:generate_arrays``) are then lowered for the widest batch and compiled.
XLA's memory analysis and cost analysis of the compiled programs are read here.
"""

from __future__ import annotations

from typing import Any

from toolrl.plan_costs import Shapes

# ============================================================================ abstract state


def model_config_of(config: Any) -> Any:
    """The ModelConfig a training config names (preset, or an HF ``config.json`` under model.path),
    with its dtype and execution options, without reading any weights."""
    from toolrl.models.config import ModelConfig

    m = config.model
    base = ModelConfig.from_hf_config(m.path) if m.path else ModelConfig.preset(m.preset)
    return base.with_dtype(m.dtype, "float32").replace(attention_impl=m.get("attention_impl", "xla"),
                                                       remat=bool(m.get("remat", False)),
                                                       attention_query_chunk=int(m.get("attention_query_chunk", 0)))



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


def lora_spec_of(config: Any) -> Any:
    """The LoraSpec ``model.lora`` names (None: rank 0, full fine-tuning)."""
    from toolrl.models.lora import LoraSpec

    return LoraSpec.from_config(config.model.get("lora"))


def abstract_train_state(config: Any, model_config: Any, mesh: Any) -> tuple[Any, Any, Any, Any]:
    """(graphdef of (model, optimizer), their abstract sharded state, the model's graphdef, its state).

    Built as the trainer builds them: the model (with ``model.lora.rank > 0``, qwix adapters added after
    the base, as ``Policy.load`` does), then ``steps.make_optimizer`` with the GRPO learning rate over
    ``nnx.Param`` (full fine-tuning) or ``nnx.LoRAParam`` (the adapters only: the base gets no moments).
    AdamW's moments are float32, whatever the compute dtype."""
    from flax import nnx

    from toolrl.models.decoder import Decoder
    from toolrl.models.lora import apply_lora
    from toolrl.rl import steps

    o, seed, spec = config.optim, int(config.seed), lora_spec_of(config)

    def build() -> tuple[Any, Any]:
        model = Decoder(model_config, nnx.Rngs(seed))
        if spec is not None:
            apply_lora(model, spec, seed)  # traced under eval_shape: the adapters are abstract too
        return model, steps.make_optimizer(model, o.learning_rate, o.warmup_steps, o.weight_decay, o.b1, o.b2,
                                           o.grad_clip, wrt=nnx.Param if spec is None else nnx.LoRAParam)

    # No mesh in context: the variables carry logical axis names, which only our rule table resolves.
    model, optimizer = nnx.eval_shape(build)
    graphdef, state = nnx.split((model, optimizer))
    mgraph, mstate = nnx.split(model)
    return graphdef, abstract_sharded(state, mesh), mgraph, abstract_sharded(mstate, mesh)


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


# ============================================================================ XLA's analyses


def memory_stats(compiled: Any) -> dict[str, int]:
    m = compiled.memory_analysis()
    names = ("argument_size_in_bytes", "output_size_in_bytes", "alias_size_in_bytes", "temp_size_in_bytes",
             "generated_code_size_in_bytes", "peak_memory_in_bytes")
    out = {n.replace("_size_in_bytes", "").replace("_in_bytes", ""): int(getattr(m, n, 0) or 0) for n in names}
    # XLA's CPU backend reports a peak that leaves out the temporaries: bound it below by what is live
    # at once in the worst case (arguments, outputs not aliased to them, every temporary).
    out["xla_peak"] = out.pop("peak_memory")
    out["peak_memory"] = max(out["xla_peak"], out["argument"] + out["output"] - out["alias"] + out["temp"])
    return out


def xla_flops(compiled: Any) -> float:
    """XLA's cost analysis: FLOPs per device (the body of a loop counted once)."""
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else {}
    return float((cost or {}).get("flops", 0.0))


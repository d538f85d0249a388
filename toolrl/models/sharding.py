"""Device mesh and the ONE table mapping logical axis names to mesh axes.

Model code names only logical axes (``embed``, ``mlp``, ``heads``, ``kv_heads``, ``head_dim``,
``vocab``; activations use ``batch``, ``length``). :data:`LOGICAL_AXIS_RULES` decides where each goes
on the ``("data", "fsdp", "tensor")`` mesh, so changing the parallelism plan touches no model code.
The same code runs on 1 CPU device (every mesh axis of size 1), simulated CPU devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=8``), a GPU or a TPU slice.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MESH_AXES: tuple[str, str, str] = ("data", "fsdp", "tensor")

#: Logical axis -> mesh axis (or tuple of mesh axes, or None = replicated).
#: Parameters: FSDP shards the model width, tensor parallelism splits heads / MLP / vocab.
#: Activations: the batch is split over both data and fsdp (fsdp devices see different examples).
LOGICAL_AXIS_RULES: tuple[tuple[str, str | tuple[str, ...] | None], ...] = (
    ("batch", ("data", "fsdp")),
    ("length", None),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("head_dim", None),
    ("vocab", "tensor"),
    ("norm", None),
)


def make_mesh(data: int = 1, fsdp: int = 1, tensor: int = 1, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A ``Mesh`` with axes ("data", "fsdp", "tensor") over the first data*fsdp*tensor devices.

    Raises:
      ValueError: fewer devices than the mesh needs.
    """
    devices = list(devices if devices is not None else jax.devices())
    n = data * fsdp * tensor
    if n > len(devices):
        raise ValueError(f"mesh data={data} fsdp={fsdp} tensor={tensor} needs {n} devices, have {len(devices)}")
    grid = np.asarray(devices[:n], dtype=object).reshape(data, fsdp, tensor)
    return Mesh(grid, MESH_AXES)


def logical_to_mesh_spec(
    logical: Sequence[str | None] | PartitionSpec | None,
    rules: Sequence[tuple[str, Any]] = LOGICAL_AXIS_RULES,
    mesh: Mesh | None = None,
) -> PartitionSpec:
    """Translate logical axis names to a mesh ``PartitionSpec`` through ``rules``.

    A mesh axis is used at most once per spec (a later logical axis wanting an already used mesh axis
    is replicated instead), and mesh axes of size 1 are dropped when a mesh is given, so the spec is
    valid for any mesh shape.
    """
    if logical is None:
        return PartitionSpec()
    table = dict(rules)
    used: set[str] = set()
    out: list[Any] = []
    for name in logical:
        target = table.get(name) if name is not None else None
        axes = (target,) if isinstance(target, str) else tuple(target or ())
        keep = tuple(a for a in axes if a not in used and (mesh is None or mesh.shape[a] > 1))
        used.update(keep)
        out.append(None if not keep else keep[0] if len(keep) == 1 else keep)
    return PartitionSpec(*out)


def logical_sharding(mesh: Mesh, logical: Sequence[str | None], rules: Sequence[tuple[str, Any]] = LOGICAL_AXIS_RULES) -> NamedSharding:
    """``NamedSharding`` for an array whose dimensions carry the given logical names."""
    return NamedSharding(mesh, logical_to_mesh_spec(logical, rules, mesh))


def _logical_axes_of(var: nnx.Variable) -> tuple[str | None, ...] | None:
    meta = var.get_metadata()
    return meta.get("out_sharding") or meta.get("sharding_names") or meta.get("sharding")


def state_shardings(state: nnx.State, mesh: Mesh, rules: Sequence[tuple[str, Any]] = LOGICAL_AXIS_RULES) -> Any:
    """A pytree of ``NamedSharding`` matching ``state`` (leaves without logical axes are replicated)."""

    def one(x: Any) -> NamedSharding:
        axes = _logical_axes_of(x) if isinstance(x, nnx.Variable) else None
        return logical_sharding(mesh, axes or (), rules)

    return jax.tree.map(one, state, is_leaf=lambda x: isinstance(x, nnx.Variable))


def shard_state(state: nnx.State, mesh: Mesh, rules: Sequence[tuple[str, Any]] = LOGICAL_AXIS_RULES) -> nnx.State:
    """Place every array of ``state`` on ``mesh`` according to its logical axes."""
    shardings = state_shardings(state, mesh, rules)
    return jax.tree.map(
        lambda v, s: v.replace(jax.device_put(v.get_value(), s)) if isinstance(v, nnx.Variable) else jax.device_put(v, s),
        state, shardings, is_leaf=lambda x: isinstance(x, nnx.Variable),
    )


def shard_model(model: nnx.Module, mesh: Mesh, rules: Sequence[tuple[str, Any]] = LOGICAL_AXIS_RULES) -> nnx.Module:
    """Shard a model's parameters onto ``mesh`` in place (and return it)."""
    state = nnx.state(model)
    nnx.update(model, shard_state(state, mesh, rules))
    return model


def batch_sharding(mesh: Mesh, ndim: int, rules: Sequence[tuple[str, Any]] = LOGICAL_AXIS_RULES) -> NamedSharding:
    """Sharding for an activation / input array whose leading axis is the batch."""
    return logical_sharding(mesh, ("batch",) + (None,) * (ndim - 1), rules)

"""Sharded code paths on a fake 8-device CPU mesh (run in a subprocess: the device count must be set
before jax initialises)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from jax.sharding import PartitionSpec as P

from toolrl.models.sharding import LOGICAL_AXIS_RULES, logical_to_mesh_spec, make_mesh

SCRIPT = textwrap.dedent(
    """
    import sys
    import jax, jax.numpy as jnp, numpy as np
    from flax import nnx
    sys.path.insert(0, sys.argv[2])
    from model_fixtures import saved_random_model
    from toolrl.models.checkpoint_io import load_pretrained
    from toolrl.models.config import ModelConfig
    from toolrl.models.decoder import left_pad_positions
    from toolrl.models.sampler import SamplingParams, generate
    from toolrl.models.sharding import make_mesh, shard_model

    assert len(jax.devices()) == 8
    cfg = ModelConfig.tiny(num_heads=4, num_kv_heads=2)
    ref, directory = saved_random_model(cfg, __import__("pathlib").Path(sys.argv[1]), seed=5)
    mesh = make_mesh(data=2, fsdp=2, tensor=2)
    model, _, _ = load_pretrained(directory, mesh=mesh)
    q = model.layers[0].attn.q_kernel.get_value()
    assert q.sharding.spec == jax.sharding.PartitionSpec("fsdp", "tensor", None), q.sharding
    assert len(q.addressable_shards) == 8 and q.addressable_shards[0].data.shape == (32, 2, 16)
    tokens = jnp.asarray(np.random.RandomState(0).randint(3, 128, (4, 8)), jnp.int32)
    mask = jnp.ones((4, 8), bool)
    pos = left_pad_positions(mask)
    a, _ = model(tokens, pos, mask)
    b, _ = ref(tokens, pos, mask)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
    # shard_model on an unsharded model gives the same placement.
    shard_model(ref, mesh)
    assert ref.layers[0].mlp.down_kernel.get_value().sharding.spec == jax.sharding.PartitionSpec("tensor", "fsdp")
    params = SamplingParams(max_new_tokens=6, greedy=True)
    prompts = [[5, 6, 7], [8, 9], [10], [11, 12, 13, 14]]
    sharded = generate(model, prompts, params, bucket=4, mesh=mesh)
    plain = generate(ref, prompts, params, bucket=4)
    np.testing.assert_array_equal(sharded.tokens, plain.tokens)
    print("SHARDED_OK")
    """
)


def test_rule_table_to_mesh_specs():
    assert logical_to_mesh_spec(("embed", "mlp")) == P("fsdp", "tensor")
    assert logical_to_mesh_spec(("batch", "length", "embed")) == P(("data", "fsdp"), None, None)
    mesh = make_mesh(1, 1, 1)
    # Size-1 mesh axes are dropped, so the same rules work on one device.
    assert logical_to_mesh_spec(("vocab", "embed"), LOGICAL_AXIS_RULES, mesh) == P(None, None)
    assert mesh.axis_names == ("data", "fsdp", "tensor")


def test_load_forward_and_generate_on_fake_8_device_mesh(tmp_path):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    tests_dir = Path(__file__).parent
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "m"), str(tests_dir)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert "SHARDED_OK" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-4000:]

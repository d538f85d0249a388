"""One sharded GRPO train step on 8 simulated CPU devices equals the unsharded step.

The device count must be set before jax is imported, so the comparison runs in a subprocess and the
rest of the test session keeps its single CPU device. One subprocess runs the unsharded step once and
the sharded step on every mesh of the test's cases (a start of jax and the unsharded step per case
cost ~7 s of CPU each).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

SCRIPT = r'''
import json, os, sys
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
os.environ["JAX_PLATFORMS"] = "cpu"
import jax, jax.numpy as jnp, numpy as np
from flax import nnx
from toolrl.models.config import ModelConfig
from toolrl.models.decoder import init_model
from toolrl.models.sharding import make_mesh, shard_model
from toolrl.rl import grpo, steps

assert jax.device_count() == 8, jax.devices()
cases = json.loads(sys.argv[1])  # [[mesh "data,fsdp,tensor", remat ("" or "remat")], ...]
cfg = ModelConfig.tiny()
B, T = 8, 32
rng = np.random.default_rng(0)
tokens = rng.integers(3, cfg.vocab_size, (B, T)).astype(np.int32)
attn = np.ones((B, T), bool); attn[:, 28:] = False; attn[3, 20:] = False
loss_mask = np.zeros((B, T), bool); loss_mask[:, 12:] = True; loss_mask &= attn
batch = {"tokens": tokens, "attention_mask": attn, "loss_mask": loss_mask,
         "advantages": rng.normal(size=B).astype(np.float32), "valid": np.array([1, 1, 1, 1, 1, 1, 0, 0], bool),
         "ref_logp": (-5.0 + 0.1 * rng.normal(size=(B, T - 1))).astype(np.float32),
         "old_logp": (-4.85 + 0.3 * rng.normal(size=(B, T - 1))).astype(np.float32)}
loss_config = grpo.LossConfig(epsilon_low=0.2, epsilon_high=0.28, beta=0.05)

def run(mesh, config=cfg):
    model = init_model(config, seed=0)
    if mesh is None:
        opt = steps.make_optimizer(model, 1e-3)
    else:
        with jax.set_mesh(mesh):
            shard_model(model, mesh)
            opt = steps.make_optimizer(model, 1e-3)
            from toolrl.models.sharding import shard_state
            nnx.update(opt, shard_state(nnx.state(opt), mesh))
    graphdef, state = nnx.split((model, opt))
    fn = steps.make_grpo_step(graphdef, loss_config, mesh, state, use_old_logp=True)
    new_state, metrics = fn(state, steps.to_device_batch(batch, mesh))
    nnx.update((model, opt), new_state)
    params = {"/".join(map(str, k)): np.asarray(v) for k, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}
    shardings = {"/".join(map(str, k)): str(getattr(v.get_value().sharding, "spec", "single")) for k, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}
    return float(metrics["loss"]), float(metrics["clip_fraction"]), params, shardings

loss0, clip0, p0, _ = run(None)
moved = max(float(np.max(np.abs(p0[k] - np.asarray(init)))) for k, init in
            ((k, v) for k, v in {"/".join(map(str, k)): v.get_value() for k, v in nnx.to_flat_state(nnx.state(init_model(cfg, 0), nnx.Param))}.items()))
results = {}
for mesh, remat in cases:
    data, fsdp, tensor = (int(x) for x in mesh.split(","))
    loss1, clip1, p1, sh = run(make_mesh(data, fsdp, tensor), cfg.replace(remat=remat == "remat"))
    diff = max(float(np.max(np.abs(p0[k] - p1[k]))) for k in p0)
    results[f"{mesh}-{remat}"] = {"loss0": loss0, "loss1": loss1, "clip0": clip0, "clip1": clip1, "max_param_diff": diff,
                                  "max_update": moved, "sharded_specs": sorted(set(sh.values()))}
print(json.dumps(results))
'''


CASES = [("2,4,1", ""), ("2,2,2", ""), ("2,2,2", "remat")]


@pytest.fixture(scope="module")
def sharded_results():
    """{"mesh-remat": the subprocess's numbers} for every case, from one subprocess."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    out = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(CASES)], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("mesh,remat", CASES)
def test_sharded_step_equals_unsharded(sharded_results, mesh, remat):
    """remat: the sharded step scans its blocks under jax.checkpoint; the plain step does not."""
    result = sharded_results[f"{mesh}-{remat}"]
    assert result["loss1"] == pytest.approx(result["loss0"], rel=1e-5, abs=1e-6)
    assert result["clip1"] == pytest.approx(result["clip0"], abs=1e-6)
    assert result["max_update"] > 1e-4  # the step did change the parameters
    # Adam divides by sqrt(v): for near-zero gradients, float reassociation across shards moves an
    # update of size ~lr = 1e-3 by a few 1e-5. 1e-4 (10% of one update) still catches a wrong shard.
    assert result["max_param_diff"] < 1e-4
    # The parameters really were split over the mesh (not all replicated).
    assert any(spec != "PartitionSpec()" for spec in result["sharded_specs"])


@pytest.mark.parametrize("aggregation", ["token_mean", "sequence_mean", "constant"])
def test_micro_batched_step_equals_full_batch(aggregation):
    """Gradient accumulation over 4 micro-batches gives the full-batch loss and update."""
    import numpy as np
    from flax import nnx

    from toolrl.models.config import ModelConfig
    from toolrl.models.decoder import init_model
    from toolrl.rl import grpo, steps

    cfg = ModelConfig.tiny()
    rng = np.random.default_rng(1)
    B, T = 8, 24
    attn = np.ones((B, T), bool)
    attn[:, 20:] = False
    loss_mask = np.ones((B, T), bool)
    loss_mask &= np.arange(T)[None, :] >= (8 + np.arange(B) % 5)[:, None]  # ragged: exercises the weighting
    loss_mask &= attn
    batch = {"tokens": rng.integers(3, cfg.vocab_size, (B, T)).astype(np.int32), "attention_mask": attn,
             "loss_mask": loss_mask, "advantages": rng.normal(size=B).astype(np.float32),
             "valid": np.array([1, 1, 0, 1, 1, 1, 1, 0], bool)}
    loss_config = grpo.LossConfig(beta=0.0, aggregation=aggregation, constant_tokens=B * T)
    results = []
    for micro in (1, 4):
        model = init_model(cfg, seed=0)
        opt = steps.make_optimizer(model, 1e-3)
        graphdef, state = nnx.split((model, opt))
        fn = steps.make_grpo_step(graphdef, loss_config, None, state, use_old_logp=False, micro_batches=micro)
        new_state, metrics = fn(state, steps.to_device_batch(batch, None))
        nnx.update((model, opt), new_state)
        flat = [np.asarray(v.get_value()) for _, v in nnx.to_flat_state(nnx.state(model, nnx.Param))]
        results.append((float(metrics["loss"]), float(metrics["grad_norm"]), flat))
    assert results[1][0] == pytest.approx(results[0][0], rel=1e-5, abs=1e-7)
    assert results[1][1] == pytest.approx(results[0][1], rel=1e-4)
    assert max(float(np.abs(a - b).max()) for a, b in zip(results[0][2], results[1][2])) < 1e-4

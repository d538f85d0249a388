"""experiments/export_start.py: a run's checkpoint written as HF safetensors reads back as the same parameters."""

import json

import jax
import ml_dtypes
import numpy as np
from flax import nnx

from experiments.export_start import cut, export
from toolrl.models.checkpoint_io import load_params
from toolrl.policy.checkpoint import Checkpointer
from toolrl.policy.runtime import Policy


def _trained_workdir(tmp_path):
    """A workdir whose checkpoint holds parameters unlike the preset's initialisation."""
    policy = Policy.load(preset="tiny")
    params = jax.tree.map(lambda x: x * 1.5 + 0.01, nnx.state(policy.model, nnx.Param))
    workdir = tmp_path / "run"
    ckpt = Checkpointer(workdir / "checkpoints", 1, 1)
    ckpt.save(7, params, None, {"step": 7})
    ckpt.close()
    (workdir / "config.json").write_text(json.dumps({"model": {"preset": "tiny", "path": ""}}))
    return workdir, params, policy.model_config


def _flat(state):
    return {k: np.asarray(v.get_value()) for k, v in nnx.to_flat_state(state)}


def test_export_round_trips_exactly_in_float32_and_to_bf16_rounding(tmp_path):
    workdir, params, config = _trained_workdir(tmp_path)
    want = _flat(params)
    for dtype in ("float32", "bfloat16"):
        out = export(workdir, tmp_path / dtype, dtype)
        got = _flat(nnx.state(load_params(out, config), nnx.Param))
        assert got.keys() == want.keys()
        for key, value in want.items():
            expected = value if dtype == "float32" else value.astype(ml_dtypes.bfloat16).astype(np.float32)
            np.testing.assert_array_equal(got[key], expected, err_msg=f"{dtype} {key}")
        meta = json.loads((out / "config.json").read_text())
        assert meta["torch_dtype"] == dtype


def test_cut_pieces_join_back(tmp_path):
    path = tmp_path / "blob.bin"
    data = np.random.default_rng(0).integers(0, 256, 1000, dtype=np.uint8).tobytes()
    path.write_bytes(data)
    pieces = cut(path, 300)
    assert [p.name for p in pieces] == [f"blob.bin.part{k}" for k in range(4)]
    assert not path.exists()
    assert b"".join(p.read_bytes() for p in pieces) == data

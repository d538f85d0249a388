"""benchmarks/random_weights.py: a random model directory that loads back as exactly the model it drew."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jax
import numpy as np
from flax import nnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from random_weights import write_random_model  # noqa: E402

from toolrl.models.checkpoint_io import load_params  # noqa: E402
from toolrl.models.config import ModelConfig  # noqa: E402
from toolrl.models.decoder import init_model  # noqa: E402


def test_random_weights_round_trip(tmp_path):
    config = ModelConfig.preset("tiny")
    src = tmp_path / "src"
    src.mkdir()
    (src / "config.json").write_text(json.dumps(config.to_hf_config()))
    (src / "generation_config.json").write_text('{"eos_token_id": 2}')
    out = write_random_model(src, tmp_path / "out", seed=3)
    assert (out / "generation_config.json").read_text() == '{"eos_token_id": 2}'
    loaded_config = ModelConfig.from_hf_config(out)
    model = load_params(out, loaded_config)
    assert loaded_config.num_layers == config.num_layers and loaded_config.vocab_size == config.vocab_size
    want = nnx.to_flat_state(nnx.state(init_model(config, 3), nnx.Param))
    got = dict(nnx.to_flat_state(nnx.state(model, nnx.Param)))
    assert len(got) == len(want) > 0
    for path, var in want:
        np.testing.assert_array_equal(np.asarray(jax.device_get(got[path].get_value())),
                                      np.asarray(jax.device_get(var.get_value())))

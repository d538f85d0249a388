"""Decoder: logit parity with HF transformers' torch models, padding, log-probs, checkpoint IO errors."""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from model_fixtures import hf_causal_lm, hf_logits, random_model, saved_random_model
from toolrl.models.checkpoint_io import (
    PARAM_TABLE,
    CheckpointError,
    expand_table,
    load_pretrained,
    save_pretrained,
)
from toolrl.models.config import ModelConfig, RopeScaling, UnknownArchitectureError
from toolrl.models.decoder import left_pad_positions, sequence_logprobs, token_logprobs

CONFIGS = {
    "llama_tied": ModelConfig.tiny(),
    "qwen2_bias_untied": ModelConfig.tiny_qwen2(),
    "llama3_rope_scaling": ModelConfig.tiny(
        name="tiny_l3", rope_scaling=RopeScaling("llama3", 8.0, 1.0, 4.0, 32), tie_word_embeddings=False
    ),
}


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def saved(request, tmp_path_factory):
    cfg = CONFIGS[request.param]
    directory = tmp_path_factory.mktemp(request.param)
    model, _ = saved_random_model(cfg, directory, seed=3)
    return cfg, model, directory


def _batch(vocab: int, seed: int = 0):
    """Three rows: full, left-padded, right-padded."""
    rng = np.random.RandomState(seed)
    tokens = rng.randint(3, vocab, (3, 10)).astype(np.int32)
    mask = np.ones((3, 10), bool)
    mask[1, :4] = False
    mask[2, 7:] = False
    tokens[~mask] = 0
    return tokens, mask, np.asarray(left_pad_positions(jnp.asarray(mask)))


def test_logits_match_hf_torch_with_padding(saved):
    cfg, _, directory = saved
    model, tokenizer, loaded_cfg = load_pretrained(directory)
    assert tokenizer is None and loaded_cfg.arch == cfg.arch
    tokens, mask, pos = _batch(cfg.vocab_size)
    ours, cache = model(jnp.asarray(tokens), jnp.asarray(pos), jnp.asarray(mask))
    assert cache is None and ours.dtype == jnp.float32 and ours.shape == (3, 10, cfg.vocab_size)
    ref = hf_logits(hf_causal_lm(directory), tokens, mask, pos)
    assert np.abs(np.asarray(ours)[mask] - ref[mask]).max() <= 1e-4
    # Padding changes nothing: a padded row equals the same tokens alone.
    for row in (1, 2):
        alone = tokens[row][mask[row]][None]
        solo, _ = model(jnp.asarray(alone), jnp.arange(alone.shape[1])[None], jnp.ones_like(alone, bool))
        np.testing.assert_allclose(np.asarray(ours)[row][mask[row]], np.asarray(solo)[0], atol=1e-5)


def test_round_trip_identical_parameters(saved, tmp_path):
    cfg, model, directory = saved
    loaded, _, _ = load_pretrained(directory)
    save_pretrained(loaded, cfg, tmp_path / "again")
    again, _, cfg2 = load_pretrained(tmp_path / "again")
    assert dataclasses.replace(cfg2, name=cfg.name) == cfg
    for a, b, c in zip(jax.tree.leaves(nnx.state(model)), jax.tree.leaves(nnx.state(loaded)),
                       jax.tree.leaves(nnx.state(again))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        np.testing.assert_array_equal(np.asarray(b), np.asarray(c))


def test_bf16_close_to_fp32(saved):
    cfg, _, directory = saved
    m32, _, _ = load_pretrained(directory)
    # Mixed precision by default: bf16 compute, fp32 parameters.
    mixed, _, cmix = load_pretrained(directory, dtype="bfloat16")
    assert cmix.compute_dtype == jnp.bfloat16 and cmix.weight_dtype == jnp.float32
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(nnx.state(mixed, nnx.Param)))
    # bf16 storage only when asked for explicitly.
    m16, _, c16 = load_pretrained(directory, dtype="bfloat16", param_dtype="bfloat16")
    assert c16.compute_dtype == jnp.bfloat16 and c16.weight_dtype == jnp.bfloat16
    assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(nnx.state(m16, nnx.Param)))
    tokens, mask, pos = _batch(cfg.vocab_size)
    a, _ = m32(jnp.asarray(tokens), jnp.asarray(pos), jnp.asarray(mask))
    for m in (mixed, m16):
        b, _ = m(jnp.asarray(tokens), jnp.asarray(pos), jnp.asarray(mask))
        assert b.dtype == jnp.float32
        assert np.abs(np.asarray(a - b))[mask].max() < 0.1


def test_sequence_logprobs_chunked_equals_full():
    cfg = ModelConfig.tiny()
    model = random_model(cfg)
    tokens, mask, pos = _batch(cfg.vocab_size)
    logits, _ = model(jnp.asarray(tokens), jnp.asarray(pos), jnp.asarray(mask))
    full = token_logprobs(logits[:, :-1], jnp.asarray(tokens[:, 1:]))
    ref = jax.nn.log_softmax(logits[:, :-1], -1)
    np.testing.assert_allclose(full, np.take_along_axis(np.asarray(ref), tokens[:, 1:, None], -1)[..., 0], atol=1e-5)
    chunked = sequence_logprobs(model, jnp.asarray(tokens), jnp.asarray(mask), chunk_size=4)
    np.testing.assert_allclose(np.asarray(chunked), np.asarray(full), atol=1e-5)


def test_table_covers_every_parameter():
    for cfg in CONFIGS.values():
        model = random_model(cfg)
        ours = {".".join(map(str, p)) for p, _ in nnx.to_flat_state(nnx.state(model, nnx.Param))}
        assert ours == {o for _, o, _ in expand_table(cfg)}
    assert len({r.hf for r in PARAM_TABLE}) == len(PARAM_TABLE)


def test_logical_axes_annotated():
    model = random_model(ModelConfig.tiny_qwen2())
    allowed = {"embed", "mlp", "heads", "kv_heads", "head_dim", "vocab", "norm"}
    for _, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        axes = var.get_metadata()["out_sharding"]
        assert len(axes) == var.get_value().ndim and set(axes) <= allowed


def test_clear_errors(saved, tmp_path):
    cfg, model, directory = saved
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_pretrained(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text((directory / "config.json").read_text())
    with pytest.raises(FileNotFoundError, match="safetensors"):
        load_pretrained(empty)
    # Shape mismatch: a config that disagrees with the weights.
    bad = tmp_path / "bad"
    save_pretrained(model, cfg, bad)
    hf = json.loads((bad / "config.json").read_text())
    hf["intermediate_size"] = cfg.intermediate_size * 2
    (bad / "config.json").write_text(json.dumps(hf))
    with pytest.raises(CheckpointError, match="shape mismatch.*mlp"):
        load_pretrained(bad)
    hf["intermediate_size"] = cfg.intermediate_size
    hf["architectures"], hf["model_type"] = ["MistralForCausalLM"], "mistral"
    (bad / "config.json").write_text(json.dumps(hf))
    with pytest.raises(UnknownArchitectureError, match="Mistral"):
        load_pretrained(bad)
    with pytest.raises(FileNotFoundError, match="no local weights"):
        load_pretrained("qwen2p5_1p5b")


def test_from_hf_config_rope_parameters_layouts():
    base = ModelConfig.qwen2p5_0p5b().to_hf_config()
    v5 = {k: v for k, v in base.items() if k not in ("rope_theta", "rope_scaling")}
    assert ModelConfig.from_hf_config(v5).rope_theta == 1_000_000.0
    v4 = {k: v for k, v in base.items() if k != "rope_parameters"}
    assert ModelConfig.from_hf_config(v4).rope_theta == 1_000_000.0
    l3 = ModelConfig.from_hf_config(ModelConfig.llama3p2_1b().to_hf_config())
    assert l3.rope_scaling == ModelConfig.llama3p2_1b().rope_scaling and l3.tie_word_embeddings

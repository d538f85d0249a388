"""Qwen3 (dense) and the large presets: logit parity with HF transformers' torch Qwen3 on small random
configs (no download), HF config import, and the presets' parameter counts."""

from __future__ import annotations

import json
import math

import jax
import numpy as np
import pytest
from flax import nnx

from model_fixtures import hf_causal_lm, hf_logits, saved_random_model
from toolrl.models.checkpoint_io import expand_table, load_pretrained
from toolrl.models.config import ModelConfig, UnknownArchitectureError
from toolrl.models.decoder import Decoder, left_pad_positions

# Left-padded rows of different lengths: padding and positions must agree with HF too.
TOKENS = np.array([[0, 0, 5, 9, 17, 3, 44, 2], [7, 8, 9, 10, 11, 12, 13, 14]], np.int32)
MASK = TOKENS != 0
MASK[1] = True


def _ours(model, tokens=TOKENS, mask=MASK):
    positions = left_pad_positions(mask)
    logits, _ = model(tokens, positions, mask)
    return np.asarray(logits), np.asarray(positions)


@pytest.mark.parametrize("tied", [True, False])
def test_logits_match_hf_torch_qwen3(tmp_path, tied):
    config = ModelConfig.tiny_qwen3(tie_word_embeddings=tied)
    model, directory = saved_random_model(config, tmp_path / "m")
    assert json.loads((directory / "config.json").read_text())["model_type"] == "qwen3"
    hf = hf_causal_lm(directory)
    assert type(hf).__name__ == "Qwen3ForCausalLM"
    ours, positions = _ours(model)
    theirs = hf_logits(hf, TOKENS, MASK, positions)
    real = MASK  # padded positions' logits are meaningless in both
    np.testing.assert_allclose(ours[real], theirs[real], atol=2e-5, rtol=2e-5)


def test_hf_built_qwen3_loads_and_matches(tmp_path):
    """HF writes the checkpoint (its own config.json and tensor names); we load it and agree."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    hf_config = Qwen3Config(vocab_size=96, hidden_size=48, intermediate_size=80, num_hidden_layers=2,
                            num_attention_heads=4, num_key_value_heads=2, head_dim=24, rms_norm_eps=1e-6,
                            rope_theta=10000.0, tie_word_embeddings=False, max_position_embeddings=128)
    hf = Qwen3ForCausalLM(hf_config).eval()
    with torch.no_grad():  # non-trivial norm scales: a swapped q_norm / k_norm would show
        for name, p in hf.named_parameters():
            if "norm" in name:
                p.add_(0.2 * torch.randn_like(p))
    hf.save_pretrained(tmp_path / "hf", safe_serialization=True)
    model, _, config = load_pretrained(tmp_path / "hf")
    assert config.arch == "qwen3" and config.qk_norm and not config.qkv_bias and config.head_dim == 24
    tokens = TOKENS % 96
    ours, positions = _ours(model, tokens)
    theirs = hf_logits(hf, tokens, MASK, positions)
    np.testing.assert_allclose(ours[MASK], theirs[MASK], atol=2e-5, rtol=2e-5)


def test_table_has_qk_norm_rows_only_for_qwen3():
    names = [hf for hf, _, _ in expand_table(ModelConfig.tiny_qwen3())]
    assert "model.layers.1.self_attn.q_norm.weight" in names and "model.layers.0.self_attn.k_norm.weight" in names
    assert not any("bias" in n for n in names)
    assert not any("q_norm" in n for n, _, _ in expand_table(ModelConfig.tiny_qwen2()))


def test_from_hf_config_qwen3_dict_and_refusals():
    hf = {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "vocab_size": 151936, "hidden_size": 4096,
          "intermediate_size": 12288, "num_hidden_layers": 36, "num_attention_heads": 32, "num_key_value_heads": 8,
          "head_dim": 128, "rms_norm_eps": 1e-6, "rope_theta": 1000000, "max_position_embeddings": 40960,
          "tie_word_embeddings": False, "attention_bias": False, "bos_token_id": 151643, "eos_token_id": 151645,
          "pad_token_id": 151643}
    got = ModelConfig.from_hf_config(hf, name="qwen3_8b")
    assert got == ModelConfig.qwen3_8b()
    assert ModelConfig.from_hf_config(ModelConfig.qwen3_0_6b().to_hf_config(), name="qwen3_0_6b") == ModelConfig.qwen3_0_6b()
    with pytest.raises(UnknownArchitectureError, match="attention_bias"):
        ModelConfig.from_hf_config(dict(hf, attention_bias=True))
    with pytest.raises(UnknownArchitectureError, match="sliding"):
        ModelConfig.from_hf_config(dict(hf, use_sliding_window=True))


# Published totals (HF model cards / safetensors metadata): every preset's shapes add up to them.
@pytest.mark.parametrize("preset,params", [
    ("qwen3_0_6b", 596_049_920), ("qwen3_8b", 8_190_735_360), ("qwen2_5_7b", 7_615_616_512),
    ("llama3_1_8b", 8_030_261_248),
])
def test_preset_parameter_counts(preset, params):
    config = ModelConfig.preset(preset)
    abstract = nnx.eval_shape(lambda: Decoder(config, nnx.Rngs(0)))  # no weights allocated
    count = sum(math.prod(x.shape) for x in jax.tree.leaves(nnx.state(abstract, nnx.Param)))
    assert count == params

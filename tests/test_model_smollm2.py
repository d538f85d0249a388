"""The bundled SmolLM2-135M-Instruct: GGUF conversion, HF parity, and a sanity answer."""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pytest

from model_fixtures import hf_causal_lm, hf_logits
from toolrl.models.bundled import ensure_smollm2, unpermute_qk
from toolrl.models.checkpoint_io import load_pretrained
from toolrl.models.config import ModelConfig
from toolrl.models.decoder import left_pad_positions
from toolrl.models.sampler import SamplingParams, generate

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def smollm2():
    directory = ensure_smollm2()
    model, tokenizer, config = load_pretrained("smollm2_135m")
    return directory, model, tokenizer, config


def test_unpermute_qk_inverts_llama_cpp_permutation():
    rng = np.random.RandomState(0)
    heads, head_dim, dim = 3, 8, 5
    w = rng.randn(heads * head_dim, dim)
    # llama.cpp's convert script: reshape(n_head, 2, rows // n_head // 2, dim).swapaxes(1, 2)
    permuted = w.reshape(heads, 2, head_dim // 2, dim).swapaxes(1, 2).reshape(w.shape)
    np.testing.assert_array_equal(unpermute_qk(permuted, heads), w)


def test_converted_directory_is_complete(smollm2):
    directory, _, tokenizer, config = smollm2
    expected = ModelConfig.smollm2_135m()
    assert config.replace(name=expected.name) == expected
    tok_cfg = json.loads((directory / "tokenizer_config.json").read_text())
    assert "<|im_start|>" in tok_cfg["chat_template"]
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.convert_tokens_to_ids("<|im_end|>") == 2
    text = "Hello world 2024, <|im_start|>café"
    assert tokenizer.decode(tokenizer.encode(text)) == text
    assert ensure_smollm2() == directory  # cached, not reconverted


def test_logits_match_hf_torch(smollm2):
    directory, model, tokenizer, _ = smollm2
    prompts = [tokenizer.encode("The capital of France is"), tokenizer.encode("def add(a, b):\n    return a + b")]
    width = max(map(len, prompts))
    tokens = np.zeros((2, width), np.int32)
    mask = np.zeros((2, width), bool)
    for i, p in enumerate(prompts):
        tokens[i, width - len(p):] = p
        mask[i, width - len(p):] = True
    pos = np.asarray(left_pad_positions(jnp.asarray(mask)))
    ours, _ = model(jnp.asarray(tokens), jnp.asarray(pos), jnp.asarray(mask))
    ref = hf_logits(hf_causal_lm(directory), tokens, mask, pos)
    assert np.abs(np.asarray(ours)[mask] - ref[mask]).max() <= 1e-3


def test_answers_paris_greedy(smollm2):
    _, model, tokenizer, config = smollm2
    prompt = tokenizer.apply_chat_template(QUESTION, add_generation_prompt=True, tokenize=False)
    ids = tokenizer.encode(prompt)
    out = generate(model, [ids], SamplingParams(max_new_tokens=16, greedy=True,
                                                stop_token_ids=config.eos_token_ids), tokenizer=tokenizer)
    assert "Paris" in out.texts[0], out.texts


@pytest.mark.slow
def test_greedy_batch_matches_hf_generate(smollm2):
    """The optimised decode path (cache layout, 2-D projections, last-position head, shared group
    prefill) keeps greedy decoding token-exact against HF transformers on the real model."""
    import torch

    directory, model, tokenizer, _ = smollm2
    questions = ["What is the capital of France?", "Write a haiku about the sea.", "What is 17 times 23?"]
    ids = [tokenizer.encode(tokenizer.apply_chat_template([{"role": "user", "content": q}],
                                                          add_generation_prompt=True, tokenize=False))
           for q in questions]
    ids = ids + [ids[0]]  # rows 3 and 0 are the same prompt
    n = 24
    out = generate(model, ids, SamplingParams(max_new_tokens=n, greedy=True), bucket=16, pad_id=2)
    width = max(map(len, ids))
    hf_ids = torch.tensor([[2] * (width - len(p)) + p for p in ids])
    hf_mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in ids])
    with torch.no_grad():
        ref = hf_causal_lm(directory).generate(input_ids=hf_ids, attention_mask=hf_mask, max_new_tokens=n,
                                               do_sample=False, eos_token_id=None, pad_token_id=2)
    np.testing.assert_array_equal(out.completion_tokens, ref[:, width:].numpy())
    shared = generate(model, [ids[0]] * 2 + [ids[1]] * 2, SamplingParams(max_new_tokens=n, greedy=True),
                      bucket=16, pad_id=2, group_size=2)
    np.testing.assert_array_equal(shared.completion_tokens[0], out.completion_tokens[0])
    np.testing.assert_array_equal(shared.completion_tokens[2], out.completion_tokens[1])

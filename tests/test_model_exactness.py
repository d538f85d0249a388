"""Training-side model features, each checked EXACT against the plain path on the tiny models:
mixed precision (fp32 params, bf16 compute), tempered log-probs, loss-position-only log-probs,
attention implementations, per-layer remat, and checkpoint errors that name the file."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from model_fixtures import random_model, saved_random_model
from toolrl.models.checkpoint_io import CheckpointError, load_pretrained
from toolrl.models.config import ModelConfig
from toolrl.models.decoder import left_pad_positions, selected_logprobs, sequence_logprobs
from toolrl.models.sampler import SamplingParams, generate


def _batch(vocab: int, b: int = 3, t: int = 12, seed: int = 0):
    """Rows: full, left-padded, right-padded (then repeats)."""
    rng = np.random.RandomState(seed)
    tokens = rng.randint(3, vocab, (b, t)).astype(np.int32)
    mask = np.ones((b, t), bool)
    mask[1::3, :4] = False
    mask[2::3, t - 3:] = False
    tokens[~mask] = 0
    return jnp.asarray(tokens), jnp.asarray(mask)


def _loss(model, tokens, mask):
    lp = sequence_logprobs(model, tokens, mask)
    m = mask[:, 1:].astype(jnp.float32)
    return -(lp * m).sum() / m.sum()


def _grads(model, fn):
    """d fn(model) / d params as a flat list of arrays (nnx split/merge, plain jax.grad)."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    g = jax.grad(lambda p: fn(nnx.merge(graphdef, p, rest)))(params)
    return jax.tree.leaves(g)


def _dot_input_dtypes(jaxpr) -> list[tuple[jnp.dtype, jnp.dtype]]:
    """Input dtypes of every dot_general in a (closed) jaxpr, sub-jaxprs included."""
    out = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            out.append(tuple(v.aval.dtype for v in eqn.invars))
        for sub in jax.core.jaxprs_in_params(eqn.params):
            out.extend(_dot_input_dtypes(sub))
    return out


# --------------------------------------------------------------------------- A. mixed precision


@pytest.mark.parametrize("preset", ["tiny", "tiny_qwen2"])
def test_mixed_precision_fp32_params_bf16_compute(preset):
    cfg = ModelConfig.preset(preset).with_dtype("bfloat16")
    assert cfg.param_dtype == "float32" and cfg.dtype == "bfloat16"
    assert ModelConfig.tiny().with_dtype("bfloat16", "bfloat16").param_dtype == "bfloat16"
    model = random_model(cfg)
    tokens, mask = _batch(cfg.vocab_size)
    # Every matmul (embedding-tied head, q/k/v/o, MLP, attention) runs on bf16 operands.
    jaxpr = jax.make_jaxpr(lambda: _loss(model, tokens, mask))()
    dots = _dot_input_dtypes(jaxpr.jaxpr)
    assert len(dots) >= cfg.num_layers * 7 + 1
    assert all(a == jnp.bfloat16 and b == jnp.bfloat16 for a, b in dots), dots
    # Gradients w.r.t. the fp32 parameters are fp32.
    grads = _grads(model, lambda m: _loss(m, tokens, mask))
    assert all(g.dtype == jnp.float32 for g in grads)


def _changed_fraction_after_adamw(cfg: ModelConfig) -> float:
    model = random_model(cfg)
    tokens, mask = _batch(cfg.vocab_size, b=6)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    opt = optax.adamw(2e-6)
    state = opt.init(params)
    grads = jax.grad(lambda p: _loss(nnx.merge(graphdef, p, rest), tokens, mask))(params)
    updates, _ = opt.update(grads, state, params)
    new = optax.apply_updates(params, updates)
    changed = sum(int((np.asarray(a) != np.asarray(b)).sum()) for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(new)))
    total = sum(int(np.size(a)) for a in jax.tree.leaves(params))
    assert all(x.dtype == cfg.weight_dtype for x in jax.tree.leaves(new))
    return changed / total


def test_adamw_step_changes_weights_with_fp32_params():
    mixed = _changed_fraction_after_adamw(ModelConfig.tiny().with_dtype("bfloat16"))
    assert mixed > 0.9, mixed
    # The failure mode this fixes: bf16 storage rounds a 2e-6 update away almost everywhere.
    bf16 = _changed_fraction_after_adamw(ModelConfig.tiny().with_dtype("bfloat16", "bfloat16"))
    assert bf16 < 0.1, bf16


# --------------------------------------------------------------------------- B. tempered log-probs


@pytest.mark.parametrize("top_k", [0, 20])
def test_sampler_logprobs_equal_sequence_logprobs_at_temperature(top_k):
    cfg = ModelConfig.tiny()
    model = random_model(cfg, seed=4)
    params = SamplingParams(max_new_tokens=10, temperature=0.7, top_k=top_k)
    assert params.logprob_temperature == 0.7
    out = generate(model, [[5, 17, 33, 9, 81], [12, 99], [7, 40, 3]], params, key=11, bucket=8)
    tokens, mask = jnp.asarray(out.tokens), jnp.asarray(out.attention_mask)
    ref = sequence_logprobs(model, tokens, mask, temperature=0.7)[:, out.prompt_length - 1:]
    cm = out.completion_mask
    assert cm.sum() > 0
    np.testing.assert_allclose(out.logprobs[cm], np.asarray(ref)[cm], atol=1e-5)
    assert (out.logprobs[~cm] == 0).all()
    # ... and differ from the temperature-1 log-probs.
    t1 = sequence_logprobs(model, tokens, mask)[:, out.prompt_length - 1:]
    assert np.abs(np.asarray(t1)[cm] - out.logprobs[cm]).max() > 1e-2
    # Greedy log-probs are at temperature 1.
    assert SamplingParams(greedy=True, temperature=0.0).logprob_temperature == 1.0


def test_sequence_logprobs_temperature_chunked():
    model = random_model(ModelConfig.tiny_qwen2(), seed=2)
    tokens, mask = _batch(128, t=20)
    logits, _ = model(tokens, left_pad_positions(mask), mask)
    ref = jax.nn.log_softmax(logits[:, :-1] / 0.6, -1)
    ref = np.take_along_axis(np.asarray(ref), np.asarray(tokens)[:, 1:, None], -1)[..., 0]
    for chunk in (None, 4, 7):
        got = sequence_logprobs(model, tokens, mask, chunk_size=chunk, temperature=0.6)
        np.testing.assert_allclose(np.asarray(got), ref, atol=1e-5)


# --------------------------------------------------------------------------- C. loss positions only


@pytest.mark.parametrize("preset", ["tiny", "tiny_qwen2"])
def test_selected_logprobs_equal_gathered_sequence_logprobs(preset):
    cfg = ModelConfig.preset(preset)
    model = random_model(cfg, seed=1)
    tokens, mask = _batch(cfg.vocab_size, b=4, t=16)
    rng = np.random.RandomState(0)
    gather = jnp.asarray(rng.randint(0, 15, (4, 6)), jnp.int32)
    weights = jnp.asarray(rng.randn(4, 6), jnp.float32)
    for temp, chunk in ((1.0, 128), (0.7, 4)):
        full = sequence_logprobs(model, tokens, mask, temperature=temp)
        want = jnp.take_along_axis(full, gather, axis=1)
        got = selected_logprobs(model, tokens, mask, gather, temperature=temp, chunk_size=chunk)
        assert got.shape == (4, 6) and got.dtype == jnp.float32
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5)
    g_sel = _grads(model, lambda m: (selected_logprobs(m, tokens, mask, gather, 0.7) * weights).sum())
    g_full = _grads(model, lambda m: (jnp.take_along_axis(sequence_logprobs(m, tokens, mask, temperature=0.7),
                                                          gather, axis=1) * weights).sum())
    for a, b in zip(g_sel, g_full):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------- E. attention / remat


@pytest.mark.parametrize("change", [{"attention_impl": "dot_product_attention"}, {"remat": True},
                                    {"attention_impl": "dot_product_attention", "remat": True}])
@pytest.mark.parametrize("preset", ["tiny", "tiny_qwen2"])
def test_attention_impl_and_remat_equal_plain(preset, change):
    base = ModelConfig.preset(preset)
    plain = random_model(base, seed=6)
    other = random_model(base.replace(**change), seed=6)
    tokens, mask = _batch(base.vocab_size, b=3, t=14)
    pos = left_pad_positions(mask)
    a, _ = plain(tokens, pos, mask)
    b, _ = other(tokens, pos, mask)
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=1e-5)
    for ga, gb in zip(_grads(plain, lambda m: _loss(m, tokens, mask)), _grads(other, lambda m: _loss(m, tokens, mask))):
        np.testing.assert_allclose(np.asarray(gb), np.asarray(ga), atol=1e-5, rtol=1e-5)


def test_remat_shrinks_the_compiled_backward_pass():
    """model.remat keeps only each block's input for the backward pass: XLA's own plan for the
    gradient's temporary buffers shrinks (an unrolled loop of checkpointed blocks did not on CPU)."""
    base = ModelConfig.tiny(num_layers=8, hidden_size=128, intermediate_size=512)
    tokens, mask = _batch(base.vocab_size, b=2, t=256)
    temp = {}
    for remat in (False, True):
        model = random_model(base.replace(remat=remat), seed=6)
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        grad = jax.jit(jax.grad(lambda p: _loss(nnx.merge(graphdef, p, rest), tokens, mask)))
        temp[remat] = grad.lower(params).compile().memory_analysis().temp_size_in_bytes
    assert temp[True] < 0.5 * temp[False], temp


def test_dot_product_attention_in_sampler_and_bf16():
    base = ModelConfig.tiny()
    prompts = [[5, 17, 33, 9, 81], [12, 99]]
    params = SamplingParams(max_new_tokens=8, greedy=True)
    plain = generate(random_model(base, seed=6), prompts, params, bucket=8)
    dpa = generate(random_model(base.replace(attention_impl="dot_product_attention"), seed=6), prompts, params, bucket=8)
    np.testing.assert_array_equal(plain.tokens, dpa.tokens)
    np.testing.assert_allclose(plain.logprobs, dpa.logprobs, atol=1e-5)
    # bf16 compute: both implementations stay close to fp32.
    tokens, mask = _batch(base.vocab_size)
    pos = left_pad_positions(mask)
    ref, _ = random_model(base, seed=6)(tokens, pos, mask)
    for impl in ("xla", "dot_product_attention"):
        m = random_model(base.with_dtype("bfloat16").replace(attention_impl=impl), seed=6)
        got, _ = m(tokens, pos, mask)
        assert np.abs(np.asarray(got - ref))[np.asarray(mask)].max() < 0.1


def test_xla_attention_scores_not_f32_for_bf16():
    """The [.., T, S] score array comes out of the dot in bf16 (softmax statistics stay f32)."""
    from toolrl.models.decoder import grouped_attention

    q = jnp.ones((1, 5, 4, 16), jnp.bfloat16)
    k = jnp.ones((1, 5, 2, 16), jnp.bfloat16)
    jaxpr = jax.make_jaxpr(lambda q, k: grouped_attention(q, k, k, jnp.ones((1, 5, 5), bool)))(q, k)
    dots = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "dot_general"]
    assert len(dots) == 2 and all(e.outvars[0].aval.dtype == jnp.bfloat16 for e in dots)


# --------------------------------------------------------------------------- G. checkpoint errors


@pytest.fixture()
def model_dir(tmp_path):
    _, directory = saved_random_model(ModelConfig.tiny(), tmp_path / "m", seed=0)
    return directory


@pytest.mark.parametrize("corruption", ["garbage", "truncated", "empty"])
def test_corrupt_safetensors_error_names_file(model_dir, corruption):
    path = model_dir / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes({"garbage": b"\x00not a safetensors file" * 10, "truncated": data[: len(data) // 2],
                      "empty": b""}[corruption])
    with pytest.raises(CheckpointError, match="model.safetensors") as info:
        load_pretrained(model_dir)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"architectures": ["LlamaForCausalLM"]}', "\udcff"])
def test_corrupt_config_error_names_file(model_dir, text):
    path = model_dir / "config.json"
    if text == "\udcff":
        path.write_bytes(b"\xff\xfe\x00garbage")
    else:
        path.write_text(text)
    with pytest.raises(CheckpointError, match="config.json") as info:
        load_pretrained(model_dir)
    assert str(path) in str(info.value)
    # A valid config still loads.
    path.write_text(json.dumps(ModelConfig.tiny().to_hf_config()))
    load_pretrained(model_dir)

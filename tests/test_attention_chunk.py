"""`model.attention_query_chunk`: "xla" attention over query chunks gives the whole path's bits.

Each query row's softmax is its own, so chunking the queries changes only which rows share a dot. On
XLA:CPU (YNNPACK) a dot's rounding depends on its row count below about 50 rows (G x C, the grouped
heads times the chunk): a dot of few rows rounds differently from a tall one in the last bit (float32:
2-4e-7 on O(1) scores), while dots above that agree bit for bit with any taller one. `attend` gives
every chunk the same C rows (the last one overlaps its predecessor when T is not a multiple); the
chunks here are at least 26 rows with G = 2 (52-row dots), and `attend` on the same inputs is then
bitwise equal in float32 and bfloat16 (`assert_array_equal`). A tiny chunk (G x C < 50) is within 1e-6.

Through the model the logits are NOT bitwise equal, and the reason is outside `attend`: the program
around the loop is fused differently. Whole, XLA:CPU fuses RoPE (x cos + rot(x) sin) of q and k into
the transposes that feed the score dot; chunked, into transposes of another layout (plus a copy into
the loop), and the same elementwise math emitted in those other fusions rounds differently in the
last bit of q and k. (A jitted rope-then-attend differs whole vs chunked by 8e-7; returning the
rotated q as well, which makes XLA materialise it alike in both programs, makes them agree bitwise.)
Measured: logits within 2e-6 (tiny; 4e-6 on tiny_qwen3) of the whole path's, greedy tokens equal,
sampler log-probs within 1e-6. They are checked at 1e-5 like `attention_impl` and `remat`, and so
are gradients (the keys' and values' cotangents are summed chunk by chunk, in another order).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from model_fixtures import random_model
from toolrl.models.config import ModelConfig
from toolrl.models.decoder import attend, left_pad_positions
from toolrl.models.sampler import SamplingParams, generate


def _inputs(b=2, t=96, s=96, h=4, k=2, dh=16, dtype=jnp.float32, seed=0, causal=True):
    rng = np.random.default_rng(seed)
    q = jnp.asarray(rng.normal(size=(b, t, h, dh)), dtype)
    keys = jnp.asarray(rng.normal(size=(b, k, s, dh)), dtype)
    values = jnp.asarray(rng.normal(size=(b, k, s, dh)), dtype)
    visible = rng.random((b, t, s)) < 0.8
    if causal:  # queries are the last t of s slots
        visible &= np.arange(s)[None, None, :] <= (s - t + np.arange(t))[None, :, None]
    visible[0, :5] = False  # padded query rows: no visible key (uniform softmax)
    visible[1, :, :7] = False  # left padding of the keys
    return q, keys, values, jnp.asarray(visible)


def _both(chunk, **shape):
    q, keys, values, mask = _inputs(**shape)
    whole = jax.jit(attend)(q, keys, values, mask)
    chunked = jax.jit(lambda *a: attend(*a, query_chunk=chunk))(q, keys, values, mask)
    assert chunked.shape == whole.shape and chunked.dtype == whole.dtype
    return np.asarray(chunked.astype(jnp.float32)), np.asarray(whole.astype(jnp.float32))


@pytest.mark.parametrize("t,chunk", [(96, 32), (100, 32), (90, 26), (96, 96), (64, 500)],
                         ids=["multiple", "remainder", "remainder_small_tail", "chunk_eq_t", "chunk_gt_t"])
def test_chunked_equals_whole_bitwise(t, chunk):
    chunked, whole = _both(chunk, t=t, s=t + 8)
    np.testing.assert_array_equal(chunked, whole)


def test_padded_rows_get_the_uniform_softmax_in_chunks():
    """Rows with no visible key (row 0's first 5) average the values, chunked as whole."""
    q, keys, values, mask = _inputs(t=96, s=96)
    out = attend(q, keys, values, mask, query_chunk=32)
    want = jnp.repeat(values[0].mean(axis=1), 2, axis=0)  # [H, Dh]: head h reads kv head h // G
    np.testing.assert_allclose(np.asarray(out[0, :5]), np.broadcast_to(np.asarray(want), (5, 4, 16)), atol=1e-6)


@pytest.mark.parametrize("h,k", [(9, 3), (8, 1)], ids=["smollm2_groups_3", "mqa_groups_8"])
def test_gqa_groups_bitwise(h, k):
    chunked, whole = _both(24, t=80, s=80, h=h, k=k, dh=64)
    np.testing.assert_array_equal(chunked, whole)


def test_bfloat16_bitwise():
    chunked, whole = _both(32, t=100, s=110, dtype=jnp.bfloat16)
    np.testing.assert_array_equal(chunked, whole)


def test_small_chunks_within_rounding():
    """G x C = 8 rows per dot: XLA:CPU rounds a dot that short differently (see the module docstring)."""
    chunked, whole = _both(4, t=30, s=30)
    np.testing.assert_allclose(chunked, whole, rtol=0, atol=1e-6)


def test_chunk_bounds_the_compiled_temporaries():
    """XLA's plan for one 512-token prefill at batch 2 keeps one chunk's scores, not T rows'."""
    q, keys, values, mask = (jax.ShapeDtypeStruct(x.shape, x.dtype) for x in _inputs(t=512, s=512, h=9, k=3, dh=64))
    temp = {c: jax.jit(lambda *a, c=c: attend(*a, query_chunk=c)).lower(q, keys, values, mask).compile()
            .memory_analysis().temp_size_in_bytes for c in (0, 64)}
    assert temp[64] < 0.25 * temp[0], temp


def test_gradients_within_rounding():
    q, keys, values, mask = _inputs(t=64, s=64)

    def loss(chunk):
        return jax.jit(jax.grad(lambda q, k, v: jnp.sum(jnp.sin(attend(q, k, v, mask, query_chunk=chunk))),
                                argnums=(0, 1, 2)))(q, keys, values)

    for got, want in zip(loss(32), loss(0)):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------- through the model


def _batch(vocab, b=3, t=90, seed=0):
    rng = np.random.RandomState(seed)
    tokens = rng.randint(3, vocab, (b, t)).astype(np.int32)
    mask = np.ones((b, t), bool)
    mask[1, :11] = False  # left-padded
    mask[2, t - 9:] = False  # right-padded
    tokens[~mask] = 0
    return jnp.asarray(tokens), jnp.asarray(mask)


def test_model_prefill_logits_within_rounding():
    base = ModelConfig.tiny()
    tokens, mask = _batch(base.vocab_size)
    pos = left_pad_positions(mask)
    forward = nnx.jit(lambda model, *a: model(*a)[0])  # jitted, as every caller runs it
    whole = forward(random_model(base, seed=3), tokens, pos, mask)
    chunked = forward(random_model(base.replace(attention_query_chunk=32), seed=3), tokens, pos, mask)
    same = forward(random_model(base.replace(attention_query_chunk=90), seed=3), tokens, pos, mask)
    np.testing.assert_array_equal(np.asarray(same), np.asarray(whole))  # C >= T: the plain program
    np.testing.assert_allclose(np.asarray(chunked), np.asarray(whole), rtol=0, atol=1e-5)  # see the docstring
    assert np.array_equal(np.asarray(chunked).argmax(-1), np.asarray(whole).argmax(-1))


def test_sampler_greedy_tokens_identical():
    """Prefill of 72 slots in 3 chunks of 32 (the last overlapping), then 1-token decode steps (no-op)."""
    base = ModelConfig.tiny()
    rng = np.random.RandomState(1)
    prompts = [list(rng.randint(3, 128, n)) for n in (70, 41, 66)]
    params = SamplingParams(max_new_tokens=6, greedy=True)
    whole = generate(random_model(base, seed=4), prompts, params, bucket=8)
    chunked = generate(random_model(base.replace(attention_query_chunk=32), seed=4), prompts, params, bucket=8)
    assert whole.tokens.shape[1] == 72 + 6
    np.testing.assert_array_equal(chunked.tokens, whole.tokens)
    np.testing.assert_allclose(chunked.logprobs, whole.logprobs, rtol=0, atol=2e-6)  # measured 7e-7


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize("bad", [-1, 2.5, True])
def test_model_config_rejects_a_bad_chunk(bad):
    with pytest.raises(ValueError, match="attention_query_chunk.*int >= 0"):
        ModelConfig.tiny(attention_query_chunk=bad)


def test_model_config_rejects_a_chunk_with_dot_product_attention():
    with pytest.raises(ValueError, match="attention_query_chunk=64 applies to attention_impl='xla' only"):
        ModelConfig.tiny(attention_impl="dot_product_attention", attention_query_chunk=64)
    with pytest.raises(ValueError, match="impl='xla' only"):
        q, keys, values, mask = _inputs(t=8, s=8)
        attend(q, keys, values, mask, "dot_product_attention", query_chunk=4)


def test_run_config_validation():
    from toolrl.rl.config import ConfigError, base_config, validate

    config = base_config()
    assert config.model.attention_query_chunk == 0
    validate(config)
    config.model.attention_query_chunk = -256
    with pytest.raises(ConfigError, match=r"model.attention_query_chunk=-256 must be an int >= 0"):
        validate(config)
    config.model.attention_query_chunk = 256
    config.model.attention_impl = "dot_product_attention"
    with pytest.raises(ConfigError, match="applies to model.attention_impl='xla' only"):
        validate(config)


def test_the_field_reaches_the_model_and_is_an_execution_option():
    from toolrl.plan_lowering import model_config_of
    from toolrl.policy.runtime import Policy
    from toolrl.rl.config import base_config
    from toolrl.rl.workdir import EXECUTION_FIELDS, fingerprint_fields

    m = ml_collections.ConfigDict({"preset": "tiny", "path": "", "dtype": "float32", "attention_impl": "xla",
                                   "attention_query_chunk": 48, "remat": False})
    policy = Policy.from_model_config(m)
    configs = [mod.config for _, mod in policy.model.iter_modules() if getattr(mod, "config", None) is not None]
    assert policy.model_config.attention_query_chunk == 48 and configs
    assert all(c.attention_query_chunk == 48 for c in configs)
    config = base_config()
    config.model.preset, config.model.attention_query_chunk = "tiny", 48
    assert model_config_of(config).attention_query_chunk == 48
    assert "model.attention_query_chunk" in EXECUTION_FIELDS
    assert "model.attention_query_chunk" not in fingerprint_fields(config)


def test_an_evaluation_command_sets_the_chunk_of_a_saved_run(tmp_path, monkeypatch):
    """`--config.mode=eval` of a run builds the run's own model; the command's chunk (> 0) replaces the
    run's (an execution option of the evaluating process), 0 keeps the run's."""
    from toolrl import main
    from toolrl.policy.runtime import Policy
    from toolrl.rl.config import base_config

    (tmp_path / "config.json").write_text("{}")
    seen = []

    def from_run(workdir, mesh=None, step=None, attention_query_chunk=None):
        seen.append(attention_query_chunk)
        raise StopIteration

    monkeypatch.setattr(Policy, "from_run", staticmethod(from_run))
    config = base_config()
    config.mode, config.eval.checkpoint, config.compile.cache_dir = "eval", str(tmp_path), "off"
    for chunk in (512, 0):
        config.model.attention_query_chunk = chunk
        with pytest.raises(StopIteration):
            main.evaluate(config)
    assert seen == [512, None]
    m = ml_collections.ConfigDict({"preset": "tiny", "path": "", "dtype": "float32", "attention_query_chunk": 0})
    assert Policy.from_model_config(m, attention_query_chunk=64).model_config.attention_query_chunk == 64

"""Where does a decode step of SmolLM2-135M at batch 16 spend its time, against this machine's limits?

Measures (jax, CPU, fp32): the matmul peak (GFLOP/s of a large square matmul and of the decode
step's own matmul shapes), the memory bandwidth (GB/s of a large reduction), then one KV-cache
decode step of the model and its pieces (the 30-block trunk, the LM head, the sampling math), and
prints the roofline: the step's weight bytes / bandwidth and its FLOPs / peak.

Usage: python benchmarks/decode_profile.py [--batch 16] [--cache-len 192] [--repeats 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402


def timeit(fn, *args, repeats: int = 20) -> float:
    """Median seconds of ``fn(*args)`` (blocked until ready) after one warmup call."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def machine_limits(repeats: int) -> dict[str, float]:
    """fp32 matmul GFLOP/s (square 2048 and decode-shaped) and memory GB/s (reduction of 512 MB)."""
    out = {}
    n = 2048
    a = jnp.asarray(np.random.RandomState(0).randn(n, n), jnp.float32)
    mm = jax.jit(lambda x, y: x @ y)
    out["matmul_2048_gflops"] = 2 * n ** 3 / timeit(mm, a, a, repeats=max(3, repeats // 4)) / 1e9
    x = jnp.asarray(np.random.RandomState(1).randn(16, 576), jnp.float32)
    w = jnp.asarray(np.random.RandomState(2).randn(576, 49152), jnp.float32)
    out["matmul_16x576x49152_gflops"] = 2 * 16 * 576 * 49152 / timeit(mm, x, w, repeats=repeats) / 1e9
    w2 = jnp.asarray(np.random.RandomState(3).randn(576, 1536), jnp.float32)
    out["matmul_16x576x1536_gflops"] = 2 * 16 * 576 * 1536 / timeit(mm, x, w2, repeats=repeats) / 1e9
    big = jnp.ones((128 * 1024 * 1024,), jnp.float32)  # 512 MB
    out["read_bandwidth_gbs"] = big.nbytes / timeit(jax.jit(jnp.sum), big, repeats=max(3, repeats // 4)) / 1e9
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--cache-len", type=int, default=192)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    from flax import nnx

    from toolrl.models.checkpoint_io import load_pretrained
    from toolrl.models.decoder import KVCache, token_logprobs
    from toolrl.models.sampler import SamplingParams, sample_from_logits

    limits = machine_limits(args.repeats)
    model, _, config = load_pretrained("smollm2_135m")
    graphdef, state = nnx.split(model)
    b, s = args.batch, args.cache_len
    n_params = sum(int(np.size(x)) for x in jax.tree.leaves(state))
    head_params = config.vocab_size * config.hidden_size
    # Weight bytes touched per decode step: every matrix once (the embedding as LM head; the
    # embedding gather reads only B rows).
    step_bytes = 4 * n_params
    step_flops = 2 * b * n_params
    cache_bytes = 4 * 2 * config.num_layers * b * s * config.num_kv_heads * config.head_dim

    cache = KVCache.init(config, b, s)
    cache = cache.replace(mask=jnp.ones((b, s), bool), index=jnp.asarray(s // 2, jnp.int32))
    tok = jnp.full((b, 1), 5, jnp.int32)
    pos = jnp.full((b, 1), s // 2, jnp.int32)
    live = jnp.ones((b, 1), bool)

    @jax.jit
    def full_step(state, cache, tok):
        m = nnx.merge(graphdef, state)
        h, cache = m.hidden_states(tok, pos, live, cache)
        return m.logits_from_hidden(h[:, 0]), cache

    @jax.jit
    def trunk(state, cache, tok):
        m = nnx.merge(graphdef, state)
        h, cache = m.hidden_states(tok, pos, live, cache)
        return h, cache

    @jax.jit
    def head(state, h):
        return nnx.merge(graphdef, state).logits_from_hidden(h[:, 0])

    params = SamplingParams(temperature=0.7)

    @jax.jit
    def sample(logits, key):
        t = sample_from_logits(logits, key, params)
        return t, token_logprobs(logits, t, 0.7)

    h, _ = trunk(state, cache, tok)
    logits, _ = full_step(state, cache, tok)
    t_step = timeit(full_step, state, cache, tok, repeats=args.repeats)
    t_trunk = timeit(trunk, state, cache, tok, repeats=args.repeats)
    t_head = timeit(head, state, h, repeats=args.repeats)
    t_sample = timeit(sample, logits, jax.random.key(0), repeats=args.repeats)

    peak = limits["matmul_2048_gflops"]
    bw = limits["read_bandwidth_gbs"]
    bound = max(step_bytes / (bw * 1e9), step_flops / (peak * 1e9))
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")
    print("| machine limit | value |\n|---|---|")
    for k, v in limits.items():
        print(f"| {k} | {v:.1f} |")
    print(f"\nSmolLM2-135M fp32, batch {b}, cache {s} slots: {n_params / 1e6:.1f}M params "
          f"({head_params / 1e6:.1f}M in the tied embedding / LM head); per step {step_bytes / 1e6:.0f} MB weights, "
          f"{cache_bytes / 1e6:.1f} MB KV cache, {step_flops / 1e9:.2f} GFLOP")
    print(f"roofline: weights / bandwidth = {1e3 * step_bytes / (bw * 1e9):.1f} ms, "
          f"FLOPs / matmul peak = {1e3 * step_flops / (peak * 1e9):.1f} ms -> bound {1e3 * bound:.1f} ms")
    print("| piece | ms | share of step |\n|---|---|---|")
    for name, t in (("decode step (trunk + head)", t_step), ("trunk: 30 blocks + cache update", t_trunk),
                    ("LM head [B,576]x[576,49152]", t_head), ("sample + log-prob", t_sample)):
        print(f"| {name} | {1e3 * t:.2f} | {t / t_step:.0%} |")
    print(f"\nstep at {bound / t_step:.0%} of the roofline bound; "
          f"{step_flops / t_step / 1e9:.1f} GFLOP/s achieved vs {peak:.1f} peak")


if __name__ == "__main__":
    main()

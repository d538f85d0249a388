"""Throughput of the reward: reference vs encode vs kernel, on real trace samples with corruptions.

    .venv/bin/python benchmarks/rewards.py [--family episode] [--sizes 256,4096,16384] [--repeats 3]

Inputs: the golden rollouts of both bundled trace files (201 samples) and random corruptions of
them (`toolrl.rewards.corruptions`), drawn with a fixed seed; the same list feeds every column.
Times are medians over `--repeats` runs after one warm-up run (which compiles the kernel and fills
the hash caches, as in training where the same samples recur).  Columns are trajectories per second.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import jax
import numpy as np

from toolrl.data.paths import default_data_dir
from toolrl.data.traces import load_trace_file
from toolrl.rewards import reference
from toolrl.rewards.corruptions import CORRUPTIONS, golden_episode
from toolrl.rewards.encode import EncodeConfig, encode_episodes
from toolrl.rewards.kernels import make_kernel
from toolrl.rewards.types import EpisodeInput


def build_inputs(n: int, seed: int = 0) -> list[EpisodeInput]:
    """n episodes: each a real sample's golden rollout, corrupted with probability 3/4."""
    rng = random.Random(seed)
    goldens = [
        golden_episode(s.steps)
        for name in ("eval_100.json", "bfcl_training_3_per_workflow.json")
        for s in load_trace_file(default_data_dir() / name)
    ]
    names = list(CORRUPTIONS)
    out = []
    while len(out) < n:
        ep = rng.choice(goldens)
        if rng.random() < 0.75:
            bad = CORRUPTIONS[rng.choice(names)](ep, rng.randrange(len(ep.calls)))
            ep = bad if bad is not None else ep
        out.append(ep)
    return out


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up: compile, fill caches
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="episode", choices=["paper", "episode"])
    parser.add_argument("--mode", default="graduated")
    parser.add_argument("--sizes", default="256,4096,16384")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    config = EncodeConfig()
    ref_fn = reference.REFERENCES[args.family]
    kernel = make_kernel(args.family, args.mode)
    print(f"family={args.family} mode={args.mode} config={config} backend={jax.default_backend()} devices={jax.device_count()}")
    header = f"{'batch':>7} | {'reference':>11} | {'encode':>11} | {'kernel':>11} | {'enc+kernel':>11} | {'kernel/ref':>10} | {'(enc+k)/ref':>11}"
    print(header)
    print("-" * len(header))
    for size in (int(s) for s in args.sizes.split(",")):
        episodes = build_inputs(size)
        encoded = encode_episodes(episodes, config)
        assert not encoded["overflow"].any()
        on_device = jax.device_put(encoded)

        t_ref = median_time(lambda: [ref_fn(e, args.mode).reward for e in episodes], args.repeats)
        t_enc = median_time(lambda: encode_episodes(episodes, config), args.repeats)
        t_ker = median_time(lambda: jax.block_until_ready(kernel(on_device)), args.repeats)
        t_all = median_time(lambda: jax.block_until_ready(kernel(encode_episodes(episodes, config))), args.repeats)

        # Same numbers from both paths (a cheap guard that the benchmark measures the real thing).
        want = np.array([ref_fn(e, args.mode).reward for e in episodes[:512]])
        np.testing.assert_allclose(np.asarray(kernel(on_device)["reward"])[:512], want, atol=1e-6)

        tps = lambda t: f"{size / t:>11,.0f}"
        print(f"{size:>7} | {tps(t_ref)} | {tps(t_enc)} | {tps(t_ker)} | {tps(t_all)} | {t_ref / t_ker:>9.0f}x | {t_ref / t_all:>10.1f}x")


if __name__ == "__main__":
    main()

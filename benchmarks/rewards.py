"""Throughput of the reward: reference vs encode vs kernel, on real trace samples with corruptions.

    .venv/bin/python benchmarks/rewards.py [--family episode] [--sizes 256,4096,16384] [--repeats 3]
        [--paper-compat ours|official] [--text-batch 4096]

Inputs: the golden rollouts of both bundled trace files (201 samples) and random corruptions of
them (`toolrl.rewards.corruptions`), drawn with a fixed seed; the same list feeds every column.
Times are medians over `--repeats` runs after one warm-up run (which compiles the kernel and fills
the hash caches, as in training where the same samples recur).  Columns are trajectories per second.

Last row, text -> reward end to end: the golden rollouts of the 101 real training samples
(bfcl_training_3_per_workflow.json) and their corruptions, rendered as assistant text plus the
responses (`corruptions.episode_to_text`), then `episode_from_text` (parse) + `score_episodes`
(encode + kernel) on a batch of `--text-batch` episodes; episodes per second.
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
from toolrl.rewards import episode_from_text, reference, score_episodes
from toolrl.rewards.corruptions import CORRUPTIONS, episode_to_text, golden_episode
from toolrl.rewards.encode import EncodeConfig, encode_episodes
from toolrl.rewards.kernels import make_kernel
from toolrl.rewards.types import EpisodeInput


def build_inputs(n: int, seed: int = 0, files: tuple[str, ...] = ("eval_100.json", "bfcl_training_3_per_workflow.json")) -> list[EpisodeInput]:
    """n episodes: each a real sample's golden rollout, corrupted with probability 3/4."""
    rng = random.Random(seed)
    goldens = [golden_episode(s.steps) for name in files for s in load_trace_file(default_data_dir() / name)]
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
    parser.add_argument("--paper-compat", default="ours", choices=["ours", "official"])
    parser.add_argument("--text-batch", type=int, default=4096)
    args = parser.parse_args()

    config = EncodeConfig()
    compat = args.paper_compat
    ref_fn = lambda e, mode: reference.REFERENCES[args.family](e, mode, paper_compat=compat)  # noqa: E731
    kernel = make_kernel(args.family, args.mode, paper_compat=compat)
    encode = lambda eps: encode_episodes(eps, config, paper=args.family == "paper", episode=args.family != "paper")  # noqa: E731
    print(
        f"family={args.family} mode={args.mode} paper_compat={compat} config={config} "
        f"backend={jax.default_backend()} devices={jax.device_count()}"
    )
    header = f"{'batch':>7} | {'reference':>11} | {'encode':>11} | {'kernel':>11} | {'enc+kernel':>11} | {'kernel/ref':>10} | {'(enc+k)/ref':>11}"
    print(header)
    print("-" * len(header))
    for size in (int(s) for s in args.sizes.split(",")):
        episodes = build_inputs(size)
        encoded = encode(episodes)
        assert not encoded["overflow"].any()
        on_device = jax.device_put(encoded)

        t_ref = median_time(lambda: [ref_fn(e, args.mode).reward for e in episodes], args.repeats)
        t_enc = median_time(lambda: encode(episodes), args.repeats)
        t_ker = median_time(lambda: jax.block_until_ready(kernel(on_device)), args.repeats)
        t_all = median_time(lambda: jax.block_until_ready(kernel(encode(episodes))), args.repeats)

        # Same numbers from both paths (a cheap guard that the benchmark measures the real thing).
        want = np.array([ref_fn(e, args.mode).reward for e in episodes[:512]])
        np.testing.assert_allclose(np.asarray(kernel(on_device)["reward"])[:512], want, atol=1e-6)

        tps = lambda t: f"{size / t:>11,.0f}"
        print(f"{size:>7} | {tps(t_ref)} | {tps(t_enc)} | {tps(t_ker)} | {tps(t_all)} | {t_ref / t_ker:>9.0f}x | {t_ref / t_all:>10.1f}x")

    # Text -> reward end to end on the 101 training samples.
    n = args.text_batch
    episodes = build_inputs(n, seed=1, files=("bfcl_training_3_per_workflow.json",))
    rendered = [(*episode_to_text(e), e.steps) for e in episodes]

    def text_to_reward() -> np.ndarray:
        eps = [episode_from_text(text, responses, steps, compat) for text, responses, steps in rendered]
        return score_episodes(args.family, args.mode, eps, config, paper_compat=compat).reward

    got = text_to_reward()
    want = np.array([ref_fn(e, args.mode).reward for e in episodes[:512]])
    np.testing.assert_allclose(got[:512], want, atol=1e-6)
    t_parse = median_time(lambda: [episode_from_text(t, r, s, compat) for t, r, s in rendered], args.repeats)
    t_text = median_time(text_to_reward, args.repeats)
    print(
        f"text -> reward (parse + encode + kernel), 101 training samples' golden rollouts and corruptions, "
        f"batch {n}: {n / t_text:,.0f} episodes/s (parse alone {n / t_parse:,.0f}/s)"
    )


if __name__ == "__main__":
    main()

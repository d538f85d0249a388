"""Generation throughput: our jitted sampler vs HF transformers' torch ``generate`` on SmolLM2-135M.

Same converted weights (fp32), same prompts (chat-templated questions of different lengths, left
padded), greedy decoding, exactly ``--new-tokens`` tokens per row (no early stop), batch 1 and 16.
Each number is the median over ``--repeats`` timed runs after one warmup run (which for us includes
jit compilation). Tokens/s counts generated tokens only (batch * new tokens / seconds).

Also times our sampler without the KV cache (full recomputation of the [B, P + N] sequence each
step) to show what the cache buys.

Usage: python benchmarks/generation.py [--batches 1 16] [--new-tokens 128] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import numpy as np  # noqa: E402

QUESTIONS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Explain what a hash table is in two sentences.",
    "List three uses of a paperclip.",
    "How many legs does a spider have?",
    "Give me a short tip for learning a new language quickly and remembering vocabulary.",
    "What is 17 times 23?",
    "Name a famous painting by Vincent van Gogh.",
]


def _median_time(fn, repeats: int, warmup=None) -> float:
    (warmup or fn)()  # warmup (compiles for jax)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-nocache-batch", type=int, default=1,
                        help="skip the no-cache run for batches larger than this (it is slow; -1 = never skip)")
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForCausalLM

    from toolrl.models.checkpoint_io import load_pretrained
    from toolrl.models.sampler import SamplingParams, generate

    model, tokenizer, config = load_pretrained("smollm2_135m")
    directory = os.fspath(__import__("toolrl.models.bundled", fromlist=["x"]).ensure_smollm2())
    hf = AutoModelForCausalLM.from_pretrained(directory, local_files_only=True, dtype=torch.float32).eval()
    n = args.new_tokens
    params = SamplingParams(max_new_tokens=n, greedy=True)  # no stop ids: every row makes n tokens

    rows = []
    for b in args.batches:
        prompts = [
            tokenizer.apply_chat_template([{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}],
                                          add_generation_prompt=True, tokenize=False)
            for i in range(b)
        ]
        ids = [tokenizer.encode(p) for p in prompts]

        def ours(use_cache: bool = True):
            out = generate(model, ids, params, bucket=16, use_cache=use_cache)
            assert out.completion_mask.all()
            return out

        enc = tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left")

        def theirs(new: int = n):
            with torch.no_grad():
                return hf.generate(**enc, max_new_tokens=new, min_new_tokens=new, do_sample=False,
                                   pad_token_id=tokenizer.pad_token_id)

        t_ours = _median_time(ours, args.repeats)
        t_torch = _median_time(theirs, args.repeats, warmup=lambda: theirs(8))  # torch needs no compile
        skip = args.skip_nocache_batch >= 0 and b > args.skip_nocache_batch
        t_nocache = float("nan") if skip else _median_time(lambda: ours(False), max(1, args.repeats - 1))
        rows.append((b, b * n / t_ours, b * n / t_torch, b * n / t_nocache))

    print(f"SmolLM2-135M-Instruct fp32, greedy, {n} new tokens, jax {jax.__version__} "
          f"({jax.devices()[0].platform}), torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"{os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f}); median of {args.repeats} after warmup")
    header = f"| batch | ours KV cache (tok/s) | HF torch generate (tok/s) | ours / torch | ours no cache (tok/s) | cache speedup |"
    print(header)
    print("|" + "|".join("---" for _ in range(6)) + "|")
    for b, ours_tps, torch_tps, nocache_tps in rows:
        print(f"| {b} | {ours_tps:.1f} | {torch_tps:.1f} | {ours_tps / torch_tps:.2f}x | {nocache_tps:.1f} | "
              f"{ours_tps / nocache_tps:.1f}x |")


if __name__ == "__main__":
    main()

"""Generation throughput on SmolLM2-135M: our jitted sampler vs HF transformers' torch ``generate``,
and GRPO group rollouts with vs without shared prefill.

Part 1 (``--batches``, default 16): same converted weights (fp32), same prompts (chat-templated
questions of different lengths, left padded), greedy decoding, exactly ``--new-tokens`` tokens per
row (no stop ids for us; HF with ``min_new_tokens``), timed in the same process. Each number is the
median over ``--repeats`` timed runs after one warmup run (which for us includes jit compilation).
Tokens/s counts generated tokens only (batch * new tokens / seconds). The roofline column compares
our time per decode step (whole run / new tokens, prefill included, so a lower bound on the
fraction) with the step's bound on this machine: max(weight bytes / measured memory bandwidth,
FLOPs / measured fp32 matmul peak), both measured in the same run (see ``decode_profile.py``).
Optionally (``--nocache``) also our sampler without the KV cache.

Part 2 (``--group-size`` G, default 8): G rollouts of ONE ``--group-prompt-tokens``-token prompt
(temperature 1 sampling, ``--group-new-tokens`` new tokens, no stop), ``generate_arrays`` with
``group_size=G`` (prefill once, broadcast the KV cache) vs ``group_size=1`` (prefill G copies).
The two return identical tokens (checked).

The machine may be shared: the load average is printed with each table.

Usage: python benchmarks/generation.py [--batches 16] [--new-tokens 128] [--repeats 3]
       [--group-size 8] [--group-prompt-tokens 400] [--group-new-tokens 32 128] [--skip-torch]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

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


def _load() -> str:
    return f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"


def _prompts(tokenizer, b: int) -> list[str]:
    return [tokenizer.apply_chat_template([{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}],
                                          add_generation_prompt=True, tokenize=False) for i in range(b)]


def torch_worker(args) -> None:
    """Time HF torch ``generate`` (run in a subprocess: a process that also runs XLA's CPU thread pool
    slows torch's OpenMP threads down by an order of magnitude on a 2-core machine, and vice versa)."""
    import json

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from toolrl.models.checkpoint_io import resolve_model_dir

    directory = os.fspath(resolve_model_dir(args.model))
    device = torch.device(args.torch_device)
    hf = AutoModelForCausalLM.from_pretrained(directory, local_files_only=True, dtype=torch.float32).eval().to(device)
    tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    n = args.new_tokens
    out = {"torch": torch.__version__, "threads": torch.get_num_threads(), "device": str(device), "times": {}}
    for b in args.batches:
        enc = tokenizer(_prompts(tokenizer, b), return_tensors="pt", padding=True, padding_side="left").to(device)

        def theirs(new: int = n):
            with torch.no_grad():
                out = hf.generate(**enc, max_new_tokens=new, min_new_tokens=new, do_sample=False,
                                  pad_token_id=tokenizer.pad_token_id)
            if device.type == "cuda":
                torch.cuda.synchronize()
            return out

        out["times"][str(b)] = _median_time(theirs, args.repeats, warmup=lambda: theirs(8))
    print("TORCH_RESULT " + json.dumps(out))


def _run_torch_subprocess(args) -> dict:
    import json
    import subprocess

    cmd = [sys.executable, os.path.abspath(__file__), "--torch-worker", "--new-tokens", str(args.new_tokens),
           "--repeats", str(args.repeats), "--model", args.model, "--torch-device", args.torch_device,
           "--batches", *map(str, args.batches)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    line = next(x for x in proc.stdout.splitlines() if x.startswith("TORCH_RESULT "))
    return json.loads(line[len("TORCH_RESULT "):])


def bench_vs_torch(args, model, tokenizer, config, limits) -> None:
    from toolrl.models.sampler import SamplingParams, generate

    n = args.new_tokens
    params = SamplingParams(max_new_tokens=n, greedy=True)  # no stop ids: every row makes n tokens
    n_params = sum(int(np.size(x)) for x in jax.tree.leaves(__import__("flax").nnx.state(model)))
    torch_result = None if args.skip_torch else _run_torch_subprocess(args)
    rows = []
    for b in args.batches:
        ids = [tokenizer.encode(p) for p in _prompts(tokenizer, b)]

        def ours(use_cache: bool = True):
            out = generate(model, ids, params, bucket=16, use_cache=use_cache)
            assert out.completion_mask.all()
            return out

        t_ours = _median_time(ours, args.repeats)
        t_torch = float("nan") if torch_result is None else torch_result["times"][str(b)]
        t_nocache = _median_time(lambda: ours(False), max(1, args.repeats - 1)) if args.nocache else float("nan")
        bound = max(4 * n_params / (limits["read_bandwidth_gbs"] * 1e9),
                    2 * b * n_params / (limits["matmul_2048_gflops"] * 1e9))
        rows.append((b, b * n / t_ours, b * n / t_torch, b * n / t_nocache, 1e3 * t_ours / n, 1e3 * bound))

    torch_desc = "skipped" if torch_result is None else f"{torch_result['torch']} ({torch_result.get('device', 'cpu')}, {torch_result['threads']} threads, own process)"
    print(f"\nSmolLM2-135M-Instruct fp32, greedy, {n} new tokens, jax {jax.__version__} "
          f"({jax.devices()[0].platform}), torch {torch_desc}, {_load()}; median of {args.repeats} after warmup")
    print("| batch | ours (tok/s) | HF torch generate (tok/s) | ours / torch | ours ms/token step | roofline bound ms/step "
          "| fraction of roofline | ours no cache (tok/s) |")
    print("|" + "|".join("---" for _ in range(8)) + "|")
    for b, ours_tps, torch_tps, nocache_tps, ms, bound_ms in rows:
        print(f"| {b} | {ours_tps:.1f} | {torch_tps:.1f} | {ours_tps / torch_tps:.2f}x | {ms:.1f} | {bound_ms:.1f} "
              f"| {bound_ms / ms:.0%} | {nocache_tps:.1f} |")


def bench_group_prefill(args, model, tokenizer) -> None:
    from flax import nnx

    from toolrl.models.sampler import SamplingParams, generate_arrays, pad_prompts

    g = args.group_size
    text = " ".join(QUESTIONS) * 20
    prompt = tokenizer.encode(text)[: args.group_prompt_tokens]
    tokens, mask = pad_prompts([prompt] * g, tokenizer.pad_token_id or 0, bucket=16)
    tokens, mask = jnp.asarray(tokens), jnp.asarray(mask)
    graphdef, state = nnx.split(model)
    rows = []
    for n in args.group_new_tokens:
        params = SamplingParams(max_new_tokens=n, temperature=1.0)

        def run(group: int):
            out = generate_arrays(graphdef, state, tokens, mask, jax.random.key(0), params=params,
                                  pad_id=0, group_size=group)
            return jax.block_until_ready(out)

        same = np.array_equal(np.asarray(run(1)["tokens"]), np.asarray(run(g)["tokens"]))
        t_plain = _median_time(lambda: run(1), args.repeats)
        t_shared = _median_time(lambda: run(g), args.repeats)
        rows.append((n, t_plain, t_shared, same))
    print(f"\nGRPO group rollouts: G={g} samples of one {len(prompt)}-token prompt (padded to {tokens.shape[1]}), "
          f"temperature 1, fp32, {_load()}; median of {args.repeats} after warmup")
    print("| new tokens | prefill G copies (s) | shared prefill (s) | speedup | same tokens |")
    print("|---|---|---|---|---|")
    for n, t_plain, t_shared, same in rows:
        print(f"| {n} | {t_plain:.2f} | {t_shared:.2f} | {t_plain / t_shared:.1f}x | {same} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="*", default=[16])
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--nocache", action="store_true", help="also time our sampler without the KV cache (slow)")
    parser.add_argument("--skip-torch", action="store_true")
    parser.add_argument("--group-size", type=int, default=8, help="0 = skip part 2")
    parser.add_argument("--group-prompt-tokens", type=int, default=400)
    parser.add_argument("--group-new-tokens", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--model", default="smollm2_135m",
                        help="preset or local HF directory (e.g. benchmarks/random_weights.py's, on a GPU machine)")
    parser.add_argument("--torch-device", default="cpu", help="torch's device for HF generate (cpu / cuda)")
    parser.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.torch_worker:
        torch_worker(args)
        return

    from decode_profile import machine_limits

    from toolrl.models.checkpoint_io import load_pretrained

    model, tokenizer, config = load_pretrained(args.model)
    if args.batches:
        limits = machine_limits(repeats=10)
        print("machine limits (same run): " + ", ".join(f"{k} {v:.1f}" for k, v in limits.items()))
        bench_vs_torch(args, model, tokenizer, config, limits)
    if args.group_size > 1:
        bench_group_prefill(args, model, tokenizer)


if __name__ == "__main__":
    main()

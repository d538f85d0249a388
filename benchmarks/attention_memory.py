"""Memory of prefill attention with and without ``model.attention_query_chunk``.

    python benchmarks/attention_memory.py [--lengths=1024,2048,4096] [--chunks=0,256,512,1024] [--repeats=9]

For SmolLM2-135M's attention (batch 8, 9 query heads, 3 key/value heads of 64; ``--batch``, ``--heads``,
``--kv_heads``, ``--head_dim``) at T = S prompt tokens, ``decoder.attend`` ("xla", causal mask) is
jitted, lowered and compiled for each length and chunk (0 = whole), and XLA's memory analysis of the
compiled program is read: its temporaries (the score, masked and softmax arrays) and peak = arguments
+ outputs - aliased + temporaries (the CPU backend's own peak leaves the temporaries out). Nothing of
those shapes runs: a whole 4096-token prefill at batch 8 would need about 10 GB. For reference it also
compiles, at ``--slices_chunk``, the chunks as an unrolled Python loop of slices (not what ``attend``
does: XLA lets those chunks' scores coexist). With ``--sampler_preset`` it also compiles the whole
sampler program an evaluation runs (``sampler.generate_arrays``: prefill into the KV cache, then
``--new_tokens`` greedy decode steps) for that model's abstract weights at the longest length, whole
and at each chunk. Then only the shortest length runs, whole and each chunk alternating ``--repeats``
times (medians and fastest calls; the outputs compared bit for bit). Writes
``benchmarks/results/attention_memory.json`` with the command and the load average before and after.
"""

from __future__ import annotations

import os
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from bench_common import load_note, write_record, xla_memory  # noqa: E402
from toolrl.models.decoder import attend  # noqa: E402


def define_flags() -> None:
    """The command line (defined when run as a script only)."""
    flags.DEFINE_list("lengths", ["1024", "2048", "4096"], "Prompt tokens T (= key slots S); the first one runs.")
    flags.DEFINE_list("chunks", ["0", "256", "512", "1024"], "attention_query_chunk values (0 = whole).")
    flags.DEFINE_integer("batch", 8, "Rows.")
    flags.DEFINE_integer("heads", 9, "Query heads H.")
    flags.DEFINE_integer("kv_heads", 3, "Key/value heads K.")
    flags.DEFINE_integer("head_dim", 64, "Dh.")
    flags.DEFINE_string("dtype", "float32", "Compute dtype.")
    flags.DEFINE_integer("slices_chunk", 256, "Chunk of the Python-loop reference (0: none).")
    flags.DEFINE_string("sampler_preset", "smollm2_135m", "Model whose sampler program is compiled ('' = none).")
    flags.DEFINE_integer("new_tokens", 256, "Decode steps of that sampler program.")
    flags.DEFINE_integer("repeats", 9, "Timed calls per variant at the shortest length.")
    flags.DEFINE_string("out", str(Path(__file__).resolve().parent / "results" / "attention_memory.json"),
                        "Result JSON.")


def shapes(b: int, t: int, h: int, k: int, dh: int, dtype: Any) -> tuple[jax.ShapeDtypeStruct, ...]:
    """Abstract q [B, T, H, Dh], keys, values [B, K, T, Dh], mask [B, T, T]."""
    kv = jax.ShapeDtypeStruct((b, k, t, dh), dtype)
    return (jax.ShapeDtypeStruct((b, t, h, dh), dtype), kv, kv, jax.ShapeDtypeStruct((b, t, t), bool))


def sliced(chunk: int):
    """The rejected alternative: a Python loop over static slices of the queries, concatenated."""
    def fn(q, keys, values, mask):
        t = q.shape[1]
        return jnp.concatenate([attend(q[:, i:i + chunk], keys, values, mask[:, i:i + chunk])
                                for i in range(0, t, chunk)], axis=1)
    return fn


def label(chunk: int, t: int) -> str:
    """How a table names a chunk: chunks >= T compile the whole program again (its timing shows the noise)."""
    return "whole" if chunk == 0 else f"{chunk} (= whole, C >= T)" if chunk >= t else str(chunk)


def chunked(chunk: int):
    """``attend`` with ``query_chunk`` (0 = whole)."""
    return lambda q, keys, values, mask: attend(q, keys, values, mask, query_chunk=chunk)


def inputs(b: int, t: int, h: int, k: int, dh: int, dtype: Any) -> tuple[jax.Array, ...]:
    """Random q, keys, values and a causal mask (the first 100 slots of row 0 padding)."""
    rng = np.random.default_rng(0)
    q = jnp.asarray(rng.normal(size=(b, t, h, dh)), dtype)
    keys, values = (jnp.asarray(rng.normal(size=(b, k, t, dh)), dtype) for _ in range(2))
    mask = np.broadcast_to(np.tril(np.ones((t, t), bool)), (b, t, t)).copy()
    mask[0, :, :100] = False
    return q, keys, values, jnp.asarray(mask)


def sampler_memory(preset: str, dtype: str, chunk: int, b: int, p: int, new_tokens: int) -> dict[str, int]:
    """XLA's memory analysis of ``generate_arrays`` (greedy) for ``preset``'s abstract float32 weights,
    ``b`` prompts of ``p`` tokens, compiled and not run."""
    import functools

    from flax import nnx

    from toolrl.models.config import ModelConfig
    from toolrl.models.decoder import Decoder
    from toolrl.models.sampler import SamplingParams, generate_arrays

    config = ModelConfig.preset(preset).with_dtype(dtype).replace(attention_query_chunk=chunk)
    graphdef, state = nnx.split(nnx.eval_shape(lambda: Decoder(config, nnx.Rngs(0))))
    params = SamplingParams(max_new_tokens=new_tokens, greedy=True)
    program = jax.jit(functools.partial(generate_arrays, params=params), static_argnums=0)
    return xla_memory(program.lower(graphdef, state, jax.ShapeDtypeStruct((b, p), jnp.int32),
                                    jax.ShapeDtypeStruct((b, p), bool), jax.ShapeDtypeStruct((2,), jnp.uint32)).compile())


def timed(compiled: Any, args: tuple[jax.Array, ...]) -> tuple[float, jax.Array]:
    """(wall seconds of one call, its output)."""
    start = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))
    return time.perf_counter() - start, out


def command(f: Any) -> str:
    """The shell command that reproduces a record (from the repository root)."""
    return shlex.join(["python", "benchmarks/attention_memory.py", f"--lengths={','.join(f.lengths)}",
                       f"--chunks={','.join(f.chunks)}", f"--batch={f.batch}", f"--heads={f.heads}",
                       f"--kv_heads={f.kv_heads}", f"--head_dim={f.head_dim}", f"--dtype={f.dtype}",
                       f"--slices_chunk={f.slices_chunk}", f"--sampler_preset={f.sampler_preset}",
                       f"--new_tokens={f.new_tokens}", f"--repeats={f.repeats}"])


def main(argv: list[str]) -> None:
    del argv
    f = flags.FLAGS
    dtype = jnp.dtype(f.dtype)
    lengths, chunks = [int(x) for x in f.lengths], sorted({int(x) for x in f.chunks})  # 0 (whole) first
    cpus = os.cpu_count() or 1
    load_before = os.getloadavg()[0]
    dims = (f.batch, f.heads, f.kv_heads, f.head_dim)
    record: dict[str, Any] = {"command": command(f), "backend": jax.default_backend(), "jax": jax.__version__,
                              "cpus": cpus, "batch": f.batch, "heads": f.heads, "kv_heads": f.kv_heads,
                              "head_dim": f.head_dim, "dtype": f.dtype, "memory": [], "slices": [], "time": {}}
    mib = 2 ** 20
    print(f"attend, B={f.batch} H={f.heads} K={f.kv_heads} Dh={f.head_dim} {f.dtype}, T = S; "
          f"XLA memory analysis (compiled, not run), jax {jax.__version__} on {jax.default_backend()}")
    print("| T | chunk | temp (MiB) | peak (MiB) | temp / whole |")
    print("|---|---|---|---|---|")
    compiled: dict[int, Any] = {}
    for t in lengths:
        args = shapes(t=t, b=f.batch, h=f.heads, k=f.kv_heads, dh=f.head_dim, dtype=dtype)
        whole_temp = None
        for c in chunks:
            program = jax.jit(chunked(c)).lower(*args).compile()
            m = xla_memory(program)
            whole_temp = m["temp"] if c == 0 else whole_temp
            ratio = m["temp"] / whole_temp if whole_temp else None
            record["memory"].append({"T": t, "chunk": c, "whole_program": c == 0 or c >= t, **m,
                                     "temp_over_whole": ratio})
            print(f"| {t} | {label(c, t)} | {m['temp'] / mib:,.0f} | {m['peak'] / mib:,.0f} | "
                  f"{'' if ratio is None else f'{ratio:.3f}'} |")
            if t == lengths[0]:
                compiled[c] = program
        if f.slices_chunk:
            m = xla_memory(jax.jit(sliced(f.slices_chunk)).lower(*args).compile())
            record["slices"].append({"T": t, "chunk": f.slices_chunk, **m})
            ratio = m["temp"] / whole_temp if whole_temp else None
            record["slices"][-1]["temp_over_whole"] = ratio
            print(f"| {t} | {f.slices_chunk} as a Python loop of slices (not used) | {m['temp'] / mib:,.0f} | "
                  f"{m['peak'] / mib:,.0f} | {'' if ratio is None else f'{ratio:.3f}'} |")

    if f.sampler_preset:
        t = lengths[-1]
        print(f"\n{f.sampler_preset} sampler program (generate_arrays), {f.batch} prompts of {t} tokens + "
              f"{f.new_tokens} greedy steps, {f.dtype}, compiled, not run:")
        print("| chunk | temp (MiB) | peak (MiB) | temp / whole |")
        print("|---|---|---|---|")
        record["sampler"] = {"preset": f.sampler_preset, "prompt_tokens": t, "new_tokens": f.new_tokens, "memory": []}
        whole_temp = None
        for c in chunks:
            if c >= t:
                continue
            m = sampler_memory(f.sampler_preset, f.dtype, c, f.batch, t, f.new_tokens)
            whole_temp = m["temp"] if c == 0 else whole_temp
            ratio = m["temp"] / whole_temp if whole_temp else None
            record["sampler"]["memory"].append({"chunk": c, **m, "temp_over_whole": ratio})
            print(f"| {label(c, t)} | {m['temp'] / mib:,.0f} | {m['peak'] / mib:,.0f} | "
                  f"{'' if ratio is None else f'{ratio:.3f}'} |")

    t = lengths[0]
    data = inputs(f.batch, t, f.heads, f.kv_heads, f.head_dim, dtype)
    times: dict[int, list[float]] = {c: [] for c in compiled}
    outputs = {c: timed(program, data)[1] for c, program in compiled.items()}  # first calls: one-off costs
    for _ in range(f.repeats):
        for c, program in compiled.items():  # alternating: every variant sees the same machine
            times[c].append(timed(program, data)[0])
    base = statistics.median(times[0]) if 0 in times else None
    print(f"\nT = {t}, run (median and fastest of {f.repeats}):")
    print("| chunk | seconds | / whole | fastest | / whole | bitwise equal to whole |")
    print("|---|---|---|---|---|---|")
    fastest = min(times[0]) if 0 in times else None
    for c in compiled:
        seconds = statistics.median(times[c])
        equal = bool(jnp.array_equal(outputs[c], outputs[0])) if 0 in outputs else None
        record["time"][str(c)] = {"seconds": seconds, "all_seconds": times[c],
                                  "over_whole": seconds / base if base else None, "fastest": min(times[c]),
                                  "fastest_over_whole": min(times[c]) / fastest if fastest else None,
                                  "bitwise_equal_to_whole": equal}
        print(f"| {label(c, t)} | {seconds:.3f} | {f'{seconds / base:.2f}' if base else ''} | {min(times[c]):.3f} | "
              f"{f'{min(times[c]) / fastest:.2f}' if fastest else ''} | {equal} |")
    record["time_T"] = t
    load_after = os.getloadavg()[0]
    record.update(load_before=round(load_before, 2), load_after=round(load_after, 2),
                  load_note=load_note(load_before, load_after, cpus, variants="the variants"))
    write_record(record, f.out)


if __name__ == "__main__":
    define_flags()
    app.run(main)

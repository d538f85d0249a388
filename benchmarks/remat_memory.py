"""Activation memory of one training backward pass, with and without ``model.remat``.

For each width, compiles (ahead of time) the gradient of the mean log-prob of one row's tokens
under the decoder (the update's forward: trunk, LM head at the loss positions only) and prints
XLA's own memory analysis of the compiled program: its temporary buffers (activations, residuals
saved for the backward pass, gradients in flight) next to its arguments (the parameters). With
``--run`` it also times one call of each (median of ``--repeats``), so the recomputation's cost
sits beside the memory it frees.

    python benchmarks/remat_memory.py                       # SmolLM2-135M, widths 512 1152
    python benchmarks/remat_memory.py --preset tiny --widths 256 --run

The numbers are the compiler's plan, not a process's RSS (which also holds the jit cache, the
host copies and allocator slack); they are what decides whether a row fits on an accelerator.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402

from toolrl.models.config import ModelConfig  # noqa: E402
from toolrl.models.decoder import Decoder, selected_logprobs  # noqa: E402


def compiled_grad(config: ModelConfig, width: int, rows: int):
    """(compiled gradient fn, its arguments) for ``rows`` rows of ``width`` tokens, loss at every position."""
    model = Decoder(config, rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(model)
    tokens = jax.random.randint(jax.random.key(1), (rows, width), 0, config.vocab_size, jnp.int32)
    mask = jnp.ones((rows, width), bool)
    gather = jnp.broadcast_to(jnp.arange(width - 1, dtype=jnp.int32), (rows, width - 1))

    def loss(p):
        return -jnp.mean(selected_logprobs(nnx.merge(graphdef, p), tokens, mask, gather))

    fn = jax.jit(jax.grad(loss))
    return fn.lower(params).compile(), params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="smollm2_135m")
    parser.add_argument("--dtype", default="float32", help="compute dtype")
    parser.add_argument("--widths", type=int, nargs="+", default=[512, 1152])
    parser.add_argument("--rows", type=int, default=1)
    parser.add_argument("--run", action="store_true", help="also time one backward pass of each")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    base = ModelConfig.preset(args.preset).with_dtype(args.dtype)
    print(f"{args.preset}, compute {args.dtype}, {args.rows} row(s); jax {jax.__version__} on "
          f"{jax.devices()[0].platform}; load {os.getloadavg()[0]:.1f}")
    header = "| width | remat | temp (MB) | params (MB) | temp ratio |"
    if args.run:
        header += " seconds | time ratio |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for width in args.widths:
        results = {}
        for remat in (False, True):
            compiled, params = compiled_grad(base.replace(remat=remat), width, args.rows)
            memory = compiled.memory_analysis()
            seconds = None
            if args.run:
                jax.block_until_ready(compiled(params))
                times = []
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    jax.block_until_ready(compiled(params))
                    times.append(time.perf_counter() - t0)
                seconds = statistics.median(times)
            results[remat] = (memory.temp_size_in_bytes / 1e6, memory.argument_size_in_bytes / 1e6, seconds)
            del compiled
        for remat in (False, True):
            temp, arg, seconds = results[remat]
            line = f"| {width} | {'on' if remat else 'off'} | {temp:,.0f} | {arg:,.0f} | {temp / results[False][0]:.2f} |"
            if args.run:
                line += f" {seconds:.2f} | {seconds / results[False][2]:.2f} |"
            print(line)


if __name__ == "__main__":
    main()

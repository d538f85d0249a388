"""Full fine-tuning against LoRA (toolrl.models.lora): seconds per update, XLA's memory analysis of the
update, and bytes of trainable state.

    python benchmarks/bench_lora.py [--preset=smollm2_135m] [--rank=16] [--rows=2] [--width=256] [--repeats=5]

A random-init model of the preset's shapes (no weights read) takes AdamW updates on a token-mean NLL
of random tokens, once over every parameter and once over the adapters only (rank --rank on the
attention and MLP projections), as the trainer's updates do (``optimizer.wrt``: ``nnx.Param`` or
``nnx.LoRAParam``, the state donated). Both programs are compiled ahead of time; XLA's memory analysis
of each (``compiled.memory_analysis()``: argument, output, aliased, temporary and generated-code bytes)
is read, then the two are timed side by side in one process (full and LoRA alternate, --repeats
times each; medians), so a load that comes and goes weighs on both alike. Writes
``benchmarks/results/lora.json`` (the README quotes it) with the command that reproduces it and the
machine's load average before and after: times taken on a busy machine are marked as such.
"""

from __future__ import annotations

import math
import os
import shlex
import statistics
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags
from flax import nnx

from bench_common import load_note, write_record, xla_memory
from toolrl.models.config import ModelConfig
from toolrl.models.decoder import init_model, sequence_logprobs
from toolrl.models.lora import LoraSpec, apply_lora


def define_flags() -> None:
    """The command line (defined when run as a script only: a test imports the module beside others
    that define --out)."""
    flags.DEFINE_string("preset", "smollm2_135m", "Model shapes (random weights).")
    flags.DEFINE_integer("rank", 16, "LoRA rank.")
    flags.DEFINE_integer("rows", 2, "Rows per update.")
    flags.DEFINE_integer("width", 256, "Tokens per row.")
    flags.DEFINE_integer("repeats", 5, "Timed updates per variant (alternating full and LoRA).")
    flags.DEFINE_string("out", str(Path(__file__).resolve().parent / "results" / "lora.json"), "Result JSON.")

MEMORY_FIELDS = ("argument", "output", "alias", "temp", "generated_code")


class Variant:
    """One update program (full or LoRA): the model and optimizer state, and the compiled AdamW step
    ``state, tokens, mask -> state, loss`` that donates the state (as the trainer's step does)."""

    def __init__(self, model: nnx.Module, wrt: type, tokens: jax.Array, mask: jax.Array):
        optimizer = nnx.Optimizer(model, optax.adamw(1e-4), wrt=wrt)
        self.trainable = sum(math.prod(x.shape) for x in jax.tree.leaves(nnx.state(model, wrt)))
        self.moment_bytes = sum(x.nbytes for x in jax.tree.leaves(nnx.state(optimizer)))
        self.graphdef, self.state = nnx.split((model, optimizer))
        graphdef = self.graphdef

        def step(state: Any, tokens: jax.Array, mask: jax.Array) -> tuple[Any, jax.Array]:
            model, optimizer = nnx.merge(graphdef, state)
            mgraph, trainable, rest = nnx.split(model, optimizer.wrt, ...)

            def loss_fn(trainable: Any) -> jax.Array:
                return -jnp.mean(sequence_logprobs(nnx.merge(mgraph, trainable, rest), tokens, mask))

            loss, grads = jax.value_and_grad(loss_fn)(trainable)
            optimizer.update(model, grads)
            return nnx.state((model, optimizer)), loss

        self.tokens, self.mask = tokens, mask
        self.compiled = jax.jit(step, donate_argnums=0).lower(self.state, tokens, mask).compile()

    def memory(self) -> dict[str, int]:
        """XLA's memory analysis of the update, bytes; ``peak`` = argument + output - alias + temp (the
        CPU backend's own peak leaves the temporaries out)."""
        return xla_memory(self.compiled, MEMORY_FIELDS)

    def run(self) -> float:
        """One update; its wall-clock seconds (the loss read back, so the work is done)."""
        start = time.perf_counter()
        self.state, loss = self.compiled(self.state, self.tokens, self.mask)
        float(loss)
        return time.perf_counter() - start


def measure(config: ModelConfig, rank: int, rows: int, width: int, repeats: int) -> dict[str, Any]:
    """{"full": {...}, "lora": {...}, "lora_over_full_seconds"}: per variant the median seconds per
    update, every timed update's seconds, trainable parameters, AdamW state bytes and XLA's memory
    analysis. Both variants start from the same random weights (seed 0)."""
    rng = np.random.default_rng(0)
    tokens = jnp.asarray(rng.integers(3, config.vocab_size, (rows, width)), jnp.int32)
    mask = jnp.ones(tokens.shape, bool)
    variants = {"full": Variant(init_model(config, 0), nnx.Param, tokens, mask),
                "lora": Variant(apply_lora(init_model(config, 0), LoraSpec(rank, 2.0 * rank)), nnx.LoRAParam,
                                tokens, mask)}
    times: dict[str, list[float]] = {name: [] for name in variants}
    for v in variants.values():
        v.run()  # the first call of a compiled program pays one-off costs (allocation, page faults)
    for _ in range(repeats):
        for name, v in variants.items():  # alternating: both see the same machine
            times[name].append(v.run())
    record = {name: {"seconds": statistics.median(times[name]), "all_seconds": times[name],
                     "trainable": v.trainable, "moment_bytes": v.moment_bytes, "memory": v.memory()}
              for name, v in variants.items()}
    record["lora_over_full_seconds"] = record["lora"]["seconds"] / record["full"]["seconds"]
    return record


def command(preset: str, rank: int, rows: int, width: int, repeats: int) -> str:
    """The shell command that reproduces a record (from the repository root)."""
    return shlex.join(["python", "benchmarks/bench_lora.py", f"--preset={preset}", f"--rank={rank}",
                       f"--rows={rows}", f"--width={width}", f"--repeats={repeats}"])


def main(argv: list[str]) -> None:
    del argv
    f = flags.FLAGS
    cpus = os.cpu_count() or 1
    load_before = os.getloadavg()[0]
    record: dict[str, Any] = {
        "preset": f.preset, "rank": f.rank, "rows": f.rows, "width": f.width, "repeats": f.repeats,
        "backend": jax.default_backend(), "cpus": cpus,
        "command": command(f.preset, f.rank, f.rows, f.width, f.repeats)}
    record.update(measure(ModelConfig.preset(f.preset), f.rank, f.rows, f.width, f.repeats))
    load_after = os.getloadavg()[0]
    record.update(load_before=round(load_before, 2), load_after=round(load_after, 2),
                  load_note=load_note(load_before, load_after, cpus))
    mib = 2 ** 20
    print("| update | seconds (median) | trainable parameters | AdamW state | XLA argument | output | temp | peak |")
    print("|---|---|---|---|---|---|---|---|")
    for name in ("full", "lora"):
        r, m = record[name], record[name]["memory"]
        print(f"| {name} | {r['seconds']:.2f} | {r['trainable']:,} | {r['moment_bytes'] / mib:.0f} MiB | "
              f"{m['argument'] / mib:.0f} MiB | {m['output'] / mib:.0f} MiB | {m['temp'] / mib:.0f} MiB | "
              f"{m['peak'] / mib:.0f} MiB |")
    write_record(record, f.out)


if __name__ == "__main__":
    define_flags()
    app.run(main)

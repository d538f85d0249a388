"""Full fine-tuning against LoRA (toolrl.models.lora): seconds per update and bytes of trainable state.

    python benchmarks/bench_lora.py [--preset=smollm2_135m] [--rank=16] [--rows=2] [--width=256] [--repeats=3]

A random-init model of the preset's shapes (no weights read) takes AdamW updates on a token-mean NLL
of random tokens, once over every parameter and once over the adapters only (rank --rank on the
attention and MLP projections); both programs are compiled ahead of time, then timed (median of
--repeats). Prints one JSON line: seconds per update, trainable parameters, AdamW moment bytes, and
the ratio of the two update times, as a table and in ``benchmarks/results/lora.json`` (the README quotes
it). The trainer's updates differentiate ``optimizer.wrt`` the same way (``model.lora.rank > 0``).
"""

from __future__ import annotations

import json
import math
import os
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags
from flax import nnx

from toolrl.models.config import ModelConfig
from toolrl.models.decoder import init_model, sequence_logprobs
from toolrl.models.lora import LoraSpec, apply_lora

_PRESET = flags.DEFINE_string("preset", "smollm2_135m", "Model shapes (random weights).")
_RANK = flags.DEFINE_integer("rank", 16, "LoRA rank.")
_ROWS = flags.DEFINE_integer("rows", 2, "Rows per update.")
_WIDTH = flags.DEFINE_integer("width", 256, "Tokens per row.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed updates per variant.")


def _step(wrt: type) -> object:
    @nnx.jit
    def step(model: nnx.Module, optimizer: nnx.Optimizer, tokens: jax.Array, mask: jax.Array) -> jax.Array:
        graph, trainable, rest = nnx.split(model, wrt, ...)

        def loss_fn(trainable):
            logp = sequence_logprobs(nnx.merge(graph, trainable, rest), tokens, mask)
            return -jnp.mean(logp)

        loss, grads = jax.value_and_grad(loss_fn)(trainable)
        optimizer.update(model, grads)
        return loss

    return step


def _time(model: nnx.Module, wrt: type, tokens: jax.Array, mask: jax.Array, repeats: int) -> dict[str, float]:
    optimizer = nnx.Optimizer(model, optax.adamw(1e-4), wrt=wrt)
    step = _step(wrt)
    float(step(model, optimizer, tokens, mask))  # compile + first update
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        float(step(model, optimizer, tokens, mask))
        times.append(time.perf_counter() - start)
    trainable = sum(math.prod(x.shape) for x in jax.tree.leaves(nnx.state(model, wrt)))
    moments = sum(x.nbytes for x in jax.tree.leaves(nnx.state(optimizer)))
    return {"seconds": statistics.median(times), "trainable": trainable, "moment_bytes": moments}


def main(argv: list[str]) -> None:
    del argv
    load = os.getloadavg()[0]
    config = ModelConfig.preset(_PRESET.value)
    rng = np.random.default_rng(0)
    tokens = jnp.asarray(rng.integers(3, config.vocab_size, (_ROWS.value, _WIDTH.value)), jnp.int32)
    mask = jnp.ones(tokens.shape, bool)
    full = _time(init_model(config, 0), nnx.Param, tokens, mask, _REPEATS.value)
    lora_model = apply_lora(init_model(config, 0), LoraSpec(_RANK.value, 2.0 * _RANK.value))
    lora = _time(lora_model, nnx.LoRAParam, tokens, mask, _REPEATS.value)
    record = {"preset": _PRESET.value, "rank": _RANK.value, "rows": _ROWS.value, "width": _WIDTH.value,
              "repeats": _REPEATS.value, "backend": jax.default_backend(), "cpus": os.cpu_count(),
              "load_before": round(load, 2), "full": full, "lora": lora,
              "lora_over_full_seconds": lora["seconds"] / full["seconds"]}
    print("| update | seconds (median) | trainable parameters | AdamW moments |")
    print("|---|---|---|---|")
    for name in ("full", "lora"):
        r = record[name]
        print(f"| {name} | {r['seconds']:.2f} | {r['trainable']:,} | {r['moment_bytes'] / 2**20:.0f} MiB |")
    out = Path(__file__).resolve().parent / "results" / "lora.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    app.run(main)

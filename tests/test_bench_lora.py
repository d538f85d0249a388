"""benchmarks/bench_lora.py: the full and LoRA updates it measures are the trainer's (every parameter
trained, or the adapters only), and XLA's memory analysis of the two differs by exactly the state
LoRA drops (AdamW moments of the base) and adds (the adapters and their moments)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import jax
from flax import nnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from bench_lora import command, load_note, measure  # noqa: E402

from toolrl.models.config import ModelConfig  # noqa: E402
from toolrl.models.decoder import init_model  # noqa: E402
from toolrl.models.lora import LoraSpec, apply_lora  # noqa: E402


def test_memory_analysis_of_full_and_lora_updates():
    config = ModelConfig.preset("tiny")
    record = measure(config, rank=2, rows=2, width=16, repeats=2)
    full, lora = record["full"], record["lora"]
    # Independent counts: the base's parameters, and a LoRA model's adapters.
    base = init_model(config, 0)
    params = nnx.state(base, nnx.Param)
    adapters = nnx.state(apply_lora(init_model(config, 0), LoraSpec(2, 4.0)), nnx.LoRAParam)
    param_count = sum(math.prod(x.shape) for x in jax.tree.leaves(params))
    adapter_count = sum(math.prod(x.shape) for x in jax.tree.leaves(adapters))
    adapter_bytes = sum(x.nbytes for x in jax.tree.leaves(adapters))
    assert full["trainable"] == param_count and lora["trainable"] == adapter_count > 0
    # AdamW keeps two moments per trained weight (plus step counters, the same in both).
    param_bytes = sum(x.nbytes for x in jax.tree.leaves(params))
    assert full["moment_bytes"] - lora["moment_bytes"] == 2 * (param_bytes - adapter_bytes)
    # XLA's arguments are the state (model + optimizer) and the batch: LoRA's differ by the moments it
    # does not keep, less the adapters it adds.
    fm, lm = full["memory"], lora["memory"]
    assert fm["argument"] - lm["argument"] == (full["moment_bytes"] - lora["moment_bytes"]) - adapter_bytes
    for m in (fm, lm):
        assert m["argument"] > 0 and m["temp"] > 0
        assert 0 < m["alias"] <= min(m["argument"], m["output"])  # the donated state is updated in place
        assert m["peak"] == m["argument"] + m["output"] - m["alias"] + m["temp"]
    assert len(full["all_seconds"]) == len(lora["all_seconds"]) == 2
    assert record["lora_over_full_seconds"] == lora["seconds"] / full["seconds"]


def test_command_and_load_note():
    assert command("smollm2_135m", 16, 2, 256, 5) == ("python benchmarks/bench_lora.py --preset=smollm2_135m "
                                                      "--rank=16 --rows=2 --width=256 --repeats=5")
    assert load_note(0.2, 0.9, 2) is None
    assert "loaded machine" in load_note(3.0, 0.2, 2)

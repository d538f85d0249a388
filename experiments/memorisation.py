"""The memorisation check: training and evaluation pose one task.

SFT on a few training samples (whole golden episodes, nothing cut) until their loss is low, then
evaluate those same samples through the evaluator (`--config.mode=eval`: the run's own saved model and
prompt settings). A policy that has memorised its training episodes must get their turns right; if it
does not, training and evaluation disagree on prompts, turns or decoding.

    python -m experiments.memorisation [--samples=3] [--steps=75] [--batch_size=1] [--workdir=artifacts/runs/memorisation]

Prints the SFT loss curve's ends and the evaluator's turn accuracy, and writes
``experiments/results/memorisation.json``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from absl import app, flags

REPO = Path(__file__).resolve().parents[1]

_SAMPLES = flags.DEFINE_integer("samples", 3, "Training samples to memorise.")
_STEPS = flags.DEFINE_integer("steps", 75, "SFT steps.")
_LR = flags.DEFINE_float("learning_rate", 1e-4, "SFT learning rate.")
_BATCH = flags.DEFINE_integer("batch_size", 1, "Episodes per SFT step (0 = all the samples; 1 bounds memory).")
_WORKDIR = flags.DEFINE_string("workdir", "artifacts/runs/memorisation", "Run directory (a new one per setting).")
_OUT = flags.DEFINE_string("out", str(REPO / "experiments" / "results" / "memorisation.json"), "Result JSON.")


def pick_samples(config: Any, count: int) -> list[str]:
    """`count` training samples with at least two scored turns (the evaluator's unit: a turn of only free
    lookups merges into the next) and no id the response view cuts, shortest episodes first (so the
    check is cheap on a CPU)."""
    from toolrl.main import build_environment
    from toolrl.policy.runtime import Policy
    from toolrl.rl.rollout import episode_budget
    from toolrl.rl.trainer import load_training_samples

    policy = Policy.load(config.model.preset, config.model.path, config.model.dtype)
    render = build_environment(config).render
    from toolrl.eval.protocol import build_turn_tasks

    samples = [s for s in load_training_samples(config) if len(build_turn_tasks(s)) >= 2]
    budgets = {s.sample_id: episode_budget(s, policy, config.data.tool_view, render, True) for s in samples}
    # Only samples the fit report keeps: one needing an id the response view cuts is dropped from SFT.
    solvable = [s for s in samples if budgets[s.sample_id].hidden_values == 0]
    sized = sorted(solvable, key=lambda s: budgets[s.sample_id].total)
    return [s.sample_id for s in sized[:count]]


def memorisation_config(sample_ids: list[str], steps: int, learning_rate: float, workdir: str,
                        batch_size: int = 0) -> Any:
    """configs/grpo.py as an SFT-only run on `sample_ids`, evaluated on the same samples."""
    import runpy

    config = runpy.run_path(str(REPO / "configs" / "grpo.py"))["get_config"]()
    config.mode = "sft"
    config.workdir = workdir
    config.data.sample_ids = ",".join(sample_ids)
    config.data.max_samples = 0  # every training sample to pick from (the main job keeps a pool of 5)
    config.sft.num_steps = steps
    config.sft.batch_size = batch_size or len(sample_ids)
    config.sft.learning_rate = learning_rate
    config.train.num_steps = 0
    config.train.save_every = steps
    config.train.progress = False
    config.eval.every = 0
    config.eval.source = config.data.train_file
    config.eval.sample_ids = config.data.sample_ids
    config.eval.heldout = "all"  # the training samples themselves (the main job's eval is held-out only)
    config.eval.train_turns = 0
    config.eval.max_turns = 0
    config.eval.batch_size = 8
    config.wandb.mode = "disabled"
    return config


def run(samples: int, steps: int, learning_rate: float, workdir: str, batch_size: int = 0) -> dict[str, Any]:
    """Trains, evaluates the run's own checkpoint, returns the numbers."""
    from toolrl.main import evaluate, train
    from toolrl.rl.config import validate
    from toolrl.rl.metrics import read_metrics

    probe = memorisation_config([], steps, learning_rate, workdir)  # all samples, to pick from
    ids = pick_samples(probe, samples)
    config = memorisation_config(ids, steps, learning_rate, workdir, batch_size)
    validate(config)
    train(config)
    trained = time.perf_counter()
    records = [r for r in read_metrics(Path(workdir) / "metrics.jsonl") if "sft/nll" in r]
    config.mode = "eval"
    config.eval.checkpoint = workdir
    report = evaluate(config)
    overall = report.overall("all")
    result = {
        "samples": ids, "sft_steps": steps, "sft_batch_size": config.sft.batch_size, "learning_rate": learning_rate,
        "nll_first": records[0]["sft/nll"], "nll_last": records[-1]["sft/nll"],
        "sft_tokens_per_step": records[-1]["sft/tokens"],
        "turns": overall.turns, "turns_right": round(overall.turn_accuracy * overall.turns),
        "turn_accuracy": overall.turn_accuracy, "call_accuracy": overall.call_accuracy,
        "success_rate": overall.success_rate,
        # the SFT steps' own time (a resumed run's earlier steps included; loading and compiling not)
        "train_seconds": sum(r.get("time/step_s", 0.0) for r in records),
        "eval_seconds": time.perf_counter() - trained,
        "errors": {k: v for k, v in overall.errors.items() if v},
    }
    return result


def main(argv: list[str]) -> None:
    del argv
    result = run(_SAMPLES.value, _STEPS.value, _LR.value, _WORKDIR.value, _BATCH.value)
    out = Path(_OUT.value)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"memorisation: {result['turns_right']}/{result['turns']} turns right "
          f"({100 * result['turn_accuracy']:.0f}%), SFT nll {result['nll_first']:.3f} -> {result['nll_last']:.4f}")


if __name__ == "__main__":
    app.run(main)

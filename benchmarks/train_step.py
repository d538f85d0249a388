"""Seconds per GRPO step (rollout, reward, update separately) and tokens/s at a config.

    python benchmarks/train_step.py                       # configs/grpo.py (SmolLM2-135M, CPU sizing)
    python benchmarks/train_step.py --bench_config=configs/tiny.py --steps=5

Runs `--warmup` GRPO steps (compilation) then `--steps` measured steps in a scratch workdir, with no
SFT warm start, checkpoints or W&B, and prints one JSON line of means over the measured steps.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

from absl import app, flags

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("WANDB_MODE", "disabled")

FLAGS = flags.DEFINE_string("bench_config", "configs/grpo.py", "config file")
STEPS = flags.DEFINE_integer("steps", 3, "measured GRPO steps")
WARMUP = flags.DEFINE_integer("warmup", 1, "unmeasured steps (compilation)")


def main(argv):
    del argv
    import numpy as np

    from toolrl.main import train
    from toolrl.rl.config import config_from_file, validate
    from toolrl.rl.metrics import read_metrics

    config = config_from_file(FLAGS.value)
    with tempfile.TemporaryDirectory() as tmp:
        config.workdir = tmp
        config.sft.num_steps = 0
        config.train.num_steps = WARMUP.value + STEPS.value
        config.train.save_every = 10**9  # the final step still saves once (not part of step times)
        config.train.progress = False
        config.wandb.mode = "disabled"
        validate(config)
        info = train(config)
        records = read_metrics(info.metrics)[WARMUP.value:]
    keys = ["time/rollout_s", "time/reward_s", "time/update_s", "time/step_s", "time/generate_tokens_per_s",
            "time/train_tokens_per_s", "rollout/generated_tokens"]
    out = {k.split("/")[-1]: float(np.mean([r[k] for r in records])) for k in keys}
    out.update(config=FLAGS.value, measured_steps=len(records),
               batch=config.rollout.prompts_per_step * config.rollout.group_size,
               max_seq_len=config.rollout.max_seq_len, max_new_tokens=config.rollout.max_new_tokens,
               max_turns=config.rollout.max_turns)
    print(json.dumps(out))


if __name__ == "__main__":
    app.run(main)

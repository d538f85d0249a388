"""Reward ablation, paper family, mode "binary" (DESIGN.md, "Graduated reward" / ablation modes).

binary: 1 only when the whole episode is exactly right, else 0 (the sparse baseline).

Everything else is configs/grpo.py (the CPU-sized GRPO job on SmolLM2-135M), so the four ablation
configs differ ONLY in reward.mode. Run one with

    python -m toolrl.main --config=configs/ablations/binary.py --config.seed=0

or the whole sweep (4 modes x seeds, evaluation, resumable) with ``python -m experiments.run_ablation``.
"""

import runpy
from pathlib import Path


def get_config():
    config = runpy.run_path(str(Path(__file__).resolve().parents[1] / "grpo.py"))["get_config"]()
    config.reward.family = "paper"  # the seed paper's per-episode formula, which its ablation used
    config.reward.mode = "binary"
    config.workdir = "artifacts/runs/ablations/binary"
    config.wandb.run_name = "ablation-binary"
    return config

"""Reward ablation, paper family, mode "graduated" (DESIGN.md, "Graduated reward" / ablation modes).

graduated: 0.5 R_atomic + 0.5 R_orch, the paper's full reward.

Everything else is configs/grpo.py (the CPU-sized GRPO job on SmolLM2-135M), so the four ablation
configs differ ONLY in reward.mode. Run one with

    python -m toolrl.main --config=configs/ablations/graduated.py --config.seed=0

or the whole sweep (4 modes x seeds, evaluation, resumable) with ``python -m experiments.run_ablation``.
"""

import runpy
from pathlib import Path


def get_config():
    config = runpy.run_path(str(Path(__file__).resolve().parents[1] / "grpo.py"))["get_config"]()
    config.reward.family = "paper"  # the seed paper's per-episode formula, which its ablation used
    config.reward.mode = "graduated"
    config.workdir = "artifacts/runs/ablations/graduated"
    config.wandb.run_name = "ablation-graduated"
    return config

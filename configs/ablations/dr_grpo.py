"""Ablation: Dr.GRPO (Liu et al. 2025) — no std scaling of advantages, constant loss normaliser,
symmetric clip; compare with the default (std-scaled, token-mean, clip-higher).

    python -m toolrl.main --config=configs/ablations/dr_grpo.py
"""

from pathlib import Path

from toolrl.rl.config import config_from_file


def get_config():
    config = config_from_file(Path(__file__).resolve().parents[1] / "grpo.py")
    config.grpo.scale_by_std = False
    config.grpo.aggregation = "constant"
    config.grpo.epsilon_high = 0.2
    config.workdir = "artifacts/runs/ablation_dr_grpo"
    return config

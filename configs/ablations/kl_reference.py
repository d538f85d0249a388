"""Ablation: KL to the frozen post-SFT reference (k3, beta = 0.04 as in DeepSeekMath) instead of none.

    python -m toolrl.main --config=configs/ablations/kl_reference.py
"""

from pathlib import Path

from toolrl.rl.config import config_from_file


def get_config():
    config = config_from_file(Path(__file__).resolve().parents[1] / "grpo.py")
    config.grpo.beta = 0.04
    config.workdir = "artifacts/runs/ablation_kl_reference"
    return config

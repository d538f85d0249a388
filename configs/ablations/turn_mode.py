"""Ablation: turn mode — one assistant turn from a golden history prefix, scored by the `turn` reward
(the ComplexFuncBench protocol's unit), instead of whole episodes against the environment.

    python -m toolrl.main --config=configs/ablations/turn_mode.py
"""

from pathlib import Path

from toolrl.rl.config import config_from_file


def get_config():
    config = config_from_file(Path(__file__).resolve().parents[1] / "grpo.py")
    config.rollout.mode = "turn"
    config.reward.family = "turn"
    config.workdir = "artifacts/runs/ablation_turn_mode"
    return config

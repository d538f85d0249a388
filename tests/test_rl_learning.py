"""GRPO learns: on the tiny random model, a few dozen steps on one easy task raise the mean reward.

The easy task: one prompt, reward = share of generated tokens that are "<" (the first character of a
tool call). A random policy emits it ~1/128 of the time; the whole trainer (rollout, advantages,
clipped loss, optimizer, checkpoints) must push that up.
"""

from __future__ import annotations

import numpy as np
import pytest

from toolrl.rewards.registry import RewardOutput

TARGET = ord("<")


def _target_share(batch) -> RewardOutput:
    shares = []
    for ids, flags in batch.rows:
        generated = np.asarray([t for t, f in zip(ids, flags) if f])
        shares.append(float((generated == TARGET).mean()) if generated.size else 0.0)
    reward = np.asarray(shares, np.float32)
    return RewardOutput(reward, {"target_share": reward}, np.zeros((len(reward), 1), np.int32),
                        np.zeros(len(reward), np.int32))


@pytest.mark.slow
def test_grpo_raises_reward_on_easy_task(tmp_path):
    import importlib.util
    from pathlib import Path

    from toolrl.main import train
    from toolrl.rl.config import validate
    from toolrl.rl.metrics import read_metrics

    spec = importlib.util.spec_from_file_location("tiny", Path(__file__).resolve().parents[1] / "configs" / "tiny.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    config.workdir = str(tmp_path / "run")
    config.data.max_samples = 1
    config.sft.num_steps = 0
    config.train.num_steps = 30
    config.train.save_every = 100
    config.rollout.group_size = 8
    config.rollout.prompts_per_step = 2
    config.rollout.max_turns = 1
    config.rollout.max_new_tokens = 8
    config.data.drop_unfit = False  # the task here is the token reward, not the golden trajectory
    config.grpo.mask_truncated = False  # 8 tokens never end a turn
    config.optim.learning_rate = 1e-2
    config.grpo.beta = 0.0
    config.wandb.mode = "disabled"
    validate(config)
    info = train(config, reward_fn=_target_share)
    records = read_metrics(info.metrics)
    rewards = [r["reward/mean"] for r in records]
    assert len(rewards) == 30
    first, last = np.mean(rewards[:5]), np.mean(rewards[-5:])
    assert last > first + 0.2, rewards

"""SFT only: next-token training on whole golden episodes of the training traces (the GRPO warm start).

    python -m toolrl.main --config=configs/sft.py
    python -m toolrl.main --config=configs/grpo.py --config.sft.num_steps=0 \
        --config.model.init_checkpoint=artifacts/runs/sft       # GRPO from this SFT run
"""

from toolrl.rl.config import base_config


def get_config():
    config = base_config()
    config.mode = "sft"
    config.workdir = "artifacts/runs/sft"
    config.data.max_steps_per_sample = 3
    # 17 of the 30 episodes need an id the 300-character response view cuts; they are dropped.
    config.data.min_fit = 0.4
    config.rollout.max_seq_len = 1536  # SFT trains on whole episodes: all 30 fit (the longest needs 1,531)
    config.rollout.max_new_tokens = 512  # a golden turn needs up to 486 tokens
    config.sft.num_steps = 50
    config.sft.batch_size = 4
    config.sft.learning_rate = 5e-5
    config.train.num_steps = 0
    config.train.save_every = 25
    return config

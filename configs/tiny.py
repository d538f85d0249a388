"""The GRPO job on the tiny random model (CharTokenizer): the whole pipeline in seconds, for tests.

    python -m toolrl.main --config=configs/tiny.py
"""

from toolrl.rl.config import base_config


def get_config():
    config = base_config()
    config.workdir = "artifacts/runs/tiny"
    config.model.preset = "tiny"
    config.data.max_samples = 4
    config.data.max_steps_per_sample = 3
    config.data.response_max_chars = 120
    # 2 of the 4 episodes need an id that a 120-character view cuts: the fit report drops them.
    config.data.min_fit = 0.5
    config.data.tool_view = "signature"
    config.data.max_distractors = 0
    config.rollout.group_size = 4
    config.rollout.prompts_per_step = 2
    # Characters are tokens: a golden turn needs up to ~620 of them, a whole episode ~2,400.
    config.rollout.max_turns = 3
    config.rollout.max_new_tokens = 640
    config.rollout.max_seq_len = 2560
    config.rollout.pad_multiple = 128
    # A random model never ends a turn: train on its truncated turns anyway (a pipeline check).
    config.grpo.mask_truncated = False
    config.sft.num_steps = 2
    config.sft.batch_size = 2
    config.sft.learning_rate = 1e-3
    config.optim.learning_rate = 1e-3
    config.train.num_steps = 4
    config.train.save_every = 2
    config.train.progress = False
    config.wandb.mode = "offline"
    return config

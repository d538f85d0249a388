"""GRPO on the bundled SmolLM2-135M-Instruct, sized to finish within 20 minutes on 2 CPU cores.

    python -m toolrl.main --config=configs/grpo.py [--config.field=value ...]

A short SFT warm start on golden turns (sft.num_steps) teaches the tool-call format, then GRPO with
the corrected episode reward. Prompts list only the candidate tools as one-liners and tool responses
are cut short, so episodes fit in 512 tokens. Every field is documented in toolrl/rl/config.py;
scale up on an accelerator with e.g. --config.rollout.group_size=8 --config.train.num_steps=500
--config.data.tool_view=full --config.rollout.max_seq_len=4096 --config.model.dtype=bfloat16.
"""

from toolrl.rl.config import base_config


def get_config():
    config = base_config()
    config.workdir = "artifacts/runs/grpo"
    config.model.preset = "smollm2_135m"
    config.data.max_steps_per_sample = 3  # short tasks: 2-3 golden calls
    config.data.max_distractors = 1  # + 1 distractor tool per prompt (the benchmark shows ~4)
    config.data.response_max_chars = 200  # tool responses cut to 200 characters in prompts
    config.rollout.group_size = 4
    config.rollout.prompts_per_step = 2
    config.rollout.max_turns = 2
    config.rollout.max_new_tokens = 48
    config.rollout.max_seq_len = 512
    config.sft.num_steps = 6
    config.sft.batch_size = 2
    config.sft.learning_rate = 5e-5
    config.grpo.micro_batches = 4  # 2 sequences per backward pass: fits beside other jobs in RAM
    config.optim.learning_rate = 2e-6
    config.train.num_steps = 6
    config.train.save_every = 3
    return config

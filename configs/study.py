"""The decontaminated reward-ablation study at CPU scale (experiments/run_ablation.py --study=...).

    python -m experiments.study_data                                   # the decontaminated data, once
    python -m toolrl.main --config=configs/study.py --config.mode=check   # fit of every budget
    python -m experiments.run_ablation --config_file=configs/study.py --study=decontaminated

Training tasks: the synthesized ``toolrl_traces`` train split grown from a response cache that holds
no eval_100 call, plus the authors' bfcl_training samples; any sample still calling an eval_100 golden
call is dropped (``data.decontaminate``). GRPO runs in turn mode (one scored turn after the golden
history, the benchmark's unit). Held-out evaluation: the synthesized test split (whole workflows held
out) during training, and eval_100's complete-history turns after it. Variants as configs/grpo.py
(``configs/study.py:atomic``); the arms are reward modes of the ``turn`` family.
"""

from configs import grpo
from toolrl.data import natural

STAMP = natural.NATURAL_STAMP  # what the natural data is stamped with (toolrl.data.provenance)


def study_dir() -> str:
    """Where experiments/study_data.py writes the decontaminated cache and traces ($TOOLRL_HOME/study)."""
    return str(natural.study_dir())


def get_config(arg=None):
    config = grpo.get_config("turn")
    config.workdir = "artifacts/runs/study"
    config.wandb.run_name = "study"
    d = config.data
    d.train_file = "synthetic:train,bfcl_training"
    # The natural-query data (experiments.study_data): queries a person would write, every domain, only
    # ids/tokens/coordinates bound to responses. The first study's data ("tfds") had numbered step lists.
    d.synth_dir = str(natural.natural_dir())
    d.synth_stamp = STAMP
    d.decontaminate = "eval_100"
    d.max_samples = 0  # every sample (the main job keeps a pool of 5)
    d.subset = "first"
    # Up to 6 calls: Car-Rental and Flights traces need 3-5 (two lookups, a search, a follow-up); at 4 the
    # natural data kept 21 Car-Rental and 11 Flights samples of 352, at 6 it keeps 95 and 56 of 681.
    d.max_steps_per_sample = 6
    d.max_distractors = 1
    # Responses shown up to 600 characters, salient fields first (data.response_keep): at 200 characters
    # 72% of the scored turns needed an id the view had cut (unsolvable by construction); at 600, 19%.
    d.response_max_chars = 600
    d.response_max_list_items = 2
    # The budgets below fit >= 95% of the tasks; what keeps the figure lower is the view (a needed value
    # beyond the first two list items or past the cut), and those tasks are dropped and counted.
    d.min_fit = 0.45  # natural data: 331 of 681 SFT episodes fit (332 need an id beyond the 2-item view)
    r = config.rollout
    r.group_size = 4
    r.prompts_per_step = 2
    r.max_turns = 3
    r.max_new_tokens = 256
    r.max_seq_len = 2048  # 6-call golden episodes with 600-character responses
    # Recompute each layer in the backward pass: a 2,048-token SFT row took the process to 19.6 GB without
    # it (OOM-killed on a 24 GB machine); the gradient is the same.
    config.model.remat = True
    r.temperature = 1.0
    config.sft.num_steps = 0
    config.sft.batch_size = 1
    config.sft.learning_rate = 5e-5
    config.optim.learning_rate = 1e-5  # the pilot's: reward 0.21 -> 0.55 over 4 steps at 1e-5
    config.train.num_steps = 8
    config.train.save_every = 4  # a killed run resumes from its last multiple of 4
    # One row per backward pass: two 1,536-token rows per chunk took the process past 23 GB (OOM-killed).
    config.grpo.micro_batches = 8
    # A group's golden history packed once with its 4 rollouts: the same loss and gradient (graduated
    # seed 0's first 3 steps: equal losses, grad norms to 6 digits, rewards), updates 1.3-2x faster.
    # Runs before orchestration seed 0 used the plain packed path.
    config.grpo.shared_prefix = True
    e = config.eval
    e.source = "synthetic:test"
    e.heldout = "all"  # the split is held out by construction (split="entries"); the main job's is "novel"
    e.train_turns = 0
    e.batch_size = 16
    e.max_turns = 24
    e.max_new_tokens = 0
    e.every = 4
    return grpo.apply(config, arg)

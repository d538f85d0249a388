"""Entry point: ``python -m toolrl.main --config=configs/grpo.py [--config.field=value ...]``.

Dispatches on ``config.mode``: "grpo" (SFT warm start if sft.num_steps > 0, then GRPO), "sft", or
"eval" (configs/eval.py: the evaluator's ``run_evaluation`` with this model as the policy). Prints
where the checkpoints, the metrics log and the W&B run are.
"""

from __future__ import annotations

import os
import time
from typing import Any

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", "configs/grpo.py", "Training configuration file.")


def build_mesh(config: Any):
    """The (data, fsdp, tensor) mesh over all devices (all hosts) from config.mesh."""
    import jax

    from toolrl.models.sharding import make_mesh
    from toolrl.rl.config import validate_for_devices

    data, fsdp, tensor = validate_for_devices(config, jax.device_count())
    return make_mesh(data, fsdp, tensor)


def build_environment(config: Any):
    from toolrl.env.booking import BookingEnvironment, ViewPolicy

    view = ViewPolicy(max_list_items=config.data.response_max_list_items or None,
                      max_chars=config.data.response_max_chars or None)
    return BookingEnvironment.from_default(data_dir=config.data.data_dir or None, view=view)


def train(config: Any, reward_fn: Any = None, stop_after: int | None = None):
    """Builds everything from a validated config and runs the trainer. Returns its RunInfo."""
    from toolrl.rl.chat_format import chat_format_for
    from toolrl.rl.data import load_tasks
    from toolrl.rl.policy_model import load_policy
    from toolrl.rl.trainer import Trainer

    mesh = build_mesh(config)
    # Not under jax.set_mesh: the loader places each tensor with its logical-axis sharding itself.
    model, tokenizer, model_config = load_policy(config.model.preset, config.model.path, config.model.dtype,
                                                 mesh, config.seed)
    tasks = load_tasks(config.data.data_dir, config.data.train_file, config.data.max_samples,
                       config.data.max_steps_per_sample, config.data.max_distractors, config.data.synth_dir)
    trainer = Trainer(config, model, chat_format_for(tokenizer, model_config), build_environment(config), tasks,
                      mesh, reward_fn=reward_fn)
    return trainer.run(progress=config.train.progress, stop_after=stop_after)


def evaluate(config: Any) -> Any:
    """mode == "eval": wraps the model as the evaluator's batched policy and runs run_evaluation."""
    from toolrl.eval.evaluator import run_evaluation
    from toolrl.rl.policy import make_eval_policy

    policy = make_eval_policy(config)
    report = run_evaluation(config, policy)
    print(report)
    return report


def main(argv: list[str]) -> None:
    del argv
    config = _CONFIG.value
    # configs/eval.py is the evaluator's flat config: recognised by mode == "eval" or its `split` field.
    if config.get("mode", "") == "eval" or ("split" in config and "rollout" not in config):
        evaluate(config)
        return
    from toolrl.rl.config import validate

    validate(config)
    if config.distributed:
        import jax

        jax.distributed.initialize()
    started = time.perf_counter()
    info = train(config)
    minutes = (time.perf_counter() - started) / 60
    print(f"\nfinished step {info.final_step} in {minutes:.1f} min")
    print(f"checkpoints: {info.checkpoints}")
    print(f"metrics:     {info.metrics}")
    print(f"wandb:       {info.wandb}")


if __name__ == "__main__":
    os.environ.setdefault("WANDB_SILENT", "true")
    logging.set_verbosity(logging.WARNING)
    app.run(main)

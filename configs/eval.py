"""Evaluation on ComplexFuncBench (toolrl.eval): which data, which model, where results go.

Usage: ``python -m toolrl.main --config=configs/eval.py`` (main.py builds the policy from ``model_name``
/ ``checkpoint`` and calls ``toolrl.eval.run_evaluation(config, policy)``), or score a predictions file
with ``python -m toolrl.eval.score --predictions FILE``.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    # Benchmark data directory; "" = $TOOLRL_DATA_DIR, else ../shared/data/complexfuncbench.
    config.data_dir = ""
    # What to evaluate: "eval_100" (the paper's 100-sample split, 20 per domain), "bfcl_training"
    # (synthesized samples: a sanity check, all responses recorded), or a path: *.jsonl = the full
    # ComplexFuncBench JSONL (1,000 samples, turns given), other files = trace files like eval_100.
    config.split = "eval_100"
    # Keep the first N samples; 0 = all.
    config.max_samples = 0
    # The policy: a HF-style directory or orbax checkpoint to load ("" = the config's default model),
    # and a name for the results.
    config.checkpoint = ""
    config.model_name = "smollm2-135m-instruct"
    # Generation budget per request; tool calls with long arguments (flight legs) need a few hundred.
    config.max_new_tokens = 512
    # Requests per policy call (one batch of generation).
    config.batch_size = 16
    # Rounds per scored turn: after a round of only free (location lookup) calls the policy sees their
    # responses and continues; 3 covers the benchmark's free-only turn followed by its main turn.
    config.max_rounds = 3
    # Count a call right when the cache answers it exactly like the golden call (ComplexEval's
    # response-based match). Needs the response cache (built from the bundled traces on first use).
    config.response_equivalence = True
    config.cache_path = ""  # "" = the default cache under $TOOLRL_HOME
    # How golden responses are shown in prompts (toolrl.env.booking.ViewPolicy); 0 = no limit.
    config.view = ml_collections.ConfigDict()
    config.view.max_list_items = 5
    config.view.max_chars = 6000
    # Optional LLM judge (ComplexEval's last resort). Off by default; enabling it without an endpoint
    # is an error (toolrl.eval.judge).
    config.judge = ml_collections.ConfigDict()
    config.judge.enabled = False
    config.judge.endpoint = ""
    config.judge.model = ""
    # Where eval_results.json and eval_by_domain.png go; "" = nowhere.
    config.output_dir = "runs/eval"
    return config


def validate(config: ml_collections.ConfigDict) -> None:
    """Reject contradictory settings with a message naming the fields."""
    if config.max_rounds < 1:
        raise ValueError(f"eval.max_rounds must be >= 1, got {config.max_rounds}")
    if config.batch_size < 1:
        raise ValueError(f"eval.batch_size must be >= 1, got {config.batch_size}")
    if config.max_samples < 0:
        raise ValueError(f"eval.max_samples must be >= 0 (0 = all), got {config.max_samples}")
    if config.judge.enabled and not config.judge.endpoint:
        raise ValueError("eval.judge.enabled is True but eval.judge.endpoint is empty")

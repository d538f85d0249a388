"""The training configuration: one `ml_collections.ConfigDict` schema, its defaults, and `validate`.

`configs/*.py` start from `base_config()` and override what they need; every field is documented
here once. `validate(config)` rejects contradictions with a message naming the fields, before any
model is loaded.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import ml_collections

from toolrl import games
from toolrl.rewards.registry import registered_families
from toolrl.rewards.types import MODES as REWARD_MODES
from toolrl.rl.grpo import AGGREGATIONS

MODES = ("grpo", "sft", "eval", "check", "plan")
TOOL_VIEWS = ("compact", "signature", "full")


def base_config() -> ml_collections.ConfigDict:
    """Defaults: the CPU-sized GRPO job on the bundled SmolLM2-135M (see configs/grpo.py)."""
    c = ml_collections.ConfigDict()
    # "grpo" (SFT warm start if sft.num_steps > 0, then GRPO), "sft" only, "eval" (evaluate a run's
    # workdir, or the configured model, with config.eval), "check" (print the fit report and stop).
    c.mode = "grpo"
    c.seed = 0  # Seeds data order, sampling and init; resume is exact because all are derived from it.
    c.workdir = "artifacts/runs/grpo"  # Checkpoints, metrics.jsonl and the W&B run live here.
    c.distributed = False  # Call jax.distributed.initialize() first (multi-host TPU/GPU slices).

    c.model = ml_collections.ConfigDict()
    c.model.preset = "smollm2_135m"  # Bundled preset name for load_pretrained ("tiny" = random, tests).
    c.model.path = ""  # HF safetensors directory, or hf:Org/Name[@revision] (downloaded once); overrides `preset`.
    # Compute dtype (bfloat16 on TPU/GPU). Parameters and AdamW moments always stay float32.
    c.model.dtype = "float32"
    c.model.init_checkpoint = ""  # An earlier run's workdir (e.g. an SFT run) to start from.
    # Execution options (same numbers): "xla" einsum attention or "dot_product_attention"
    # (jax.nn.dot_product_attention: cuDNN flash on GPU); remat = recompute each layer in the backward
    # pass (activation memory / layers, ~1/3 more compute).
    c.model.attention_impl = "xla"
    # Execution option (same numbers): C > 0 runs "xla" attention over the queries C rows at a time, so
    # a long prefill holds [B, H, C, S] scores, not [B, H, T, S] (4096-token prompts at batch 8 on
    # SmolLM2-135M: 4.8 GB per float32 copy). 0 = whole. Off by default: it changes the compiled programs.
    c.model.attention_query_chunk = 0
    c.model.remat = False
    # LoRA (toolrl.models.lora, through qwix): rank-r adapters A [in, r], B [r, out] (B = 0 at the start,
    # so training starts from the base model) on the projections of `targets`; only they are trained
    # and the update is scaled by alpha / rank. rank 0 = full fine-tuning. Merged into the kernels on export.
    c.model.lora = ml_collections.ConfigDict()
    c.model.lora.rank = 0
    c.model.lora.alpha = 16.0  # alpha / rank = 1 at rank 16 (the LoRA paper's scaling)
    c.model.lora.targets = "attn,mlp"  # comma-separated: "attn" (q, k, v, o), "mlp" (gate, up, down)

    c.mesh = ml_collections.ConfigDict()
    # Mesh shape (data, fsdp, tensor); -1 takes the remaining devices. Batch is split over data·fsdp,
    # parameters over fsdp (and tensor for the heads/mlp axes) by the model's logical-axis rules.
    c.mesh.data = 1
    c.mesh.fsdp = -1
    c.mesh.tensor = 1

    c.data = ml_collections.ConfigDict()
    c.data.data_dir = ""  # ComplexFuncBench directory; "" = $TOOLRL_DATA_DIR or the bundled one.
    # Where the prompts come from: a bundled trace file, or "synthetic:train" for a split of the
    # synthesized toolrl_traces dataset (build it first: python -m toolrl.synth --config=configs/synth.py).
    # Several sources: comma-separated, e.g. "synthetic:train,bfcl_training".
    c.data.train_file = "bfcl_training_3_per_workflow.json"
    # A test source (e.g. "eval_100") whose golden calls no training sample may contain: samples calling
    # any of them are dropped and counted (toolrl.data.contamination). "" = no filter.
    c.data.decontaminate = ""
    c.data.synth_dir = ""  # TFDS directory of toolrl_traces ("" = the default, ~/.cache/toolrl/tfds).
    # Provenance stamp the synthesized data in synth_dir must carry (toolrl.data.provenance); "" = unchecked.
    # A dataset with no stamp or another one is refused in one line naming the command that builds it.
    c.data.synth_stamp = ""
    # True: when data.synth_dir has no dataset (or an older version of the natural data), build the
    # decontaminated natural data there first (toolrl.data.natural, ~1 min on 2 cores) instead of refusing;
    # data.synth_stamp must then be its stamp. The main job sets it so that its set-up stays one command.
    c.data.build_missing = False
    c.data.max_samples = 0  # Use only N samples (0 = all); small values make easy tasks.
    # Which N: "first" (source order) or "balanced" (round-robin over domains, shuffled with config.seed:
    # toolrl.eval.selection.balanced_subset).
    c.data.subset = "first"
    c.data.sample_ids = ""  # Comma-separated sample ids to train on ("" = all), e.g. the memorisation check.
    c.data.max_steps_per_sample = 0  # Drop samples with more golden calls (0 = keep all).
    # Before training, tasks whose golden trajectory does not fit the budgets (rollout.max_turns,
    # max_new_tokens, max_seq_len) are counted and dropped; fewer than this share fitting is an error.
    c.data.min_fit = 0.9
    c.data.drop_unfit = True  # False: keep tasks that cannot fit (reported only; for custom rewards)
    # "compact": only the candidate tools, as one line name(param: type, ...) each — short prompts for
    # the CPU; "full": their JSON schemas, as the benchmark shows them.
    c.data.tool_view = "compact"  # ("signature": the one-liners without descriptions)
    c.data.max_distractors = -1  # Candidate tools no golden step uses, kept per prompt (-1 = all).
    # View policy for tool responses in prompts (training AND evaluation): chars of JSON, list items.
    c.data.response_max_chars = 300
    c.data.response_max_list_items = 2
    # A response longer than response_max_chars first keeps only its salient fields (ids, slugs, keys,
    # tokens, names, types, coordinates: toolrl.env.booking.SALIENT_KEYS), so the values later calls
    # copy survive the cut; "all" = a plain cut (most multi-step tasks then need a value the view lost).
    c.data.response_keep = "salient"

    c.rollout = ml_collections.ConfigDict()
    # The game the policy plays in training (toolrl.games, a trainable one): "episode" (a sample free-running
    # against the cached environment) or "turn" (one scored turn after its golden history, the evaluator's
    # `turn` game). reward.family must score the input it produces (derived from the two registries).
    c.rollout.game = "episode"
    c.rollout.mode = ""  # Deprecated name of rollout.game (one release): validate() moves it there, with a warning.
    c.rollout.group_size = 4  # G samples per prompt (GRPO group).
    c.rollout.prompts_per_step = 2  # Prompts per GRPO step; the batch is prompts_per_step · G.
    # Assistant turns per episode (episode mode) or rounds per scored turn (turn mode: the evaluator's
    # rounds, a round of only free location lookups gets their responses and another round).
    c.rollout.max_turns = 3
    c.rollout.max_new_tokens = 64  # Tokens per assistant turn; a turn cut here is marked truncated.
    c.rollout.max_seq_len = 512  # Whole trajectory (prompt + turns + responses), tokens.
    # Prompts are left-padded to a multiple of this for generation, and update batches to a multiple
    # of it: one compiled program per width.
    c.rollout.pad_multiple = 64
    # Sampling temperature; the trainer's log-probs use the same T, so the ratio stays on-policy.
    c.rollout.temperature = 1.0
    # Truncated sampling (0 / 1.0 = off). With either on, the trainer's log-probs describe the
    # untruncated tempered distribution, so the importance ratio is approximate.
    c.rollout.top_k = 0
    c.rollout.top_p = 1.0

    c.reward = ml_collections.ConfigDict()
    c.reward.family = "episode"  # Registry family: "paper", "episode" or "turn" (docs/design.md, "Rewards").
    c.reward.mode = "graduated"  # Ablation mode: "graduated", "atomic", "orchestration", "binary".
    c.reward.atomic_weight = 0.5  # w_a in R = w_a · R_atomic + w_o · R_orch (paper: 0.5).
    c.reward.orchestration_weight = 0.5  # w_o (paper: 0.5).
    # family "paper" only: "ours" (the formula with the documented fixes) or "official" (the authors'
    # scorer reproduced exactly, its bugs included).
    c.reward.paper_compat = "ours"

    c.grpo = ml_collections.ConfigDict()
    c.grpo.epsilon_low = 0.2  # Ratio floor 1 - eps_low (PPO/GRPO).
    c.grpo.epsilon_high = 0.28  # Ratio ceiling 1 + eps_high (DAPO clip-higher).
    c.grpo.beta = 0.0  # k3 KL weight to the frozen reference; 0 skips the reference and its memory.
    c.grpo.aggregation = "token_mean"  # "token_mean" (DAPO), "sequence_mean" (GRPO), "constant" (Dr.GRPO).
    c.grpo.scale_by_std = True  # Divide advantages by the group std (False = Dr.GRPO).
    c.grpo.mask_degenerate = True  # Drop groups whose rewards are all equal from the loss.
    # Drop rows with a turn cut by max_new_tokens (or out of context) from the loss (DAPO's overlong
    # filtering): the budget, not the policy, ended them.
    c.grpo.mask_truncated = True
    c.grpo.num_iterations = 1  # Updates per rollout batch (mu); >1 makes the ratio/clip matter.
    # The old policy's log-probs (the ratio's denominator): "trainer" = the trainer's own pass before the
    # first update (with one update: the current policy's, ratio 1); "sampler" = the log-probs the sampler
    # computed while generating, when their max absolute difference from the trainer's pass at the loss
    # positions is within old_logprobs_tolerance (else the trainer's; grpo/sampler_logp_* logged). Measured
    # on SmolLM2-135M rollouts (CPU): at most 4e-5 apart in float32, 0.15-0.18 under bfloat16 compute
    # (KV-cache decode vs the full forward round differently), so bf16 runs fall back at 1e-2.
    c.grpo.old_logprobs = "trainer"
    c.grpo.old_logprobs_tolerance = 1e-2
    c.grpo.micro_batches = 1  # Gradient accumulation chunks per update (memory / micro_batches).
    # LM head + log-softmax only at the loss positions (policy tokens) instead of every position;
    # same loss and gradient (False: the plain path, for comparison).
    c.grpo.loss_positions_only = True
    # Prefix Grouper: rows sharing a prompt are packed into one row (prompt once, each completion
    # attending to it under a block mask) when that is less work; same loss and gradient. Off by
    # default: the decoder's dense [T, T] attention pays for a packed row's masked pairs and packed
    # rows are capped to a micro-batch's memory at max_seq_len. On CPU it made episode updates ~25%
    # faster (benchmarks/train_step.py --compare) and turn-mode updates of configs/study.py 1.3-2x.
    c.grpo.shared_prefix = False

    c.optim = ml_collections.ConfigDict()
    c.optim.learning_rate = 2e-6
    c.optim.warmup_steps = 0
    c.optim.weight_decay = 0.0
    c.optim.b1 = 0.9
    c.optim.b2 = 0.99
    c.optim.grad_clip = 1.0  # Global-norm clip; 0 disables.

    c.sft = ml_collections.ConfigDict()
    c.sft.num_steps = 10  # Warm-start steps on golden turns before GRPO (0 = none).
    c.sft.batch_size = 4  # Golden episodes per SFT step.
    c.sft.learning_rate = 5e-5

    c.train = ml_collections.ConfigDict()
    c.train.num_steps = 10  # GRPO steps (after the SFT warm start).
    c.train.save_every = 5  # Checkpoint every N steps (and at the end of each phase).
    c.train.keep = 2  # Checkpoints kept.
    c.train.log_every = 1  # Metrics records every N steps.
    c.train.progress = True  # rich progress bar on stdout.
    # Continue a workdir whose saved settings differ from this config (otherwise an error naming them).
    c.train.allow_config_change = False
    # A step whose loss, gradient norm or rewards are not finite stops the run (one line naming the step
    # and the quantity; the last good checkpoint stays the latest). True: skip such a step instead (no
    # update, its data consumed) and count it in train/skipped_nonfinite.
    c.train.skip_nonfinite = False

    c.wandb = ml_collections.ConfigDict()
    c.wandb.project = "toolrl"
    c.wandb.entity = ""
    # "auto": online when the user has logged in to W&B (WANDB_API_KEY or a netrc entry), else
    # offline; "online", "offline" or "disabled" force it. WANDB_MODE in the environment wins.
    c.wandb.mode = "auto"
    c.wandb.run_name = ""

    # Evaluation (ComplexFuncBench protocol, toolrl.eval). Prompts use the training view: data.tool_view,
    # data.response_max_chars / response_max_list_items, data.max_distractors.
    c.eval = ml_collections.ConfigDict()
    # The game evaluation plays (toolrl.games, an evaluable one). "turn": each scored turn after its golden
    # history, our matching rules (the game training's turn rollouts play). "benchmark" (old name
    # "official"): each sample free-running as the benchmark's own runner and rules score it (Success Rate,
    # Call Accuracy, the benchmark's turn count), comparable with published numbers (toolrl/eval/official.py).
    c.eval.game = "turn"
    c.eval.protocol = ""  # Deprecated name of eval.game (one release): validate() moves it there, with a warning.
    # Which samples: "eval_100", "bfcl_training", "synthetic:SPLIT", or a file (*.jsonl = the full benchmark).
    c.eval.source = "eval_100"
    c.eval.max_samples = 0  # First N samples (0 = all).
    c.eval.sample_ids = ""  # Comma-separated sample ids to evaluate ("" = all).
    # N scored turns with complete golden history, drawn stratified by domain with eval.subset_seed
    # (toolrl.eval.selection; eval.subset="first" takes the first N in source order); 0 = all scored turns.
    c.eval.max_turns = 0
    c.eval.subset = "stratified"
    c.eval.subset_seed = 0
    # "novel": only turns whose required call set is no training turn's (data.train_file as the trainer
    # loads it); held-out means unseen. "all": every scored turn.
    c.eval.heldout = "all"
    c.eval.complete_only = False  # keep only turns with a complete golden history (implied by max_turns, novel)
    c.eval.every = 0  # During training: evaluate every N steps (and at the start and the end); 0 = never.
    # With eval.every: also evaluate N scored turns of the run's own training tasks (complete history,
    # stratified by domain with eval.subset_seed), logged as eval_train/*: what the run learned on what it
    # trained on, beside the held-out figure (a gain only there is memorisation). 0 = none.
    c.eval.train_turns = 0
    # With eval.every: also evaluate at step 0. False when the starting point is already evaluated (the
    # GRPO runs of a study start from the one evaluated SFT checkpoint, and evaluation is greedy).
    c.eval.at_start = True
    c.eval.max_new_tokens = 0  # Per request; 0 = rollout.max_new_tokens.
    c.eval.max_rounds = 3  # Rounds per scored turn (a round of only free lookups gets another).
    c.eval.batch_size = 16  # Requests per generate call.
    # Count a call right when the cache answers it like the golden call (ComplexEval's response match).
    c.eval.response_equivalence = True
    c.eval.cache_path = ""  # "" = the default cache (built from the bundled traces on first use)
    c.eval.checkpoint = ""  # mode=eval: a run's workdir to evaluate ("" = config.workdir, else the model as configured)
    c.eval.output_dir = ""  # eval_results.json + eval_by_domain.png; "" = <workdir>/eval
    # Optional LLM judge (ComplexEval's last resort); enabling it without an endpoint is an error.
    c.eval.judge = ml_collections.ConfigDict()
    c.eval.judge.enabled = False
    c.eval.judge.endpoint = ""
    c.eval.judge.model = ""
    # Seconds one judge request may take in all (connect, send, every read of a slow reply), and how many
    # times a failed request is repeated; a call whose requests all fail stays undecided.
    c.eval.judge.timeout = 60.0
    c.eval.judge.retries = 2

    # Ahead-of-time plan (python -m toolrl.plan): the GRPO update and the rollout's sampler lowered and
    # compiled for this model and mesh with abstract weights, on simulated CPU devices standing in for
    # `num_devices` accelerators of kind `device`; prints memory per device, FLOPs and a time estimate.
    c.plan = ml_collections.ConfigDict()
    c.plan.device = "h100"  # Accelerator kind: h100, h200, a100-80g, v5e, v5p (toolrl.plan.DEVICES).
    c.plan.num_devices = 8  # Devices the plan stands in for; a -1 in the mesh takes what the others leave.
    # Model FLOP utilisation the time estimate assumes (0.3-0.5 is typical of a well-sharded dense update).
    c.plan.mfu = 0.4
    # Share of a device's memory a program may use: the runtime, the allocator and fragmentation keep
    # the rest (XLA's GPU client preallocates 75% unless XLA_PYTHON_CLIENT_MEM_FRACTION says otherwise).
    c.plan.memory_fraction = 0.9
    c.plan.sampler = True  # Also compile the rollout's generate program (prefill + decode loop, KV cache).

    # Persistent XLA compilation cache (toolrl.compilation_cache): a restarted or requeued
    # run, and every process of a multi-host job, reuse compiled programs instead of compiling again.
    c.compile = ml_collections.ConfigDict()
    c.compile.cache_dir = ""  # "" = <workdir>/xla_cache; "off" = no cache; else a directory (or gs://...).
    # Only programs that took at least this long to compile are written (small ones are cheaper to redo).
    c.compile.min_compile_time_secs = 1.0
    c.compile.min_entry_size_bytes = 0  # Only entries at least this large are written (0 = all).
    return c


def config_from_file(path: str | os.PathLike) -> ml_collections.ConfigDict:
    """`get_config()` of a config file by path (ablation configs build on configs/grpo.py this way)."""
    spec = importlib.util.spec_from_file_location(f"_toolrl_config_{Path(path).stem}", path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


class ConfigError(ValueError):
    """An inconsistent configuration; the message names the fields."""


def validate(config: ml_collections.ConfigDict) -> None:
    """Rejects inconsistent settings with a message naming the fields. Raises ConfigError."""
    errors: list[str] = []

    def check(ok: bool, message: str) -> None:
        if not ok:
            errors.append(message)

    check(config.mode in MODES, f"mode={config.mode!r} must be one of {MODES}")
    r, g, o, t, s = config.rollout, config.grpo, config.optim, config.train, config.sft
    families = registered_families()
    check(config.reward.family in families, f"reward.family={config.reward.family!r} must be one of {families}")
    check(config.reward.mode in REWARD_MODES, f"reward.mode={config.reward.mode!r} must be one of {REWARD_MODES}")
    # rollout.game / eval.game against the game registry (the deprecated rollout.mode / eval.protocol
    # moved onto them), and reward.family against the input the rollout's game produces.
    games.resolve_config_names(config, errors)
    check(r.group_size >= 2, f"rollout.group_size={r.group_size} must be >= 2: GRPO normalises within a group")
    check(r.prompts_per_step >= 1, f"rollout.prompts_per_step={r.prompts_per_step} must be >= 1")
    check(r.max_turns >= 1, f"rollout.max_turns={r.max_turns} must be >= 1")
    check(r.max_new_tokens >= 1, f"rollout.max_new_tokens={r.max_new_tokens} must be >= 1")
    check(r.max_seq_len > r.max_new_tokens,
          f"rollout.max_seq_len={r.max_seq_len} must exceed rollout.max_new_tokens={r.max_new_tokens}")
    check(r.temperature > 0, f"rollout.temperature={r.temperature} must be > 0 (sampling; GRPO needs diverse groups)")
    check(r.top_k >= 0, f"rollout.top_k={r.top_k} must be >= 0")
    check(0 < r.top_p <= 1, f"rollout.top_p={r.top_p} must be in (0, 1]")
    check(config.data.max_samples >= 0, f"data.max_samples={config.data.max_samples} must be >= 0 (0 = all)")
    check(0 <= config.data.min_fit <= 1, f"data.min_fit={config.data.min_fit} must be in [0, 1]")
    check(config.reward.get("paper_compat", "ours") in ("ours", "official"),
          f"reward.paper_compat={config.reward.get('paper_compat')!r} must be 'ours' or 'official'")
    e = config.eval
    check(e.every >= 0 and e.max_samples >= 0 and e.max_turns >= 0 and e.max_new_tokens >= 0,
          "eval.every, eval.max_samples, eval.max_turns and eval.max_new_tokens must be >= 0")
    check(e.max_rounds >= 1 and e.batch_size >= 1, "eval.max_rounds and eval.batch_size must be >= 1")
    check(not (e.judge.enabled and not e.judge.endpoint), "eval.judge.enabled=True needs eval.judge.endpoint")
    check(e.judge.get("timeout", 60.0) > 0, f"eval.judge.timeout={e.judge.get('timeout')} must be > 0 seconds")
    check(isinstance(e.judge.get("retries", 2), int) and e.judge.get("retries", 2) >= 0,
          f"eval.judge.retries={e.judge.get('retries')!r} must be an integer >= 0")
    check(e.get("heldout", "all") in ("all", "novel"), f"eval.heldout={e.get('heldout')!r} must be 'all' or 'novel'")
    check(e.get("subset", "stratified") in ("stratified", "first"),
          f"eval.subset={e.get('subset')!r} must be 'stratified' or 'first'")
    check(r.pad_multiple >= 1, f"rollout.pad_multiple={r.pad_multiple} must be >= 1")
    check(0 <= g.epsilon_low < 1, f"grpo.epsilon_low={g.epsilon_low} must be in [0, 1)")
    check(g.epsilon_high >= 0, f"grpo.epsilon_high={g.epsilon_high} must be >= 0")
    check(g.beta >= 0, f"grpo.beta={g.beta} must be >= 0")
    check(g.aggregation in AGGREGATIONS, f"grpo.aggregation={g.aggregation!r} must be one of {sorted(AGGREGATIONS)}")
    check(g.num_iterations >= 1, f"grpo.num_iterations={g.num_iterations} must be >= 1")
    check(g.get("old_logprobs", "trainer") in ("trainer", "sampler"),
          f"grpo.old_logprobs={g.get('old_logprobs')!r} must be 'trainer' or 'sampler'")
    check(g.get("old_logprobs_tolerance", 1e-2) >= 0,
          f"grpo.old_logprobs_tolerance={g.get('old_logprobs_tolerance')} must be >= 0")
    check(g.micro_batches >= 1 and (r.prompts_per_step * r.group_size) % g.micro_batches == 0,
          f"grpo.micro_batches={g.micro_batches} must divide rollout.prompts_per_step·group_size="
          f"{r.prompts_per_step * r.group_size}")
    check(o.learning_rate > 0 and s.learning_rate > 0, "optim.learning_rate and sft.learning_rate must be > 0")
    check(o.warmup_steps >= 0, f"optim.warmup_steps={o.warmup_steps} must be >= 0")
    check(config.reward.atomic_weight >= 0 and config.reward.orchestration_weight >= 0,
          "reward.atomic_weight and reward.orchestration_weight must be >= 0")
    check(config.reward.mode != "graduated" or config.reward.atomic_weight + config.reward.orchestration_weight > 0,
          "reward.mode='graduated' with both reward weights 0 gives a constant reward")
    check(t.num_steps >= 0 and s.num_steps >= 0, "train.num_steps and sft.num_steps must be >= 0")
    check(not (config.mode == "sft" and s.num_steps == 0), "mode='sft' needs sft.num_steps > 0")
    check(not (config.mode == "grpo" and t.num_steps == 0 and s.num_steps == 0), "nothing to do: train.num_steps = sft.num_steps = 0")
    check(s.batch_size >= 1, f"sft.batch_size={s.batch_size} must be >= 1")
    check(t.save_every >= 1, f"train.save_every={t.save_every} must be >= 1")
    check(t.keep >= 1, f"train.keep={t.keep} must be >= 1")
    check(t.log_every >= 1, f"train.log_every={t.log_every} must be >= 1")
    check(bool(config.model.preset or config.model.path), "set model.preset or model.path")
    check(config.model.dtype in ("float32", "bfloat16", "float16"), f"model.dtype={config.model.dtype!r} unknown")
    check(config.model.attention_impl in ("xla", "dot_product_attention"),
          f"model.attention_impl={config.model.attention_impl!r} must be 'xla' or 'dot_product_attention'")
    chunk = config.model.get("attention_query_chunk", 0)
    check(isinstance(chunk, int) and not isinstance(chunk, bool) and chunk >= 0,
          f"model.attention_query_chunk={chunk!r} must be an int >= 0 (0 = no chunking)")
    check(not chunk or config.model.attention_impl == "xla",
          f"model.attention_query_chunk={chunk!r} applies to model.attention_impl='xla' only, "
          f"not {config.model.attention_impl!r}")
    check(config.data.response_keep in ("salient", "all"),
          f"data.response_keep={config.data.response_keep!r} must be 'salient' or 'all'")
    check(config.data.get("subset", "first") in ("first", "balanced"),
          f"data.subset={config.data.get('subset')!r} must be 'first' or 'balanced'")
    check(config.data.tool_view in TOOL_VIEWS, f"data.tool_view={config.data.tool_view!r} must be one of {TOOL_VIEWS}")
    check(config.wandb.mode in ("auto", "online", "offline", "disabled"), f"wandb.mode={config.wandb.mode!r} unknown")
    m = config.mesh
    sizes = (m.data, m.fsdp, m.tensor)
    check(all(x == -1 or x >= 1 for x in sizes) and sum(x == -1 for x in sizes) <= 1,
          f"mesh (data={m.data}, fsdp={m.fsdp}, tensor={m.tensor}): sizes >= 1, at most one -1")
    batch = r.prompts_per_step * r.group_size
    fixed = [x for x in (m.data, m.fsdp) if x != -1]
    if fixed and -1 not in (m.data, m.fsdp):
        shards = m.data * m.fsdp
        check(batch % shards == 0,
              f"rollout.prompts_per_step·group_size={batch} must divide over mesh.data·mesh.fsdp={shards}")
        check(s.batch_size % shards == 0, f"sft.batch_size={s.batch_size} must divide over mesh.data·mesh.fsdp={shards}")
    lora = config.model.get("lora")
    if lora is not None:
        targets = [t.strip() for t in str(lora.targets).split(",") if t.strip()]
        check(lora.rank >= 0, f"model.lora.rank={lora.rank} must be >= 0 (0 = no LoRA)")
        check(lora.rank == 0 or lora.alpha > 0, f"model.lora.alpha={lora.alpha} must be > 0")
        check(lora.rank == 0 or (targets and set(targets) <= {"attn", "mlp"}),
              f"model.lora.targets={lora.targets!r} must name 'attn' and/or 'mlp' (comma-separated)")
    pl = config.get("plan")
    if pl is not None:
        from toolrl.plan_costs import DEVICES

        check(pl.device in DEVICES, f"plan.device={pl.device!r} must be one of {sorted(DEVICES)}")
        check(pl.num_devices >= 1, f"plan.num_devices={pl.num_devices} must be >= 1")
        check(0 < pl.mfu <= 1, f"plan.mfu={pl.mfu} must be in (0, 1]")
        check(0 < pl.memory_fraction <= 1, f"plan.memory_fraction={pl.memory_fraction} must be in (0, 1]")
    cc = config.get("compile")
    if cc is not None:
        check(isinstance(cc.cache_dir, str), f"compile.cache_dir={cc.cache_dir!r} must be a string")
        check(cc.min_compile_time_secs >= 0 and cc.min_entry_size_bytes >= 0,
              "compile.min_compile_time_secs and compile.min_entry_size_bytes must be >= 0")
    if errors:
        raise ConfigError("invalid config:\n  " + "\n  ".join(errors))


def validate_for_devices(config: ml_collections.ConfigDict, n_devices: int) -> tuple[int, int, int]:
    """Resolves -1 in the mesh shape against the device count and checks batch divisibility.

    Returns:
      (data, fsdp, tensor) sizes whose product is n_devices. Raises ConfigError.
    """
    m = config.mesh
    sizes = [m.data, m.fsdp, m.tensor]
    known = 1
    for x in sizes:
        if x != -1:
            known *= x
    if -1 in sizes:
        if n_devices % known:
            raise ConfigError(f"mesh (data={m.data}, fsdp={m.fsdp}, tensor={m.tensor}) does not divide {n_devices} devices")
        sizes[sizes.index(-1)] = n_devices // known
    if sizes[0] * sizes[1] * sizes[2] != n_devices:
        raise ConfigError(f"mesh {tuple(sizes)} (data, fsdp, tensor) needs {sizes[0] * sizes[1] * sizes[2]} devices, have {n_devices}")
    shards = sizes[0] * sizes[1]
    batch = config.rollout.prompts_per_step * config.rollout.group_size
    if config.mode == "grpo" and config.train.num_steps and batch % shards:
        raise ConfigError(f"rollout.prompts_per_step·group_size={batch} must be a multiple of mesh data·fsdp={shards}")
    if config.sft.num_steps and config.sft.batch_size % shards:
        raise ConfigError(f"sft.batch_size={config.sft.batch_size} must be a multiple of mesh data·fsdp={shards}")
    return tuple(sizes)  # type: ignore[return-value]

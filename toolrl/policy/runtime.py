"""`Policy`: the one object that owns the model at run time (docs/design.md, "Runtime architecture").

    policy = Policy.load(preset="smollm2_135m")                  # or path=/dir/of/hf/checkpoint
    policy, run_config = Policy.from_run("artifacts/runs/grpo")  # a run's own model, settings, weights
    out = policy.generate(prompt_ids, key, SamplingSettings(max_new_tokens=64, temperature=1.0))
    logp = policy.logprobs_fn(temperature)(state, tokens, mask) # [B, L-1], the trainer's log-probs
    texts = policy.as_eval_policy(settings)(requests)            # the evaluator's batched policy

Training rollouts and the evaluator both generate through `generate`, and both turn a conversation
into tokens through `prompt_ids` (the tool listing of `toolrl.data.chat_render.tool_system_prompt` as the
system message, then the one chat format). The trainer takes its log-probs (the old policy's, on the
plain and the packed layout) from `logprobs_fn` / `packed_logprobs_fn` and the KL reference's from a
`toolrl.policy.reference.Reference`; it keeps the loop, the optimizer, checkpoints and metrics. Parameters are loaded in one
place, `restore_params` (a run's checkpoint; ``model.init_checkpoint`` through `from_config`).
Parameters live in float32 whatever the compute dtype (mixed precision); the compute dtype is the
model config's ``dtype``.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from toolrl.data.chat import ChatFormat
from toolrl.data.chat_render import tool_system_prompt
from toolrl.models.config import ModelConfig
from toolrl.policy.checkpoint import Checkpointer
from toolrl.policy.tokenizers import CharTokenizer
from toolrl.rl import steps


@dataclasses.dataclass(frozen=True)
class SamplingSettings:
    """How to sample one assistant turn.

    Attributes:
      max_new_tokens: tokens per turn; a turn that reaches it without the end token is truncated.
      temperature: logits / T; the trainer's log-probs use the same T (on-policy ratio).
      top_k, top_p: truncation (0 / 1.0 = off). With either on, the sampled distribution is not the
        one the trainer's log-probs describe, so the importance ratio is only approximate.
      greedy: argmax (evaluation).
      pad_multiple: prompt widths are rounded up to a multiple of this (one compile per width).
    """

    max_new_tokens: int = 64
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    greedy: bool = False
    pad_multiple: int = 64


@dataclasses.dataclass
class Generation:
    """What `Policy.generate` returns (host numpy / lists).

    Attributes:
      tokens: per row, the generated ids (including the end token when the turn ended).
      logprobs: per row, log pi_T of each generated token (temperature T, no truncation).
      finished: [B] bool, the row emitted a stop token (False: cut by max_new_tokens).
      seconds: wall time of the call.
    """

    tokens: list[list[int]]
    logprobs: list[np.ndarray]
    finished: np.ndarray
    seconds: float

    @property
    def generated(self) -> int:
        return sum(len(t) for t in self.tokens)


def _left_pad(rows: Sequence[Sequence[int]], multiple: int, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    if not rows or any(len(r) == 0 for r in rows):
        raise ValueError("every prompt needs at least one token")
    width = -(-max(len(r) for r in rows) // multiple) * multiple
    tokens = np.full((len(rows), width), pad_id, np.int32)
    mask = np.zeros((len(rows), width), bool)
    for i, r in enumerate(rows):
        tokens[i, width - len(r):] = r
        mask[i, width - len(r):] = True
    return tokens, mask


class Policy:
    """The model, its tokenizer, its chat format and its mesh, with every way of using them.

    Args:
      model: the nnx decoder (placed on `mesh` when one is given).
      tokenizer: its tokenizer (transformers, or CharTokenizer for the tiny random model).
      model_config: the decoder's ModelConfig.
      mesh: device mesh or None.
      name: what was loaded (preset, directory or run), for reports.
    """

    def __init__(self, model: nnx.Module, tokenizer: Any, model_config: ModelConfig, mesh: Mesh | None = None,
                 name: str = ""):
        self.model = model
        self.tokenizer = tokenizer
        self.model_config = model_config
        self.mesh = mesh
        self.name = name
        self.chat = ChatFormat.for_model(tokenizer, model_config)
        self._compiled: dict[Any, Any] = {}

    # ------------------------------------------------------------------ loading

    @classmethod
    def load(cls, preset: str = "", path: str = "", dtype: str = "float32", mesh: Mesh | None = None,
             seed: int = 0, attention_impl: str = "xla", remat: bool = False, lora: Any = None,
             attention_query_chunk: int = 0) -> "Policy":
        """A preset (``tiny*`` = random init with the character tokenizer) or a local HF directory.

        Parameters are float32; ``dtype`` is the compute dtype. ``attention_impl``, ``attention_query_chunk``
        and ``remat`` are the decoder's execution options (`ModelConfig`): they change memory and speed,
        not the numbers."""
        if not path and preset.startswith("tiny"):
            from toolrl.models.decoder import init_model
            from toolrl.models.sharding import shard_model

            config = ModelConfig.preset(preset).with_dtype(dtype, "float32")
            model = init_model(config, seed)
            if mesh is not None:
                shard_model(model, mesh)
            tokenizer, name = CharTokenizer(), preset
        else:
            from toolrl.models.checkpoint_io import load_pretrained

            if not (path or preset):
                raise ValueError("set model.preset or model.path")
            model, tokenizer, config = load_pretrained(path or preset, dtype=dtype, param_dtype="float32", mesh=mesh)
            if tokenizer is None:
                raise FileNotFoundError(f"model {path or preset!r} has no tokenizer files")
            name = str(path or preset)
        config = dataclasses.replace(config, attention_impl=attention_impl, remat=bool(remat),
                                     attention_query_chunk=int(attention_query_chunk))
        for _, module in model.iter_modules():  # every layer reads its execution options at call time
            if getattr(module, "config", None) is not None:
                module.config = config
        if lora is not None:  # a LoraSpec: adapters on the projections (B = 0: the base's numbers at first)
            from toolrl.models.lora import apply_lora
            from toolrl.models.sharding import shard_model

            apply_lora(model, lora, seed)
            if mesh is not None:
                shard_model(model, mesh)  # the adapters placed by the same rules as their kernels
        return cls(model, tokenizer, config, mesh, name)

    @classmethod
    def from_model_config(cls, m: Any, mesh: Mesh | None = None, seed: int = 0,
                          attention_query_chunk: int | None = None) -> "Policy":
        """From a training config's ``model`` section (preset / path / dtype / execution options / lora);
        ``attention_query_chunk`` (not None) replaces the section's."""
        from toolrl.models.lora import LoraSpec

        chunk = m.get("attention_query_chunk", 0) if attention_query_chunk is None else attention_query_chunk
        return cls.load(m.preset, m.path, m.dtype, mesh, seed, m.get("attention_impl", "xla"), m.get("remat", False),
                        LoraSpec.from_config(m.get("lora")), chunk)

    @classmethod
    def from_config(cls, config: Any, mesh: Mesh | None = None) -> "Policy":
        """The model a training config names (``model.*``); with ``model.init_checkpoint`` (another run's
        workdir) its latest parameters are loaded on top. This is the only place the init checkpoint is
        restored: a run that resumes restores its own checkpoint over it (`Trainer.restore_or_init`)."""
        m = config.model
        policy = cls.from_model_config(m, mesh, int(config.seed))
        if m.init_checkpoint:
            # A LoRA run from a full model's run (e.g. an SFT start): the base weights come from it, the
            # adapters stay as initialised (B = 0).
            policy.restore_params(m.init_checkpoint, base_only=_lora_rank(m) > 0 and _run_lora_rank(m.init_checkpoint) == 0)
        return policy

    @classmethod
    def from_run(cls, workdir: str | Path, mesh: Mesh | None = None, step: int | None = None,
                 attention_query_chunk: int | None = None) -> tuple["Policy", Any]:
        """A training run's own model: its saved config (model, dtype, data view) and its parameters at
        `step` (None = the latest checkpoint). Returns (policy, the run's config). ``attention_query_chunk``
        (not None) replaces the run's: an execution option of this process (memory), not of the run."""
        from toolrl.rl.workdir import load_run_config

        run_config = load_run_config(workdir)
        policy = cls.from_model_config(run_config.model, mesh, int(run_config.seed), attention_query_chunk)
        policy.restore_params(workdir, step)
        policy.name = str(workdir)
        return policy, run_config

    def restore_params(self, workdir: str | Path, step: int | None = None, base_only: bool = False) -> int:
        """Loads the parameters of a run's checkpoint (latest when `step` is None); returns its step.
        `base_only`: every parameter but the LoRA adapters (a checkpoint saved without them)."""
        directory = Path(workdir) / "checkpoints"
        if not directory.is_dir():
            raise FileNotFoundError(f"{workdir} has no checkpoints/ directory: not a toolrl run (or it never saved)")
        ckpt = Checkpointer(directory, 1, 1)
        try:
            template = (nnx.state(self.model, nnx.All(nnx.Param, nnx.Not(nnx.LoRAParam))) if base_only
                        else self.params())
            params, _, _, restored = ckpt.restore(step, template)
        finally:
            ckpt.close()
        nnx.update(self.model, params)
        return restored

    # ------------------------------------------------------------------ state

    def params(self) -> nnx.State:
        return nnx.state(self.model, nnx.Param)

    @property
    def graphdef(self) -> nnx.GraphDef:
        return nnx.split(self.model)[0]

    # ------------------------------------------------------------------ prompts

    def prompt_ids(self, messages: Sequence[dict[str, Any]], tools: Sequence[dict[str, Any]], tool_view: str) -> list[int]:
        """Token ids of a conversation ending with the assistant header: the tool listing as the system
        message, then `messages` (user, assistant with tool_calls, tool). Training and evaluation call this."""
        system = {"role": "system", "content": tool_system_prompt(tools, tool_view)}
        return self.chat.prompt_ids([system] + [dict(m) for m in messages if m.get("role") != "system"])

    # ------------------------------------------------------------------ generation

    def _generate_fn(self, settings: SamplingSettings, group_size: int) -> Any:
        from toolrl.models.sampler import SamplingParams, generate_arrays

        params = SamplingParams(max_new_tokens=settings.max_new_tokens, temperature=settings.temperature,
                                top_k=settings.top_k, top_p=settings.top_p, greedy=settings.greedy,
                                stop_token_ids=tuple(self.chat.stop_ids))
        graphdef = self.graphdef
        pad = self.chat.pad_id
        kwargs = {"group_size": group_size} if group_size > 1 else {}

        def run(state: nnx.State, tokens: jax.Array, mask: jax.Array, key: jax.Array) -> dict[str, jax.Array]:
            return generate_arrays(graphdef, state, tokens, mask, key, params=params, pad_id=pad, **kwargs)

        return run

    def generate(self, prompts: Sequence[Sequence[int]], key: jax.Array, settings: SamplingSettings,
                 group_size: int = 1) -> Generation:
        """Samples one turn for every prompt (one jitted call; one compile per padded width).

        Args:
          prompts: B token-id lists (a prompt may be any length >= 1).
          key: PRNG key.
          settings: sampling settings.
          group_size: rows come in groups of this many identical prompts (the sampler may prefill
            each group once).
        """
        start = time.perf_counter()
        tokens, mask = _left_pad(prompts, settings.pad_multiple, self.chat.pad_id)
        if self.mesh is not None:
            from toolrl.models.sharding import batch_sharding

            tokens_dev = jax.device_put(tokens, batch_sharding(self.mesh, 2))
            mask_dev = jax.device_put(mask, batch_sharding(self.mesh, 2))
        else:
            tokens_dev, mask_dev = jnp.asarray(tokens), jnp.asarray(mask)
        out = self._generate_fn(settings, group_size)(nnx.state(self.model), tokens_dev, mask_dev, key)
        new, logp, valid = (to_host(out[k]) for k in ("tokens", "logprobs", "mask"))
        stops = set(self.chat.stop_ids)
        rows, lps, finished = [], [], np.zeros(len(prompts), bool)
        for i in range(len(prompts)):
            ids = [int(t) for t in new[i][valid[i]]]
            rows.append(ids)
            lps.append(np.asarray(logp[i][valid[i]], np.float32))
            finished[i] = bool(ids) and ids[-1] in stops
        return Generation(rows, lps, finished, time.perf_counter() - start)

    def response_text(self, ids: Sequence[int]) -> str:
        """A generated turn as the evaluator reads it: decoded, with calls in `<tool_call>` blocks even
        when the template writes them bare (Llama 3.x), so rollouts and evaluation parse alike."""
        return self.readable(self.chat.decode(ids))

    def readable(self, text: str) -> str:
        """Decoded text with calls in `<tool_call>` blocks (the form the protocol parses)."""
        from toolrl.data.chat import tagless_calls_to_blocks

        return text if self.chat.calls_tagged else tagless_calls_to_blocks(text)

    # ------------------------------------------------------------------ log-probs

    def logprobs_fn(self, temperature: float = 1.0) -> Any:
        """`fn(state, tokens [B, L], attention_mask [B, L]) -> [B, L-1]` log pi_T(token t+1 | ..t), jitted
        (sharded over the mesh when the policy has one): the old policy's and the reference's pass on the
        plain update layout.

        Uses the sampling temperature so that sampler and trainer agree on pi."""
        graphdef, state = nnx.split(self.model)
        key = ("logp", float(temperature), graphdef)
        if key not in self._compiled:
            self._compiled[key] = steps.make_logprob_fn(graphdef, self.mesh, state, temperature)
        return self._compiled[key]

    def packed_logprobs_fn(self, temperature: float = 1.0, shared: bool = False) -> Any:
        """`fn(state, packed batch) -> [R, S, K]` log-probs at the loss positions of a packed update batch
        (`toolrl.rl.packing`; `shared`: the shared-prefix layout), jitted like `logprobs_fn`."""
        graphdef, state = nnx.split(self.model)
        key = ("packed_logp", float(temperature), bool(shared), graphdef)
        if key not in self._compiled:
            self._compiled[key] = steps.make_packed_logprob_fn(graphdef, self.mesh, state, temperature, shared)
        return self._compiled[key]

    # ------------------------------------------------------------------ the evaluator's policy

    def as_eval_policy(self, *, tool_view: str, max_new_tokens: int, batch_size: int = 16,
                       pad_multiple: int = 64) -> "EvalPolicy":
        """The evaluator's batched greedy policy (`toolrl.eval.types.Policy`) over this model."""
        return EvalPolicy(self, tool_view, SamplingSettings(max_new_tokens=max_new_tokens, greedy=True,
                                                            pad_multiple=pad_multiple), batch_size)


def to_host(x: Any) -> np.ndarray:
    """A (possibly multi-host sharded) array as a full numpy array on this host."""
    if jax.process_count() > 1 and isinstance(x, jax.Array) and not x.is_fully_addressable:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


@dataclasses.dataclass
class EvalStats:
    """Counters of an evaluation policy (budgets and throughput)."""

    requests: int = 0
    batches: int = 0
    continued: int = 0  # requests whose prompt continued the conversation's own tokens (later rounds)
    prompt_tokens: int = 0
    generated_tokens: int = 0
    truncated_turns: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class _Thread:
    """One conversation as token ids: what the policy was last asked (`messages`) and the ids of that
    prompt followed by the tokens it generated."""

    messages: list[dict[str, Any]]
    ids: list[int]


class EvalPolicy:
    """`policy(requests) -> texts` for `toolrl.eval`: the same prompts as training, greedy decoding.

    A request that continues a conversation this policy answered (the same messages, then the game's
    assistant message and its tool messages) is the earlier prompt, the tokens the policy generated,
    and the chat format's environment segment of the tool messages: what a rollout's row holds at that
    round (`toolrl.rl.rollout`), so training and evaluation prompts are the same tokens by construction
    (docs/design.md, "Games"). Re-rendering the game's assistant message instead would drop the
    policy's prose and unparseable blocks and re-serialise its JSON. Any other request is rendered
    from its messages.

    Requests are sorted by prompt length and cut into chunks of `batch_size` (the last chunk padded
    with repeats, so one width compiles one program)."""

    def __init__(self, policy: Policy, tool_view: str, settings: SamplingSettings, batch_size: int):
        if batch_size < 1 or settings.max_new_tokens < 1:
            raise ValueError(f"batch_size={batch_size} and max_new_tokens={settings.max_new_tokens} must be >= 1")
        self.policy = policy
        self.tool_view = tool_view
        self.settings = settings
        self.batch_size = batch_size
        self.stats = EvalStats()
        self._threads: dict[Any, _Thread] = {}

    @staticmethod
    def _conversation(request: Any) -> Any:
        """Which conversation a request belongs to: its ``conversation`` key when the game gives one (a
        free-running sample), else its scored turn (sample_id, turn)."""
        key = getattr(request, "conversation", None)
        return key if key is not None else (request.sample_id, request.turn)

    def _continued(self, request: Any) -> list[int] | None:
        """The prompt ids of `request` when it continues its conversation's thread, else None."""
        thread = self._threads.get(self._conversation(request))
        if thread is None:
            return None
        messages = list(request.messages)
        n = len(thread.messages)
        tail = messages[n:]
        if (messages[:n] == thread.messages and len(tail) >= 2 and tail[0].get("role") == "assistant"
                and all(m.get("role") == "tool" for m in tail[1:])):
            return thread.ids + self.policy.chat.env_ids(tail[1:])
        return None

    def prompt_ids(self, request: Any) -> list[int]:
        found = self._continued(request)
        return found if found is not None else self.policy.prompt_ids(request.messages, request.tools, self.tool_view)

    def request_size(self, request: Any) -> int:
        """Tokens of the request's prompt: the batched driver sends requests shortest first by it."""
        return len(self.prompt_ids(request))

    def __call__(self, requests: Sequence[Any]) -> list[str]:
        start = time.perf_counter()
        prompts = []
        for request in requests:
            found = self._continued(request)
            self.stats.continued += found is not None
            prompts.append(found if found is not None
                           else self.policy.prompt_ids(request.messages, request.tools, self.tool_view))
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        texts: list[str] = [""] * len(prompts)
        for lo in range(0, len(order), self.batch_size):
            chunk = order[lo:lo + self.batch_size]
            rows = [prompts[i] for i in chunk]
            rows += [rows[-1]] * (self.batch_size - len(rows))
            out = self.policy.generate(rows, jax.random.key(0), self.settings)
            for j, i in enumerate(chunk):
                self._threads[self._conversation(requests[i])] = _Thread(list(requests[i].messages),
                                                                         prompts[i] + list(out.tokens[j]))
                texts[i] = self.policy.response_text(out.tokens[j])
                self.stats.generated_tokens += len(out.tokens[j])
                self.stats.truncated_turns += int(not out.finished[j])
            self.stats.batches += 1
        self.stats.requests += len(prompts)
        self.stats.prompt_tokens += sum(len(p) for p in prompts)
        self.stats.seconds += time.perf_counter() - start
        return texts


def _lora_rank(model_section: Any) -> int:
    lora = model_section.get("lora") if hasattr(model_section, "get") else None
    return int(lora.rank) if lora is not None else 0


def _run_lora_rank(workdir: str | Path) -> int:
    """The LoRA rank a run was trained with (0: full fine-tuning, or a run saved before LoRA existed)."""
    from toolrl.rl.workdir import load_run_config

    return _lora_rank(load_run_config(workdir).model)

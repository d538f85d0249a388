"""A language model as the evaluator's policy: render each request, generate greedily, in batches.

``make_model_policy(model, tokenizer, config)`` returns a :data:`toolrl.eval.types.Policy` (a plain
callable over a list of :class:`~toolrl.eval.types.PolicyRequest`) backed by a Flax decoder and the
jitted KV-cache sampler (:mod:`toolrl.models.sampler`). The evaluator itself never sees the model.

Prompt rendering goes through :func:`toolrl.data.chat.render_chat` (the tokenizer's own template when
it knows about tools, else the Hermes / ChatML fallback). How the candidate tools are shown is the
``tool_view``:

* ``"hermes"``: the request's JSON schemas go to ``render_chat(tools=...)`` (the chat template's own
  tool listing, as the benchmark shows them);
* ``"compact"`` / ``"signature"`` / ``"full"``: a system message with the exact tool listing and
  instructions the GRPO trainer uses (:func:`toolrl.rl.data.system_prompt`), and no template tool
  listing. Evaluate a trained checkpoint with the view it was trained with (``data.tool_view``).

Generation is deterministic (greedy) and stops at the end-of-turn token. Requests are sorted by
prompt length and cut into chunks of ``config.batch_size``; the last chunk is padded with repeats so
that every chunk has the same batch size, and every chunk of one call is left-padded to the same
width (the longest prompt of the call rounded up to a multiple of ``prompt_bucket``): one call (one
protocol round) compiles at most one program, and calls of the same width reuse it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import jax

from toolrl.data.chat import encode_text, render_chat
from toolrl.eval.types import PolicyRequest

TOOL_VIEWS = ("hermes", "compact", "signature", "full")


@dataclasses.dataclass
class PolicyStats:
    """Counters of what a model policy did (for budgets and throughput reports)."""

    requests: int = 0
    batches: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    truncated_prompts: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def request_messages(request: PolicyRequest, tool_view: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """(messages, tools for the template) of a request under ``tool_view`` (see the module docstring)."""
    if tool_view not in TOOL_VIEWS:
        raise ValueError(f"tool_view={tool_view!r} must be one of {TOOL_VIEWS}")
    messages = [dict(m) for m in request.messages]
    if tool_view == "hermes":
        return messages, [dict(t) for t in request.tools]
    from toolrl.rl.data import system_prompt

    system = {"role": "system", "content": system_prompt(request.tools, tool_view)}
    return [system] + [m for m in messages if m.get("role") != "system"], None


def stop_token_ids(tokenizer: Any, model_config: Any) -> tuple[int, ...]:
    """``<|im_end|>`` when it is one token, plus the model config's end-of-sequence ids."""
    ids: list[int] = []
    end = encode_text(tokenizer, "<|im_end|>")
    if len(end) == 1:
        ids.append(end[0])
    ids += [int(i) for i in (getattr(model_config, "eos_token_ids", None) or ())]
    if not ids:
        raise ValueError("no stop token: <|im_end|> is not one token and the model config has no eos ids")
    return tuple(dict.fromkeys(ids))


class ModelPolicy:
    """The callable returned by :func:`make_model_policy` (with its ``stats``)."""

    def __init__(self, model: Any, tokenizer: Any, *, max_new_tokens: int, batch_size: int, tool_view: str,
                 max_prompt_tokens: int, prompt_bucket: int, mesh: Any, stops: tuple[int, ...], pad_id: int):
        from toolrl.models.sampler import SamplingParams

        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.tool_view = tool_view
        self.max_prompt_tokens = max_prompt_tokens
        self.prompt_bucket = prompt_bucket
        self.mesh = mesh
        self.pad_id = pad_id
        self.params = SamplingParams(max_new_tokens=max_new_tokens, greedy=True, stop_token_ids=stops)
        self.stats = PolicyStats()

    def prompt_ids(self, request: PolicyRequest) -> list[int]:
        """Token ids of the rendered request (cut from the left to ``max_prompt_tokens`` if set)."""
        messages, tools = request_messages(request, self.tool_view)
        text = render_chat(self.tokenizer, messages, tools, add_generation_prompt=True)
        ids = encode_text(self.tokenizer, text)
        if self.max_prompt_tokens and len(ids) > self.max_prompt_tokens:
            self.stats.truncated_prompts += 1
            ids = ids[-self.max_prompt_tokens:]
        return ids

    def __call__(self, requests: list[PolicyRequest]) -> list[str]:
        from toolrl.models.sampler import generate

        if not requests:
            return []
        started = time.perf_counter()
        prompts = [self.prompt_ids(r) for r in requests]
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        width = -(-max(len(p) for p in prompts) // self.prompt_bucket) * self.prompt_bucket
        texts: list[str] = [""] * len(prompts)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            batch = [prompts[i] for i in chunk]
            batch += [batch[-1]] * (self.batch_size - len(batch))  # static batch size: one program per bucket
            out = generate(self.model, batch, self.params, jax.random.key(0), pad_id=self.pad_id,
                           bucket=width, mesh=self.mesh, tokenizer=self.tokenizer)
            for row, i in enumerate(chunk):
                texts[i] = out.texts[row]
                self.stats.generated_tokens += int(out.completion_mask[row].sum())
                self.stats.prompt_tokens += len(prompts[i])
            self.stats.batches += 1
        self.stats.requests += len(requests)
        self.stats.seconds += time.perf_counter() - started
        return texts


def make_model_policy(model: Any, tokenizer: Any, config: Any, *, tool_view: str = "compact",
                      model_config: Any = None, max_prompt_tokens: int = 0, prompt_bucket: int = 128,
                      mesh: Any = None, batch_size: int | None = None,
                      max_new_tokens: int | None = None) -> ModelPolicy:
    """A batched greedy policy over ``model`` for :func:`toolrl.eval.evaluate` / ``run_evaluation``.

    Args:
      model: a :class:`toolrl.models.decoder.Decoder` (its current parameters are used).
      tokenizer: its tokenizer (``transformers`` or anything with encode/decode).
      config: the eval config (``configs/eval.py``): ``max_new_tokens`` and ``batch_size`` are read
        from it unless given as arguments.
      tool_view: how tools are shown (module docstring); match the training run's ``data.tool_view``.
      model_config: the model's ModelConfig (default ``model.config``): stop and pad ids.
      max_prompt_tokens: cut longer prompts from the left (0 = never; counted in ``stats``).
      prompt_bucket: prompts are left-padded to a common width, a multiple of this many tokens.
      mesh: shard the batch over this mesh's batch axes (None = default device placement).
      batch_size, max_new_tokens: override the config's values.

    Returns:
      A :class:`ModelPolicy`: ``policy(requests) -> texts``, with ``policy.stats``.
    """
    if tool_view not in TOOL_VIEWS:
        raise ValueError(f"tool_view={tool_view!r} must be one of {TOOL_VIEWS}")
    model_config = model_config if model_config is not None else model.config
    batch_size = int(batch_size if batch_size is not None else config.batch_size)
    max_new_tokens = int(max_new_tokens if max_new_tokens is not None else config.max_new_tokens)
    if batch_size < 1 or max_new_tokens < 1:
        raise ValueError(f"batch_size={batch_size} and max_new_tokens={max_new_tokens} must be >= 1")
    stops = stop_token_ids(tokenizer, model_config)
    pad = getattr(model_config, "pad_token_id", None)
    return ModelPolicy(model, tokenizer, max_new_tokens=max_new_tokens, batch_size=batch_size, tool_view=tool_view,
                       max_prompt_tokens=max_prompt_tokens, prompt_bucket=prompt_bucket, mesh=mesh, stops=stops,
                       pad_id=int(pad if pad is not None else stops[0]))


def render_prompts(requests: Sequence[PolicyRequest], tokenizer: Any, tool_view: str = "compact") -> list[str]:
    """The prompt texts a model policy would see (for inspection and notebooks)."""
    out = []
    for request in requests:
        messages, tools = request_messages(request, tool_view)
        out.append(render_chat(tokenizer, messages, tools, add_generation_prompt=True))
    return out

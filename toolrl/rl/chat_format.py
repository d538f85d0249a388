"""Incremental chat tokenisation for rollouts: prompt, assistant turns and tool responses as segments.

A rollout grows one conversation per row: the prompt (system + user + the assistant header), then
for each turn the tokens the policy generated (which end with the end-of-turn token) and, when it
called tools, an environment segment (the tool responses as a message, then the next assistant
header). Tokenising segment by segment (instead of re-rendering the whole conversation) keeps the
exact tokens the policy sampled, and tells which tokens are the policy's (trained) and which the
environment's (masked out of the loss).

The layout is ChatML (SmolLM2, Qwen2): ``<|im_start|>role\\ncontent<|im_end|>\\n``; tool responses
go in a user-role message, one ``<tool_response>`` block per call (as in the Qwen2.5 template). The
text comes from `toolrl.data.chat.render_hermes`, so training and evaluation prompts are identical.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol, Sequence

from toolrl.data.chat import encode_text, render_hermes


class Tokenizer(Protocol):
    def encode(self, text: str) -> Any: ...

    def decode(self, ids: Sequence[int]) -> str: ...


def decode(tokenizer: Any, ids: Sequence[int]) -> str:
    try:
        return tokenizer.decode(list(ids), skip_special_tokens=False)
    except TypeError:
        return tokenizer.decode(list(ids))


@dataclasses.dataclass
class ChatFormat:
    """ChatML segments over a tokenizer.

    Attributes:
      tokenizer: anything with encode/decode (see `toolrl.data.chat.encode_text`).
      end_id: the end-of-turn token id the policy emits to finish a turn (``<|im_end|>``); also the
        generation stop token.
      pad_id: id used for padding (never attended to, never trained on).
    """

    tokenizer: Any
    end_id: int
    pad_id: int

    def prompt_ids(self, system: str, user: str, history: Sequence[tuple[str, Sequence[str]]] = ()) -> list[int]:
        """System + user (+ golden history as (assistant text, [tool response texts]) pairs) + assistant header.

        Rendered by `toolrl.data.chat.render_hermes`, the same renderer the evaluator's prompts use."""
        messages: list[dict[str, Any]] = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        for assistant, responses in history:
            messages.append({"role": "assistant", "content": assistant})
            messages += [{"role": "tool", "content": r} for r in responses]
        return encode_text(self.tokenizer, render_hermes(messages, add_generation_prompt=True))

    def env_ids(self, responses: Sequence[str]) -> list[int]:
        """After a generated turn (which ended with end_id): newline, the tool message (one
        ``<tool_response>`` block per call), then the next assistant header."""
        tool_messages = [{"role": "tool", "content": r} for r in responses]
        return encode_text(self.tokenizer, "\n" + render_hermes(tool_messages, add_generation_prompt=True))

    def assistant_ids(self, text: str) -> list[int]:
        """A golden assistant turn as the policy should produce it: text then the end token."""
        return encode_text(self.tokenizer, text) + [self.end_id]

    def decode(self, ids: Sequence[int]) -> str:
        return decode(self.tokenizer, [i for i in ids if i != self.end_id and i != self.pad_id])


def chat_format_for(tokenizer: Any, model_config: Any) -> ChatFormat:
    """The ChatML format for a tokenizer; the end token is ``<|im_end|>`` when it is one token."""
    ids = encode_text(tokenizer, "<|im_end|>")
    if len(ids) == 1:
        end_id = ids[0]
    elif model_config.eos_token_ids:
        end_id = int(model_config.eos_token_ids[0])
    else:
        raise ValueError("cannot find an end-of-turn token: <|im_end|> is not one token and the config has no eos")
    pad = model_config.pad_token_id
    return ChatFormat(tokenizer, end_id=end_id, pad_id=int(pad if pad is not None else end_id))

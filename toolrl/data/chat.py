"""Chat rendering and tokenisation for tool-calling conversations.

Messages are OpenAI-like dicts::

    {"role": "system" | "user" | "assistant" | "tool", "content": str,
     "tool_calls": [{"name": str, "arguments": dict | str}, ...]}   # tool_calls optional

Two templates:

* ``native``: the tokenizer's own chat template, used when it knows about tools (its Jinja source
  mentions ``tools``: Qwen2.5, Llama 3.x). Tools and calls are passed in the OpenAI wrapping
  (``{"type": "function", "function": {...}}``) those templates expect.
* ``hermes`` (fallback, e.g. SmolLM2): ChatML turns ``<|im_start|>{role}\\n{content}<|im_end|>\\n``.
  Tools go into the system prompt as one JSON object per line inside ``<tools></tools>``; an
  assistant's calls are ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` lines after its
  text; tool results become a ``user`` turn of ``<tool_response>...</tool_response>`` blocks
  (consecutive tool messages share one turn). :mod:`toolrl.rewards.parse` reads this call format.
"""

from __future__ import annotations

import json
from typing import Any, Literal, Mapping, Sequence

Message = Mapping[str, Any]
TemplateKind = Literal["native", "hermes"]

HERMES_SYSTEM_DEFAULT = "You are a helpful assistant."
HERMES_TOOLS_PREAMBLE = (
    "# Tools\n\n"
    "You can call functions to help with the user's request. The available functions are listed as "
    "JSON signatures inside <tools></tools> XML tags:\n<tools>\n{tools}\n</tools>\n\n"
    "To call a function, write a JSON object with its name and arguments inside <tool_call></tool_call> "
    "XML tags, one call per block:\n"
    '<tool_call>{{"name": <function-name>, "arguments": <arguments-json-object>}}</tool_call>\n'
    "Function results are returned to you inside <tool_response></tool_response> XML tags."
)


def template_kind(tokenizer: Any) -> TemplateKind:
    """``"native"`` if the tokenizer's chat template handles tools, else ``"hermes"``."""
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):  # several named templates: the "tool_use" one if present
        template = template.get("tool_use") or template.get("default")
    return "native" if isinstance(template, str) and "tools" in template else "hermes"


def _arguments(args: Any) -> Any:
    """Arguments as a dict when they are a JSON-encoded dict string (canonical rendering)."""
    if isinstance(args, str):
        try:
            decoded = json.loads(args)
        except ValueError:
            return args
        return decoded if isinstance(decoded, dict) else args
    return {} if args is None else args


def _call(call: Mapping[str, Any]) -> dict[str, Any]:
    """Accept both {"name", "arguments"} and OpenAI {"function": {"name", "arguments"}} calls."""
    fn = call.get("function", call)
    return {"name": fn["name"], "arguments": _arguments(fn.get("arguments"))}


def format_tool_call(call: Mapping[str, Any]) -> str:
    """One ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` block."""
    c = _call(call)
    return "<tool_call>" + json.dumps({"name": c["name"], "arguments": c["arguments"]}, ensure_ascii=False) + "</tool_call>"


def _tool_schema(tool: Mapping[str, Any]) -> dict[str, Any]:
    """Tool schema without the OpenAI wrapper (the Hermes prompt lists bare signatures)."""
    return dict(tool["function"]) if "function" in tool else dict(tool)


def render_hermes(messages: Sequence[Message], tools: Sequence[Mapping[str, Any]] | None = None,
                  add_generation_prompt: bool = True) -> str:
    """Render with the documented Hermes / ChatML fallback template (see the module docstring)."""
    out: list[str] = []
    msgs = list(messages)
    system = None
    if msgs and msgs[0]["role"] == "system":
        system = msgs.pop(0).get("content") or ""
    if tools:
        listing = "\n".join(json.dumps(_tool_schema(t), ensure_ascii=False) for t in tools)
        preamble = HERMES_TOOLS_PREAMBLE.format(tools=listing)
        system = f"{system or HERMES_SYSTEM_DEFAULT}\n\n{preamble}"
    if system is not None:
        out.append(f"<|im_start|>system\n{system}<|im_end|>\n")
    i = 0
    while i < len(msgs):
        m = msgs[i]
        role = m["role"]
        if role == "tool":
            # Consecutive tool results share one user turn.
            blocks = []
            while i < len(msgs) and msgs[i]["role"] == "tool":
                blocks.append(f"<tool_response>\n{msgs[i].get('content') or ''}\n</tool_response>")
                i += 1
            out.append("<|im_start|>user\n" + "\n".join(blocks) + "<|im_end|>\n")
            continue
        content = m.get("content") or ""
        if role == "assistant" and m.get("tool_calls"):
            calls = "\n".join(format_tool_call(c) for c in m["tool_calls"])
            content = f"{content}\n{calls}" if content else calls
        if role not in ("system", "user", "assistant"):
            raise ValueError(f"unknown message role {role!r}")
        out.append(f"<|im_start|>{role}\n{content}<|im_end|>\n")
        i += 1
    if add_generation_prompt:
        out.append("<|im_start|>assistant\n")
    return "".join(out)


def _openai_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Messages in the shape native (Qwen / Llama) templates expect."""
    out = []
    for m in messages:
        d = dict(m)
        if d.get("tool_calls"):
            d["tool_calls"] = [{"type": "function", "function": _call(c)} for c in d["tool_calls"]]
        if d.get("content") is None:
            d["content"] = ""
        out.append(d)
    return out


def _openai_tools(tools: Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]] | None:
    if not tools:
        return None
    return [dict(t) if "function" in t else {"type": "function", "function": dict(t)} for t in tools]


def encode_text(tokenizer: Any, text: str) -> list[int]:
    """Token ids of `text` with no special tokens added, for any tokenizer in use here: a transformers
    tokenizer, a `tokenizers.Tokenizer` (its `.encode` returns an Encoding with `.ids`), or a plain
    object with `encode(text)` (the tiny test model's character tokenizer)."""
    try:
        out = tokenizer.encode(text, add_special_tokens=False)
    except TypeError:
        out = tokenizer.encode(text)
    return [int(i) for i in getattr(out, "ids", out)]


def render_chat(tokenizer: Any, messages: Sequence[Message], tools: Sequence[Mapping[str, Any]] | None = None,
                add_generation_prompt: bool = True, tokenize: bool = False,
                kind: TemplateKind | None = None) -> str | list[int]:
    """Render a conversation to prompt text (or token ids with ``tokenize=True``).

    Uses the tokenizer's own template when it supports tools, else :func:`render_hermes`
    (``kind`` forces one). Token ids are the text encoded without extra special tokens (the template
    already wrote them).
    """
    kind = kind or template_kind(tokenizer)
    if kind == "native":
        text = tokenizer.apply_chat_template(
            _openai_messages(messages), tools=_openai_tools(tools),
            add_generation_prompt=add_generation_prompt, tokenize=False,
        )
    else:
        text = render_hermes(messages, tools, add_generation_prompt)
    if not tokenize:
        return text
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def tokenize_conversation(tokenizer: Any, messages: Sequence[Message],
                          tools: Sequence[Mapping[str, Any]] | None = None,
                          kind: TemplateKind | None = None) -> tuple[list[int], list[bool]]:
    """Token ids of the whole conversation and a mask of the assistant tokens (for SFT losses).

    An assistant turn's span is the text its message adds after the generation prompt of the
    preceding messages: its content, tool calls and end-of-turn token (trailing whitespace after it
    is not trained on). Token / span overlap is decided with the fast tokenizer's offsets.

    Raises:
      ValueError: the template is not prefix-consistent (rendering a conversation prefix does not
        give a prefix of the full text), so assistant spans cannot be located.
    """
    full = render_chat(tokenizer, messages, tools, add_generation_prompt=False, kind=kind)
    assert isinstance(full, str)
    spans: list[tuple[int, int]] = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = render_chat(tokenizer, messages[:i], tools, add_generation_prompt=True, kind=kind)
        upto = render_chat(tokenizer, messages[: i + 1], tools, add_generation_prompt=False, kind=kind)
        assert isinstance(before, str) and isinstance(upto, str)
        if not (upto.startswith(before) and full.startswith(upto)):
            raise ValueError(f"chat template is not prefix-consistent at message {i}; cannot mask assistant tokens")
        spans.append((len(before), len(upto.rstrip())))
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    mask = []
    for start, _ in enc["offset_mapping"]:
        mask.append(any(a <= start < b for a, b in spans))
    return ids, mask

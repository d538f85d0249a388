"""Rendering a tool-calling conversation as text: the two chat templates, the one writer of
``<tool_call>`` blocks, the tool listing of the system prompt and the escaping of control tokens in
tool results (docs/design.md, "Golden samples, turns and the chat format").

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

:func:`format_tool_call` is the one writer of ``<tool_call>`` blocks; :func:`tool_system_prompt` is
the system message for tool views that list the tools themselves ("compact", "signature", "full").
:class:`toolrl.data.chat.ChatFormat` cuts token segments out of these renderings.

Tool results are text, never markup: the environment's responses (and its echo of a model-written
tool name) may contain a control token's string (``<|im_end|>``, ``<|im_start|>``, ...), which the
tokenizer would turn into the real token and so forge a turn boundary. :func:`render_chat` escapes
those strings in tool messages (:func:`escape_control_tokens`: a zero-width space after the first
character) before any template sees them.
"""

from __future__ import annotations

import json
import re
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
    """One ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` block.

    The only place in toolrl that writes a ``<tool_call>`` block: the Hermes template, golden turns,
    scripted policies and the conversion of tag-less (Llama-style) calls all go through it."""
    c = _call(call)
    return "<tool_call>" + json.dumps({"name": c["name"], "arguments": c["arguments"]}, ensure_ascii=False) + "</tool_call>"


def format_tool_calls(calls: Sequence[Mapping[str, Any]]) -> str:
    """Several calls as the Hermes template writes them in one assistant message: one block per line."""
    return "\n".join(format_tool_call(c) for c in calls)


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
            calls = format_tool_calls(m["tool_calls"])
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


# ChatML / Qwen / Llama-3 style control tokens: "<|" name "|>".
_CONTROL_PATTERN = re.compile(r"<\|[^\s<>|]{1,64}\|>")
_ESCAPE = "\u200b"  # zero-width space: the text reads the same, the token's string is broken


def control_strings(tokenizer: Any) -> tuple[str, ...]:
    """The strings the tokenizer encodes as special / added tokens (longest first)."""
    names: set[str] = set()
    for attr in ("all_special_tokens", "additional_special_tokens"):
        names.update(str(t) for t in (getattr(tokenizer, attr, None) or ()))
    added = getattr(tokenizer, "added_tokens_decoder", None)
    if added is None and callable(getattr(tokenizer, "get_added_tokens_decoder", None)):
        added = tokenizer.get_added_tokens_decoder()
    for token in (added or {}).values():
        if getattr(token, "special", True):
            names.add(str(getattr(token, "content", token)))
    for attr in ("START", "END"):  # the character tokenizer's two markers
        if isinstance(getattr(tokenizer, attr, None), str):
            names.add(getattr(tokenizer, attr))
    return tuple(sorted((n for n in names if len(n) > 1), key=len, reverse=True))


def escape_control_tokens(text: str, controls: Sequence[str] = ()) -> str:
    """`text` with every control-token string (``<|...|>`` and each of `controls`) broken by a zero-width
    space after its first character, so no tokenizer reads a special token out of it."""
    if not text:
        return text
    text = _CONTROL_PATTERN.sub(lambda m: m.group(0)[0] + _ESCAPE + m.group(0)[1:], text)
    for control in controls:
        if control in text:
            text = text.replace(control, control[0] + _ESCAPE + control[1:])
    return text


_TOOL_ROLES = ("tool", "ipython")  # ipython: Llama 3's name for a tool result


def _escape_tool_messages(tokenizer: Any, messages: Sequence[Message]) -> list[Message]:
    """Tool messages with their text fields escaped (`escape_control_tokens`); the others as they are."""
    if not any(m.get("role") in _TOOL_ROLES for m in messages):
        return list(messages)
    controls = control_strings(tokenizer)
    out: list[Message] = []
    for m in messages:
        if m.get("role") in _TOOL_ROLES:
            m = {k: escape_control_tokens(v, controls) if isinstance(v, str) and k != "role" else v
                 for k, v in m.items()}
        out.append(m)
    return out


def render_chat(tokenizer: Any, messages: Sequence[Message], tools: Sequence[Mapping[str, Any]] | None = None,
                add_generation_prompt: bool = True, tokenize: bool = False,
                kind: TemplateKind | None = None) -> str | list[int]:
    """Render a conversation to prompt text (or token ids with ``tokenize=True``).

    Uses the tokenizer's own template when it supports tools, else :func:`render_hermes`
    (``kind`` forces one). Token ids are the text encoded without extra special tokens (the template
    already wrote them). Control-token strings inside tool messages are escaped first.
    """
    kind = kind or template_kind(tokenizer)
    messages = _escape_tool_messages(tokenizer, messages)  # tool results are text, never control tokens
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


# ----------------------------------------------------------------------------- tool system prompt


def compact_tool(schema: Mapping[str, Any], describe: bool = True) -> str:
    """One line per tool: ``Name(param: type, opt?: type) - first sentence of the description``."""
    schema = _tool_schema(schema)
    params = schema.get("parameters", {}) or {}
    required = set(params.get("required", []) or [])
    parts = []
    for name, spec in (params.get("properties", {}) or {}).items():
        parts.append(f"{name}{'' if name in required else '?'}: {spec.get('type', 'any')}")
    head = f"{schema['name']}({', '.join(parts)})"
    if not describe:
        return head
    description = str(schema.get("description", "")).split("Tool description:")[-1].strip()
    return f"{head} - {description.split('. ')[0][:80]}"


TOOL_SYSTEM_TEMPLATE = (
    "You call tools to solve the user's request. Tools:\n{tools}\n"
    'Call a tool as <tool_call>{{"name": "...", "arguments": {{...}}}}</tool_call>. Calls in one '
    "message must not need each other's results; use the responses you get. When done, answer "
    "without a tool call."
)
TOOL_VIEWS = ("compact", "signature", "full")


def tool_system_prompt(tools: Sequence[Mapping[str, Any]], view: str = "compact") -> str:
    """The system message that lists the tools itself (no template tool listing), in the order given.

    Views: ``"compact"`` one line per tool with the first sentence of its description (see
    :func:`compact_tool`), ``"signature"`` the same without descriptions, ``"full"`` one JSON schema
    per line.
    """
    if view in ("compact", "signature"):
        listing = "\n".join(compact_tool(t, describe=view == "compact") for t in tools)
    elif view == "full":
        listing = "\n".join(json.dumps(t, ensure_ascii=False) for t in tools)
    else:
        raise ValueError(f"tool view {view!r} must be one of {TOOL_VIEWS}")
    return TOOL_SYSTEM_TEMPLATE.format(tools=listing)

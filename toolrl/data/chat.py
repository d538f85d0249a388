"""The one chat format of training, SFT and evaluation (:class:`ChatFormat`; docs/design.md,
"Golden samples, turns and the chat format").

:class:`ChatFormat` works on top of the templates of :mod:`toolrl.data.chat_render`: prompts,
assistant turns (what the policy generates and SFT trains on, ending with the template's own
end-of-turn token) and environment segments (tool results plus the next generation prompt), each
cut out of the template's renderings by diffing them, so that a conversation assembled segment by
segment is token for token the template's rendering of it. It also reads the policy's output back:
:func:`tagless_calls_to_blocks` turns the bare JSON calls of templates without ``<tool_call>`` tags
into blocks for :func:`toolrl.rewards.parse.parse_tool_calls`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping, Sequence

from toolrl.data.chat_render import (Message, TemplateKind, _call, _tool_schema, encode_text, render_chat,
                                     template_kind)
from toolrl.rewards.parse import CLOSE_TAG, OPEN_TAG, parse_tool_calls

# ----------------------------------------------------------------------------- the chat format

_PROBE_USER = "Probe request."
_PROBE_TEXT = "Probe answer."
_PROBE_TOOL = "probe_tool"


def _decode(tokenizer: Any, ids: Sequence[int]) -> str:
    try:
        return tokenizer.decode(list(ids), skip_special_tokens=False)
    except TypeError:
        return tokenizer.decode(list(ids))


def _is_added_token(tokenizer: Any, token_id: int) -> bool:
    """Whether `token_id` is one of the tokenizer's added / special tokens (True when the tokenizer
    does not say, e.g. the tiny model's character tokenizer)."""
    added = getattr(tokenizer, "added_tokens_decoder", None)
    if isinstance(added, Mapping) and added:
        return int(token_id) in added
    special = getattr(tokenizer, "all_special_ids", None)
    return int(token_id) in special if special else True


def _as_assistant(message: Message | str) -> dict[str, Any]:
    if isinstance(message, str):
        return {"role": "assistant", "content": message}
    if message.get("role", "assistant") != "assistant":
        raise ValueError(f"expected an assistant message, got role {message.get('role')!r}")
    out: dict[str, Any] = {"role": "assistant", "content": message.get("content") or ""}
    if message.get("tool_calls"):
        out["tool_calls"] = [_call(c) for c in message["tool_calls"]]
    return out


def _as_env_message(message: Message | str) -> dict[str, Any]:
    if isinstance(message, str):
        return {"role": "tool", "content": message}
    if message.get("role") == "assistant":
        raise ValueError("env_ids takes the messages between two assistant turns, not an assistant message")
    return dict(message)


def _last(ids: Sequence[int], token: int) -> int:
    for k in range(len(ids) - 1, -1, -1):
        if ids[k] == token:
            return k
    return -1


def _first_difference(a: Sequence[int], b: Sequence[int]) -> int:
    for k, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return k
    return min(len(a), len(b))


def tagless_calls_to_blocks(text: str) -> str:
    """Bare JSON calls (``{"name": ..., "parameters": {...}}``, as Llama 3.x templates write them)
    rewritten as ``<tool_call>`` blocks (through :func:`format_tool_call`'s tags) so that
    :func:`toolrl.rewards.parse.parse_tool_calls` reads them. Text that already has ``<tool_call>``
    tags is returned unchanged.

    A JSON object counts as a call when it has a ``"name"`` key. A line that opens with ``{`` and
    mentions ``"name"`` but is not valid JSON becomes a block too, so that the parser reports it as a
    malformed call instead of the call silently vanishing.
    """
    if OPEN_TAG in text:
        return text
    decoder = json.JSONDecoder()
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        j = text.find("{", i)
        if j < 0:
            out.append(text[i:])
            break
        out.append(text[i:j])
        try:
            obj, end = decoder.raw_decode(text, j)
        except ValueError:
            obj, end = None, -1
        if isinstance(obj, dict) and "name" in obj:
            out.append(OPEN_TAG + text[j:end] + CLOSE_TAG)
            i = end
            continue
        line_start = text.rfind("\n", 0, j) + 1
        line_end = text.find("\n", j)
        line_end = n if line_end < 0 else line_end
        if obj is None and not text[line_start:j].strip() and '"name"' in text[j:line_end]:
            out.append(OPEN_TAG + text[j:line_end] + CLOSE_TAG)
            i = line_end
            continue
        stop = end if end > j else j + 1
        out.append(text[j:stop])
        i = stop
    return "".join(out)


class ChatFormat:
    """The one chat format of training, SFT and evaluation: prompts, assistant turns and environment
    segments as token ids, all cut out of the template's own renderings.

    ``kind`` is ``"native"`` (the tokenizer's chat template, when it knows tools: Qwen2.5, Llama 3.x)
    or ``"hermes"`` (:func:`render_hermes`, ChatML; for tokenizers without a tool-aware template such
    as SmolLM2, or with encode/decode only such as the tiny model's character tokenizer).

    Segments are found by rendering twice and diffing the token ids (the TRL idea), on a small probe
    conversation (a user message, plus a probe assistant turn for the environment segment):

    * ``assistant_ids(m)``: tokens of ``probe + [m]`` (no generation prompt) after the tokens of
      ``probe`` with the generation prompt, cut right after the last end-of-turn token;
    * ``env_ids(tool_msgs)``: tokens of ``probe + [assistant] + tool_msgs`` with the generation prompt
      after the tokens of ``probe + [assistant]`` up to and including the assistant's end token;
    * ``end_id``: the first token the template writes after a probe assistant's content.

    So that rollouts, SFT episodes and evaluation prompts are one task, for every supported template::

        prompt_ids(msgs + [a] + tool_msgs) == prompt_ids(msgs) + assistant_ids(a) + env_ids(tool_msgs)

    which :meth:`conversation_ids` checks message by message.
    """

    def __init__(self, tokenizer: Any, *, kind: TemplateKind | None = None, eos_token_ids: Sequence[int] = (),
                 pad_token_id: int | None = None):
        self.tokenizer = tokenizer
        self.kind: TemplateKind = kind or template_kind(tokenizer)
        if self.kind not in ("native", "hermes"):
            raise ValueError(f"kind={self.kind!r} must be 'native' or 'hermes'")
        if self.kind == "native" and not getattr(tokenizer, "chat_template", None):
            raise ValueError("kind='native' needs a tokenizer with a chat template; use kind='hermes'")
        self._head_cache: dict[str, list[int]] = {}
        self._tools_matter: dict[str, bool] = {}
        self._env_heads: dict[tuple[str, tuple[str, ...]], tuple[list[dict[str, Any]], list[int]]] = {}
        self.end_id, self.calls_tagged = self._probe_template()
        self.eos_ids = tuple(int(i) for i in eos_token_ids)
        self.stop_ids: tuple[int, ...] = tuple(dict.fromkeys((self.end_id, *self.eos_ids)))
        self.pad_id = int(pad_token_id) if pad_token_id is not None else self.end_id

    @classmethod
    def for_model(cls, tokenizer: Any, model_config: Any, kind: TemplateKind | None = None) -> "ChatFormat":
        """The format of a model: its tokenizer plus the config's eos ids and pad id."""
        return cls(tokenizer, kind=kind, eos_token_ids=tuple(getattr(model_config, "eos_token_ids", None) or ()),
                   pad_token_id=getattr(model_config, "pad_token_id", None))

    def __repr__(self) -> str:
        return f"ChatFormat(kind={self.kind!r}, end_id={self.end_id}, stop_ids={self.stop_ids}, pad_id={self.pad_id})"

    # -- rendering -------------------------------------------------------------------------------

    def render(self, messages: Sequence[Message], tools: Sequence[Mapping[str, Any]] | None = None,
               add_generation_prompt: bool = True) -> str:
        """The conversation as text through this format's template."""
        text = render_chat(self.tokenizer, messages, tools, add_generation_prompt=add_generation_prompt,
                           kind=self.kind)
        assert isinstance(text, str)
        return text

    def encode(self, text: str) -> list[int]:
        return encode_text(self.tokenizer, text)

    def _ids(self, messages: Sequence[Message], tools: Sequence[Mapping[str, Any]] | None,
             add_generation_prompt: bool) -> list[int]:
        return self.encode(self.render(messages, tools, add_generation_prompt))

    def _probe_template(self) -> tuple[int, bool]:
        """(end-of-turn id, whether calls are written inside <tool_call> tags), from probe renderings."""
        prefix = [{"role": "user", "content": _PROBE_USER}]
        before = self.render(prefix, None, True)
        plain = self.render(prefix + [{"role": "assistant", "content": _PROBE_TEXT}], None, False)
        if not plain.startswith(before):
            raise ValueError(f"the {self.kind} chat template's generation prompt is not a prefix of a rendered "
                             f"assistant message: {before[-80:]!r} vs {plain[len(before) - 80:][:160]!r}")
        rest = plain[len(before):]
        at = rest.find(_PROBE_TEXT)
        if at < 0:
            raise ValueError(f"the {self.kind} chat template does not render assistant content: {rest!r}")
        after = rest[at + len(_PROBE_TEXT):]
        ids = self.encode(after)
        marker = _decode(self.tokenizer, ids[:1]) if ids else ""
        if not marker.strip() or not after.startswith(marker) or not _is_added_token(self.tokenizer, ids[0]):
            raise ValueError(f"the {self.kind} chat template writes no single end-of-turn token after an assistant "
                             f"message (it writes {after!r}, whose first token is {marker!r})")
        call = {"name": _PROBE_TOOL, "arguments": {"probe_arg": 1}}
        with_call = self.render(prefix + [{"role": "assistant", "content": "", "tool_calls": [call]}], None, False)
        if not with_call.startswith(before) or _PROBE_TOOL not in with_call[len(before):]:
            raise ValueError(f"the {self.kind} chat template does not render assistant tool calls; use kind='hermes'")
        return int(ids[0]), OPEN_TAG in with_call[len(before):]

    @staticmethod
    def _check_prefix(head: Sequence[int], full: Sequence[int], what: str) -> None:
        if list(full[:len(head)]) != list(head):
            k = _first_difference(head, full)
            raise ValueError(f"chat template is not prefix-consistent for {what}: the tokens differ at position "
                             f"{k} ({list(head[k:k + 5])} vs {list(full[k:k + 5])})")

    # -- segments --------------------------------------------------------------------------------

    def prompt_ids(self, messages: Sequence[Message], tools: Sequence[Mapping[str, Any]] | None = None) -> list[int]:
        """The conversation with the assistant generation prompt, tokenized without added special tokens."""
        return self._ids(messages, tools, True)

    def assistant_ids(self, message: Message | str, tools: Sequence[Mapping[str, Any]] | None = None) -> list[int]:
        """One assistant message (content and/or ``tool_calls``) as the policy should generate it,
        ending with ``end_id``."""
        return self._assistant_ids(message, self._segment_tools(tools))

    def _assistant_ids(self, message: Message | str, tools: Sequence[Mapping[str, Any]] | None) -> list[int]:
        prefix = [{"role": "user", "content": _PROBE_USER}]
        head = self._cached_head(tools, lambda: self._ids(prefix, tools, True))
        full = self._ids(prefix + [_as_assistant(message)], tools, False)
        self._check_prefix(head, full, "an assistant message after the generation prompt")
        rest = full[len(head):]
        cut = _last(rest, self.end_id)
        if cut < 0:
            raise ValueError(f"the rendered assistant message has no end-of-turn token {self.end_id}")
        return rest[:cut + 1]

    def final_ids(self, text: str) -> list[int]:
        """An assistant message with plain text content (the final answer), ending with ``end_id``."""
        return self.assistant_ids({"role": "assistant", "content": text})

    def env_ids(self, tool_messages: Sequence[Message | str], tools: Sequence[Mapping[str, Any]] | None = None
                ) -> list[int]:
        """What follows an assistant turn that ended with ``end_id``: the rest of the template's text
        after the end token, the tool messages (one per call, in call order; a plain string is the
        content of a ``tool`` message) and the next assistant generation prompt."""
        return self._env_ids(tool_messages, self._segment_tools(tools))

    def _env_ids(self, tool_messages: Sequence[Message | str], tools: Sequence[Mapping[str, Any]] | None
                 ) -> list[int]:
        messages = [_as_env_message(m) for m in tool_messages]
        names = tuple(str(m.get("name") or _PROBE_TOOL) for m in messages if m.get("role") in ("tool", "ipython"))
        probe, head_ids = self._env_probe(names, tools)
        full = self._ids(probe + messages, tools, True)
        self._check_prefix(head_ids, full, "the messages after an assistant turn")
        return full[len(head_ids):]

    def _env_probe(self, names: tuple[str, ...], tools: Sequence[Mapping[str, Any]] | None
                   ) -> tuple[list[dict[str, Any]], list[int]]:
        """(probe conversation ending with an assistant turn, its tokens up to that turn's end token).

        The probe turn has one call per tool message; templates that allow one call per message only
        (Llama 3.1 raises on more) get a single-call probe instead."""
        key = (self._tools_key(tools), names)
        if key in self._env_heads:
            return self._env_heads[key]
        options = [names] + ([names[:1]] if len(names) > 1 else [])
        failure: Exception | None = None
        for probe_names in options:
            calls = [{"name": n, "arguments": {}} for n in probe_names]
            probe: list[dict[str, Any]] = [{"role": "user", "content": _PROBE_USER},
                                           {"role": "assistant", "content": "" if calls else _PROBE_TEXT,
                                            **({"tool_calls": calls} if calls else {})}]
            try:
                ids = self._ids(probe, tools, False)
            except Exception as err:  # the template refused the probe (e.g. raise_exception): try the next
                failure = err
                continue
            start = len(self._ids(probe[:1], tools, True))
            cut = _last(ids, self.end_id)
            if cut < start:
                raise ValueError(f"the rendered probe assistant message has no end-of-turn token {self.end_id}")
            if len(self._env_heads) > 256:
                self._env_heads.clear()
            self._env_heads[key] = (probe, ids[:cut + 1])
            return self._env_heads[key]
        assert failure is not None
        raise failure

    @staticmethod
    def _tools_key(tools: Any) -> str:
        if not tools:
            return ""
        return hashlib.sha1(json.dumps(tools, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()

    def _segment_tools(self, tools: Sequence[Mapping[str, Any]] | None) -> Sequence[Mapping[str, Any]] | None:
        """``tools``, or None when the template's segments do not depend on its tool listing (checked
        once per tool list on probe turns): the probe renderings then skip the long listing."""
        if not tools:
            return None
        key = self._tools_key(tools)
        if key not in self._tools_matter:
            name = str(_tool_schema(tools[0]).get("name") or _PROBE_TOOL)
            turn = {"role": "assistant", "content": "", "tool_calls": [{"name": name, "arguments": {"probe_arg": 1}}]}
            env = [{"role": "tool", "name": name, "content": '{"probe": 1}'}, {"role": "tool", "name": name, "content": "x"}]
            final = {"role": "assistant", "content": _PROBE_TEXT}
            if len(self._tools_matter) > 256:
                self._tools_matter.clear()
            self._tools_matter[key] = (self._assistant_ids(turn, tools) != self._assistant_ids(turn, None)
                                       or self._assistant_ids(final, tools) != self._assistant_ids(final, None)
                                       or self._env_ids(env, tools) != self._env_ids(env, None))
        return tools if self._tools_matter[key] else None

    def _cached_head(self, tools: Any, build: Any) -> list[int]:
        key = self._tools_key(tools)
        if key not in self._head_cache:
            if len(self._head_cache) > 256:
                self._head_cache.clear()
            self._head_cache[key] = build()
        return self._head_cache[key]

    def conversation_ids(self, messages: Sequence[Message], tools: Sequence[Mapping[str, Any]] | None = None
                         ) -> tuple[list[int], list[int]]:
        """A whole conversation built segment by segment, with flags 1 on the assistant tokens (what
        SFT trains on): ``prompt_ids`` up to the first assistant message, then ``assistant_ids`` and
        ``env_ids`` in turn.

        Every step is checked against the template's rendering of the conversation so far, so the
        segments are exactly the tokens the template shows in the longer conversation.

        Raises:
          ValueError: naming the message index where the template is not prefix-consistent (e.g. it
            rewrites or drops earlier assistant content such as reasoning), or two assistant
            messages follow each other.
        """
        msgs = list(messages)
        n = len(msgs)
        i = next((k for k, m in enumerate(msgs) if m.get("role") == "assistant"), n)
        ids = self.prompt_ids(msgs[:i], tools) if i < n else self._ids(msgs, tools, True)
        flags = [0] * len(ids)
        segments = [(0, 0)]  # (first token, index of the first message the segment renders)

        def check(rendered: list[int], upto: int, exact: bool) -> None:
            if (rendered == ids) if exact else (rendered[:len(ids)] == ids):
                return
            k = _first_difference(ids, rendered)
            index = max(m for start, m in segments if start <= k) if k < len(ids) else upto
            raise ValueError(
                f"chat template is not prefix-consistent at message {index} ({msgs[index].get('role')}): rendering "
                f"messages[:{upto + 1}] changes the tokens it was given earlier (first difference at token {k}); "
                "the template rewrites or drops earlier content (e.g. reasoning), so turns cannot be trained "
                "segment by segment")

        while i < n:
            segments.append((len(ids), i))
            a = self.assistant_ids(msgs[i], tools)
            ids += a
            flags += [1] * len(a)
            check(self._ids(msgs[:i + 1], tools, False), i, exact=False)
            j = i + 1
            while j < n and msgs[j].get("role") != "assistant":
                j += 1
            if j == i + 1:
                if j < n:
                    raise ValueError(f"messages {i} and {j} are consecutive assistant messages")
                break
            segments.append((len(ids), i + 1))
            e = self.env_ids(msgs[i + 1:j], tools)
            ids += e
            flags += [0] * len(e)
            check(self._ids(msgs[:j], tools, True), j - 1, exact=True)
            i = j
        return ids, flags

    # -- reading the policy's output ---------------------------------------------------------------

    def decode(self, ids: Sequence[int]) -> str:
        """Text of generated ids, without end / stop / pad tokens."""
        drop = {self.end_id, self.pad_id, *self.stop_ids}
        return _decode(self.tokenizer, [int(i) for i in ids if int(i) not in drop])

    def parse(self, text: str) -> Any:
        """The tool calls in the policy's text as a :class:`toolrl.rewards.parse.ParseResult`.

        ``<tool_call>`` blocks (any whitespace inside); for templates that write calls without tags
        (Llama 3.x) bare JSON call objects are converted to blocks first (see
        :func:`tagless_calls_to_blocks`).
        """
        if not self.calls_tagged:
            text = tagless_calls_to_blocks(text)
        return parse_tool_calls(text)

"""Optional LLM judge: the last resort of call matching (the benchmark's "LLM-based match", GPT-4o).

Off by default (the evaluation machines have no network). A judge is any
``Callable[[PredictedCall, GoldenCall], bool]``; pass one to :func:`toolrl.eval.evaluator.evaluate`,
or configure ``eval.judge.enabled=True`` with ``eval.judge.endpoint`` (an OpenAI-compatible server:
``http://host:8000/v1`` or the full ``.../chat/completions`` URL; the bearer key is read from the
environment variable named by ``JudgeSettings.api_key_env``, ``OPENAI_API_KEY`` by default) and
``eval.judge.model`` (default ``gpt-4o-2024-05-13``, the benchmark's judge model).

:class:`HttpJudge` is the client (the standard library's ``urllib``, no extra dependency). Besides
``judge(predicted, golden) -> bool`` it offers ``decide(predicted, golden, context) -> bool | None``,
which the official protocol (:mod:`toolrl.eval.official`) uses: ``context`` carries the tool list and
the conversation so far, as the benchmark gives its judge; None means the server gave no answer
(network error, HTTP error, no content), so the call stays *undecided*. A reply whose verdict cannot
be read counts as "not equivalent", as upstream treats it. Answers are memoised per (call, call,
context), and counted in ``stats``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from toolrl.eval.match import Judge

DEFAULT_JUDGE_MODEL = "gpt-4o-2024-05-13"

SYSTEM_PROMPT = """You decide whether two function calls, made at the same point of a conversation with \
the same tool list, are equivalent: whether calling either one would serve the user the same way.

Treat as equivalent:
- the same value written in another language or script (a city name in English or in Chinese);
- the same value written in another form with the same meaning (an abbreviation, a fuller or shorter \
name of the same place or airport, with or without the country);
- the same arguments in another order;
- an omitted parameter whose value would have been the parameter's default in the tool description.
Anything else that changes what the call asks for makes them different.

Reply with one JSON object and nothing else: {"is_equal": true or false, "reason": "one sentence"}"""


class JudgeConfigError(ValueError):
    """The judge is enabled but cannot be built."""


@dataclasses.dataclass(frozen=True)
class JudgeSettings:
    """Attributes: enabled (use a judge at all); endpoint (URL of an OpenAI-compatible server); model;
    api_key_env (environment variable holding the bearer key, may be unset for local servers);
    timeout (seconds per request); retries (after a failed request)."""

    enabled: bool = False
    endpoint: str = ""
    model: str = ""
    api_key_env: str = "OPENAI_API_KEY"
    timeout: float = 60.0
    retries: int = 2


def parse_verdict(text: Any) -> bool | None:
    """``is_equal`` from a judge reply (a JSON object, possibly in a code fence); None if unreadable."""
    if not isinstance(text, str):
        return None
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        obj = json.loads(text[start:end + 1])
    except json.JSONDecodeError:
        return None
    value = obj.get("is_equal") if isinstance(obj, dict) else None
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


def _call_json(call: Any) -> dict[str, Any]:
    name = getattr(call, "name", None) or getattr(call, "function", "")
    return {"name": name, "arguments": getattr(call, "arguments", {})}


@dataclasses.dataclass
class HttpJudge:
    """An LLM judge behind an OpenAI-compatible ``/chat/completions`` endpoint (see the module docstring)."""

    endpoint: str
    model: str = DEFAULT_JUDGE_MODEL
    api_key: str = ""
    timeout: float = 60.0
    retries: int = 2
    stats: dict[str, int] = dataclasses.field(default_factory=lambda: {"asked": 0, "failed": 0, "unreadable": 0})
    _memo: dict[str, bool | None] = dataclasses.field(default_factory=dict, repr=False)

    @property
    def url(self) -> str:
        base = self.endpoint.rstrip("/")
        return base if base.endswith("/chat/completions") else base + "/chat/completions"

    def messages(self, predicted: Any, golden: Any, context: Mapping[str, Any] | None = None) -> list[dict[str, str]]:
        context = context or {}
        parts = [
            "Tool list:\n" + json.dumps(list(context.get("functions", ())), ensure_ascii=False),
            "Conversation so far:\n" + json.dumps(list(context.get("history", ())), ensure_ascii=False),
            "Function call 1:\n" + json.dumps(_call_json(predicted), ensure_ascii=False),
            "Function call 2:\n" + json.dumps(_call_json(golden), ensure_ascii=False),
        ]
        return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": "\n\n".join(parts)}]

    def _post(self, body: dict[str, Any]) -> str:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url, json.dumps(body).encode(), headers, method="POST")
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            reply = json.loads(response.read().decode("utf-8"))
        content = reply["choices"][0]["message"]["content"]
        if not isinstance(content, str):
            raise ValueError("the reply has no text content")
        return content

    def decide(self, predicted: Any, golden: Any, context: Mapping[str, Any] | None = None) -> bool | None:
        """True / False, or None when the server gave no answer (the call stays undecided)."""
        messages = self.messages(predicted, golden, context)
        key = json.dumps(messages, sort_keys=True, ensure_ascii=False)
        if key in self._memo:
            return self._memo[key]
        self.stats["asked"] += 1
        body = {"model": self.model, "messages": messages, "temperature": 0}
        for attempt in range(self.retries + 1):
            try:
                text = self._post(body)
                break
            except (urllib.error.URLError, OSError, ValueError, KeyError, IndexError, TypeError):
                if attempt < self.retries:
                    time.sleep(min(8.0, 0.5 * 2 ** attempt))
        else:
            self.stats["failed"] += 1
            return None  # not memoised: a later call may reach the server
        verdict = parse_verdict(text)
        if verdict is None:
            self.stats["unreadable"] += 1
            verdict = False  # upstream: an unreadable judge reply is not a match
        self._memo[key] = verdict
        return verdict

    def __call__(self, predicted: Any, golden: Any, context: Mapping[str, Any] | None = None) -> bool:
        return bool(self.decide(predicted, golden, context))


def make_judge(settings: JudgeSettings) -> Judge | None:
    """None when disabled; an :class:`HttpJudge` for the endpoint; a clear error when enabled without one."""
    if not settings.enabled:
        return None
    if not settings.endpoint:
        raise JudgeConfigError(
            "the LLM judge is enabled (config.judge.enabled=True) but config.judge.endpoint is empty; "
            "set an endpoint or disable the judge")
    if not re.match(r"https?://", settings.endpoint):
        raise JudgeConfigError(f"eval.judge.endpoint={settings.endpoint!r} is not an http(s) URL")
    return HttpJudge(settings.endpoint, settings.model or DEFAULT_JUDGE_MODEL,
                     os.environ.get(settings.api_key_env, "") if settings.api_key_env else "",
                     settings.timeout, settings.retries)

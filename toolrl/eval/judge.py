"""Optional LLM judge: the last resort of call matching (the benchmark's "LLM-based match", GPT-4o).

Off by default (the evaluation machines have no network). A judge is any
``Callable[[PredictedCall, GoldenCall], bool]``; pass one to :func:`toolrl.eval.evaluator.evaluate`,
or configure ``eval.judge.enabled=True`` with ``eval.judge.endpoint`` (an OpenAI-compatible server:
``http://host:8000/v1`` or the full ``.../chat/completions`` URL; the bearer key is read from the
environment variable named by ``JudgeSettings.api_key_env``, ``OPENAI_API_KEY`` by default) and
``eval.judge.model`` (default ``gpt-4o-2024-05-13``, the benchmark's judge model).

:class:`HttpJudge` is the client (``httpx``). Besides
``judge(predicted, golden) -> bool`` it offers ``decide(predicted, golden, context) -> bool | None``,
which the official protocol (:mod:`toolrl.eval.official`) uses: ``context`` carries the tool list and
the conversation so far, as the benchmark gives its judge; None means the server gave no answer
(network error, HTTP error, no content), so the call stays *undecided*. A reply whose verdict cannot
be read counts as "not equivalent", as upstream treats it. Answers are memoised per (call, call,
context), and counted in ``stats``.

The transport is careful with the key and with a misbehaving server: a redirect is followed only to
the same scheme, host and port (the bearer key never goes to another host; a redirect elsewhere is a
failed request); ``timeout`` bounds each request in all (connecting, sending and every read of a
reply that trickles in), not each socket read; ``retries`` failed requests are repeated; a reply
larger than ``MAX_REPLY_BYTES`` or nested deeper than ``MAX_JSON_DEPTH`` is a failed request, never a
RecursionError. ``eval.judge.timeout`` and ``eval.judge.retries`` configure them
(:meth:`JudgeSettings.from_config`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from toolrl.eval.match import Judge

DEFAULT_JUDGE_MODEL = "gpt-4o-2024-05-13"
MAX_REPLY_BYTES = 4 << 20  # a chat completion is kilobytes
MAX_JSON_DEPTH = 64  # a chat completion is nested a handful of levels
MAX_REDIRECTS = 3

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


class JudgeTransportError(RuntimeError):
    """One judge request failed: a redirect to another host, the deadline, a reply too big or too deep."""


def json_depth(text: str, limit: int) -> int:
    """The nesting depth of the JSON `text` (brackets outside strings), counting no further than `limit` + 1."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    break
        elif char in "]}":
            depth -= 1
    return deepest


def loads_limited(text: str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """`json.loads` of a reply nested no deeper than `max_depth` (deeper: ValueError, not RecursionError)."""
    if json_depth(text, max_depth) > max_depth:
        raise ValueError(f"JSON nested deeper than {max_depth} levels")
    return json.loads(text)


@dataclasses.dataclass(frozen=True)
class JudgeSettings:
    """Attributes: enabled (use a judge at all); endpoint (URL of an OpenAI-compatible server); model;
    api_key_env (environment variable holding the bearer key, may be unset for local servers);
    timeout (seconds one request may take in all); retries (after a failed request)."""

    enabled: bool = False
    endpoint: str = ""
    model: str = ""
    api_key_env: str = "OPENAI_API_KEY"
    timeout: float = 60.0
    retries: int = 2

    @classmethod
    def from_config(cls, judge: Any) -> "JudgeSettings":
        """From the ``eval.judge`` section of a config (timeout / retries default when absent: old runs)."""
        get = judge.get if hasattr(judge, "get") else (lambda k, d=None: getattr(judge, k, d))
        return cls(bool(get("enabled", False)), str(get("endpoint", "") or ""), str(get("model", "") or ""),
                   timeout=float(get("timeout", cls.timeout)), retries=int(get("retries", cls.retries)))


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


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port


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
        """One request within `timeout` seconds in all; the reply's text content."""
        deadline = time.monotonic() + self.timeout
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        payload = json.dumps(body).encode()
        url = self.url
        origin = _origin(url)
        with httpx.Client(follow_redirects=False, trust_env=False) as client:
            for _ in range(MAX_REDIRECTS + 1):
                raw, location = self._send(client, url, payload, headers, deadline)
                if location is None:
                    break
                target = urljoin(url, location)
                if _origin(target) != origin:  # never send the key (or the conversation) to another host
                    raise JudgeTransportError(f"the judge endpoint redirected to another host ({_origin(target)})")
                url = target
            else:
                raise JudgeTransportError(f"more than {MAX_REDIRECTS} redirects")
        reply = loads_limited(raw.decode("utf-8"))
        content = reply["choices"][0]["message"]["content"]
        if not isinstance(content, str):
            raise ValueError("the reply has no text content")
        return content

    @staticmethod
    def _send(client: httpx.Client, url: str, payload: bytes, headers: dict[str, str],
              deadline: float) -> tuple[bytes, str | None]:
        """(body, None), or (b"", Location) for a redirect; every wait bounded by `deadline`."""
        def left() -> float:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise JudgeTransportError("the judge request ran past its timeout")
            return remaining

        with client.stream("POST", url, content=payload, headers=headers, timeout=httpx.Timeout(left())) as response:
            if response.is_redirect:
                return b"", response.headers.get("location", "")
            response.raise_for_status()
            chunks, size = [], 0
            stream = response.iter_raw()
            while True:
                # Each read may wait only for what is left of the request's time (httpcore reads the
                # request's timeout extension at every read).
                response.request.extensions.setdefault("timeout", {})["read"] = left()
                try:
                    chunk = next(stream)
                except StopIteration:
                    break
                size += len(chunk)
                if size > MAX_REPLY_BYTES:
                    raise JudgeTransportError(f"the judge reply is larger than {MAX_REPLY_BYTES} bytes")
                chunks.append(chunk)
                left()
            return b"".join(chunks), None

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
            except (httpx.HTTPError, JudgeTransportError, OSError, ValueError, KeyError, IndexError, TypeError):
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
    if settings.timeout <= 0 or settings.retries < 0:
        raise JudgeConfigError(f"eval.judge.timeout={settings.timeout} must be > 0 and eval.judge.retries="
                               f"{settings.retries} >= 0")
    return HttpJudge(settings.endpoint, settings.model or DEFAULT_JUDGE_MODEL,
                     os.environ.get(settings.api_key_env, "") if settings.api_key_env else "",
                     settings.timeout, settings.retries)

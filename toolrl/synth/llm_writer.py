"""An LLM query writer: one natural user request per trace, from an OpenAI-compatible endpoint (opt-in).

The paper writes the queries of its synthesized traces with an LLM. :class:`LLMQueryWriter` does the
same against any ``/chat/completions`` endpoint (vLLM, llama.cpp server, OpenAI): the prompt lists the
trace's calls in plain words (what the traveller wants done, in order) and the *free* argument values
the request must state (:func:`toolrl.synth.query.free_values`); values taken from earlier responses
(ids) are never shown, so the model cannot leak them. The reply is checked by an injectable validator
(``validate(trace, query) -> list of missing values``); a reply that fails it, or names a tool, is
rejected and ``write`` returns None, so the caller falls back to its offline writer.

Network behaviour: retries on connection errors, timeouts, HTTP 429 and 5xx with exponential backoff
(``Retry-After`` honoured on 429), never on another 4xx; ``timeout_s`` is the deadline of one ``write``
over all its attempts and waits; redirects are never followed (a 3xx is a failure). The API key is a
value passed in (:meth:`LLMQueryWriter.from_env` reads the environment variable a config names); it is
sent only in the ``Authorization`` header and never logged or shown in ``repr``.

Replies are cached on disk (sqlite3, ``cache_path``) under a hash of (model, temperature, messages,
nonce), the nonce drawn from the caller's ``rng``: a seeded re-run of synthesis asks for the same keys
and sends no request. The raw reply is cached, so a changed validator re-judges it. Counters in
:attr:`LLMQueryWriter.stats`: ``requests`` (HTTP requests sent), ``cache_hits``, ``rejected`` (replies
that failed validation) and ``failed`` (queries the endpoint could not answer).
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import logging
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from toolrl.synth.query import TOOL_LEADS, free_values, missing_free_values, value_text
from toolrl.synth.types import Trace

log = logging.getLogger(__name__)

Validator = Callable[[Trace, str], list]

SYSTEM_PROMPT = (
    "You write the requests that travellers send to a travel-booking assistant. Given the steps the "
    "assistant will take and the details the traveller knows, write ONE natural request from the "
    "traveller, in the first person or on behalf of a friend or relative, as a single paragraph. It must "
    "state every listed detail, with each value written exactly as given (same spelling, digits, date "
    "format and codes). Do not number steps, do not name functions or tools, do not invent ids, and do "
    "not mention anything the assistant will only learn from an earlier result. Answer with the request "
    "only, without quotes or any preface."
)

EXAMPLE = (
    "Example of the style (for other details): \"I'm flying into Lisbon on 2024-12-03 with my partner and "
    "we'd like a hotel close to the old town for three nights, checking out on 2024-12-06. Could you find "
    "a few options and tell me what the best-reviewed one offers for breakfast?\""
)

RETRY_STATUSES = frozenset({429}) | frozenset(range(500, 600))


def describe_trace(trace: Trace) -> str:
    """The trace's calls in plain words for the prompt: the steps in order, then the values to state.

    Dependent arguments are named only as coming from an earlier step; their values are left out.
    """
    by_call: dict[int, list[tuple[str, Any]]] = {}
    for index, path, value in free_values(trace):
        by_call.setdefault(index, []).append((path, value))
    steps, details = [], []
    for index, call in enumerate(trace.calls):
        lead = TOOL_LEADS.get(call.name, call.name.replace("_", " ").lower())
        line = f"{index + 1}. {lead}"
        bound = trace.bindings[index] if trace.bindings else ()
        sources = sorted({b.from_call + 1 for b in bound})
        if sources:
            line += " (with what step " + " and ".join(map(str, sources)) + " finds; do not state it)"
        steps.append(line)
        for path, value in by_call.get(index, []):
            details.append(f"- {_words(path)}: {value_text(value)}")
    text = "What the assistant will do for the traveller, in order:\n" + "\n".join(steps)
    if details:
        text += "\n\nDetails the request must state (values exactly as written):\n" + "\n".join(
            dict.fromkeys(details))
    return text


def build_messages(trace: Trace) -> list[dict[str, str]]:
    """The chat messages that ask for one query for ``trace``."""
    return [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": describe_trace(trace) + "\n\n" + EXAMPLE}]


def clean_reply(text: str) -> str:
    """One paragraph without wrapping quotes or a ``Request:`` label."""
    text = " ".join(text.split())
    text = re.sub(r"^(request|query|user)\s*:\s*", "", text, flags=re.IGNORECASE)
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    return text


def cache_key(model: str, temperature: float, messages: list[dict[str, str]], nonce: int) -> str:
    body = json.dumps([model, float(temperature), messages, int(nonce)], sort_keys=True, ensure_ascii=False,
                      separators=(",", ":"))
    return hashlib.blake2b(body.encode(), digest_size=16).hexdigest()


class AnswerCache:
    """Replies on disk (sqlite3), keyed by :func:`cache_key`."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False)
        self._db.execute("CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, model TEXT, answer TEXT)")
        self._db.commit()

    def get(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT answer FROM answers WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def put(self, key: str, model: str, answer: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO answers VALUES (?, ?, ?)", (key, model, answer))
            self._db.commit()

    def close(self) -> None:
        with self._lock:
            self._db.close()


class EndpointError(RuntimeError):
    """The endpoint gave no usable answer (after any retries); the message never holds the key."""


class LLMQueryWriter:
    """Writes a trace's query with an LLM (see module docstring). Off unless a caller builds one."""

    name = "llm"

    def __init__(self, base_url: str, model: str, api_key: str = "", temperature: float = 0.7,
                 timeout_s: float = 30.0, retries: int = 3, backoff_s: float = 0.5,
                 cache_path: str | os.PathLike | None = None, validate: Validator = missing_free_values):
        """
        Args:
          base_url: the API root, e.g. ``http://localhost:8000/v1`` (``/chat/completions`` is appended).
          model: the model name sent in each request.
          api_key: the key itself ("" = no Authorization header); see :meth:`from_env`.
          temperature: sampling temperature; part of the cache key.
          timeout_s: deadline of one ``write`` over all attempts and backoff waits.
          retries: further attempts after the first on connection errors, timeouts, 429 and 5xx.
          backoff_s: wait before the first retry; doubles each retry.
          cache_path: sqlite3 file of replies (None = no cache).
          validate: ``(trace, query) -> list`` of free values the query misses (empty = valid).
        """
        if not base_url or not model:
            raise ValueError("LLMQueryWriter needs base_url and model")
        if timeout_s <= 0 or retries < 0 or backoff_s < 0:
            raise ValueError(f"timeout_s={timeout_s} must be > 0, retries={retries} and backoff_s={backoff_s} >= 0")
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.temperature = float(temperature)
        self.timeout_s = float(timeout_s)
        self.retries = int(retries)
        self.backoff_s = float(backoff_s)
        self.validate = validate
        self._headers = {"Content-Type": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._client = httpx.Client(follow_redirects=False)
        self._cache = AnswerCache(cache_path) if cache_path else None
        self.counts = {"requests": 0, "cache_hits": 0, "rejected": 0, "failed": 0}

    @classmethod
    def from_env(cls, base_url: str, model: str, api_key_env: str = "OPENAI_API_KEY",
                 environ: dict[str, str] | None = None, **kwargs: Any) -> "LLMQueryWriter":
        """A writer whose key is read from the environment variable ``api_key_env`` ("" when unset)."""
        environ = os.environ if environ is None else environ
        return cls(base_url, model, api_key=environ.get(api_key_env, "") if api_key_env else "", **kwargs)

    def __repr__(self) -> str:  # the key stays out
        return f"LLMQueryWriter(url={self.url!r}, model={self.model!r}, temperature={self.temperature})"

    @property
    def stats(self) -> dict[str, int]:
        return dict(self.counts)

    def close(self) -> None:
        self._client.close()
        if self._cache is not None:
            self._cache.close()

    def __enter__(self) -> "LLMQueryWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ writing
    def write(self, trace: Trace, rng: np.random.Generator) -> str | None:
        """A query for ``trace``, or None when the endpoint fails or the reply does not validate."""
        messages = build_messages(trace)
        nonce = int(rng.integers(2**31 - 1))
        key = cache_key(self.model, self.temperature, messages, nonce)
        answer = self._cache.get(key) if self._cache is not None else None
        if answer is not None:
            self.counts["cache_hits"] += 1
        else:
            try:
                answer = self._complete(messages, nonce)
            except EndpointError as err:
                self.counts["failed"] += 1
                log.warning("LLM query writer: %s", err)
                return None
            if self._cache is not None:
                self._cache.put(key, self.model, answer)
        query = clean_reply(answer)
        if not query or self.validate(trace, query) or _names_a_tool(trace, query):
            self.counts["rejected"] += 1
            return None
        return query

    def _complete(self, messages: list[dict[str, str]], nonce: int) -> str:
        """The reply text of one chat completion, with retries inside the deadline."""
        body = {"model": self.model, "messages": messages, "temperature": self.temperature, "seed": nonce}
        deadline = time.monotonic() + self.timeout_s
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise EndpointError(f"no answer from {self.url} within {self.timeout_s:g}s")
            retry_after = None
            try:
                status, payload, retry_after = self._post(body, deadline)
            except (httpx.TransportError, TimeoutError) as err:  # connection refused/reset, timeouts
                problem = f"{type(err).__name__} from {self.url}"
            else:
                if status == 200:
                    return _reply_text(payload, self.url)
                if status not in RETRY_STATUSES:
                    raise EndpointError(f"HTTP {status} from {self.url} (not retried)")
                problem = f"HTTP {status} from {self.url}"
            if attempt >= self.retries:
                raise EndpointError(f"{problem} after {attempt + 1} attempts")
            wait = self.backoff_s * 2**attempt
            if retry_after is not None:
                wait = max(wait, retry_after)
            if time.monotonic() + wait >= deadline:
                raise EndpointError(f"{problem}; the next retry would pass the {self.timeout_s:g}s deadline")
            time.sleep(wait)
            attempt += 1

    def _post(self, body: dict[str, Any], deadline: float) -> tuple[int, bytes, float | None]:
        """(status, body bytes, Retry-After seconds) of one request; the read is cut at the deadline."""
        self.counts["requests"] += 1
        remaining = max(deadline - time.monotonic(), 0.001)
        chunks = []
        with self._client.stream("POST", self.url, json=body, headers=self._headers,
                                 timeout=httpx.Timeout(remaining)) as reply:
            for chunk in reply.iter_bytes():
                chunks.append(chunk)
                if time.monotonic() > deadline:  # a server trickling bytes past the deadline
                    raise TimeoutError("reply not complete by the deadline")
                if reply.status_code != 200:
                    break  # error bodies are not read
            return reply.status_code, b"".join(chunks), _retry_after(reply.headers.get("retry-after"))


def _reply_text(payload: bytes, url: str) -> str:
    try:
        content = json.loads(payload)["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as err:
        raise EndpointError(f"malformed chat completion from {url} ({type(err).__name__})") from None
    if not isinstance(content, str):
        raise EndpointError(f"chat completion from {url} has no text content")
    return content


def _retry_after(value: str | None) -> float | None:
    """Seconds of a ``Retry-After`` header (delta seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        return max(email.utils.parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
    except (TypeError, ValueError):
        return None


def _names_a_tool(trace: Trace, query: str) -> bool:
    return any(call.name in query for call in trace.calls)


def _words(path: str) -> str:
    """``legs[0].fromId`` -> ``legs fromId``; ``pick_up_date`` -> ``pick up date``."""
    return re.sub(r"\[\d+\]|\[\*\]", "", path).replace("_", " ").replace(".", " ")

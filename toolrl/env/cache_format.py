"""What a response-cache file holds and how a served payload is checked (docs/design.md, "Response
cache and environment"): the format version, the rule for which responses are stored at all, the
canonical JSON a response is stored as, the checksum stored with it, and :class:`CacheError`.

Shared by the build (:mod:`toolrl.env.cache_build`) and the reader (:mod:`toolrl.env.cache`).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

FORMAT_VERSION = "1"


class CacheError(RuntimeError):
    """The cache file is missing, truncated, corrupted or of another format."""


def is_success_response(response: Any) -> bool:
    """True for a real, usable API response: non-empty, and for dicts no error and status not false."""
    if response is None or response == "" or response == {} or response == []:
        return False
    if isinstance(response, dict):
        return "error" not in response and response.get("status", True) is not False
    return isinstance(response, (list, str, int, float))


def response_checksum(response: Any) -> str:
    """The checksum stored with a response: blake2b of its key-sorted JSON (responses that differ only
    in key order are the same response)."""
    ordered = json.dumps(response, sort_keys=True, ensure_ascii=False)
    return hashlib.blake2b(ordered.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def canonical_response_json(response: Any) -> str:
    """Responses are stored as recorded (no numeric-string conversion), key order kept."""
    return json.dumps(response, ensure_ascii=False, separators=(",", ":"))

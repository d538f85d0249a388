"""The Booking.com tool environment: validates a call against the tool schemas, answers from the cache.

``execute(call)`` never raises on any call, whatever the model wrote. Every failure answers like
the real API does, a dict with ``status: false``, an ``error`` code and a human ``message``:

  ``invalid_call``          the call is not ``{"name": str, "arguments": dict | JSON string}``
  ``unknown_tool``          no schema with that name
  ``malformed_arguments``   arguments given as a string that is not a JSON object, or holding a
                            value that is not JSON (NaN, Infinity, a lone surrogate, another type)
  ``too_deep``              arguments nested more than ``limits.MAX_DEPTH`` levels
  ``too_large``             a string, a number (digits) or the arguments as a whole over the limits
                            of :mod:`toolrl.env.limits` (checked before anything else reads them)
  ``missing_parameter``     a required parameter is absent
  ``unknown_parameter``     a parameter the schema does not define
  ``wrong_type``            a value of the wrong JSON type (numbers accept numeric strings, strings
                            accept numbers: the real API takes query strings; arrays need a list)
  ``no_results``            valid call, but the cache holds no response for it (a real miss)

The one exception is :class:`toolrl.env.cache.CacheError`, raised when the cache file itself is
damaged (e.g. a stored response is not valid JSON); its message names the file and the key. That is
a fault of the machine, not of the call: answering it with an error response would silently
penalise a correct call and train the policy against a wrong signal, so it stops the run instead.

The full response is what ``execute`` returns (and what the cache keeps); ``render`` applies the
:class:`ViewPolicy` that bounds what goes into a prompt.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from collections.abc import Mapping
from typing import Any

from toolrl.data import paths
from toolrl.data.schemas import ToolSchema, load_tool_schemas
from toolrl.env.cache import ResponseCache, open_default_cache
from toolrl.env.cache_format import is_success_response
from toolrl.env.canonical import canonical_value
from toolrl.env.limits import check_arguments, loads_arguments, short_repr


ERROR_CODES = ("invalid_call", "unknown_tool", "malformed_arguments", "too_deep", "too_large",
               "missing_parameter", "unknown_parameter", "wrong_type", "no_results")


def error_response(code: str, message: str) -> dict[str, Any]:
    """An error answer in the real API's shape."""
    return {"status": False, "error": code, "message": message}


@dataclasses.dataclass(frozen=True)
class ExecutionResult:
    """What happened to one call: the (full) response, whether it hit the cache, and the error code."""

    name: str | None
    arguments: dict[str, Any] | None
    response: Any
    error: str | None

    @property
    def hit(self) -> bool:
        return self.error is None

    @property
    def success(self) -> bool:
        return self.error is None and is_success_response(self.response)


@dataclasses.dataclass(frozen=True)
class ViewPolicy:
    """How a response is shown in a prompt; the cache keeps the full response.

    Applied in order: drop the named fields anywhere in the tree; keep the first
    ``max_list_items`` of every list (a string ``"... N more items"`` marks the cut); if the JSON is
    longer than ``max_chars`` and ``keep_keys`` is set, keep only the fields whose name matches it
    (and the objects and lists leading to them); if still longer, halve the list limit until it fits
    or reaches 1, then cut the text at ``max_chars`` with a ``...[truncated]`` marker. ``None``
    disables a rule.

    ``keep_keys`` exists because a plain cut loses what the next call needs: at 200 characters the
    ids, slugs and search keys later calls take (``destinations[*].id`` of Search_Attraction_Location,
    ``search_key`` of Search_Car_Rentals) sit past the cut in most multi-step tasks, which makes them
    unsolvable (the fit report counts them). :data:`SALIENT_KEYS` keeps identifiers, names and
    coordinates.
    """

    max_list_items: int | None = 5
    drop_fields: tuple[str, ...] = ()
    max_chars: int | None = 6000
    keep_keys: str | None = None

    def render(self, response: Any) -> str:
        pruned = _drop_fields(response, frozenset(self.drop_fields)) if self.drop_fields else response
        limit = self.max_list_items
        text = _dumps(_truncate_lists(pruned, limit))
        if self.keep_keys is not None and self.max_chars is not None and len(text) > self.max_chars:
            kept = _keep_fields(pruned, re.compile(self.keep_keys))
            pruned = pruned if kept is _NOTHING else kept
            text = _dumps(_truncate_lists(pruned, limit))
        while self.max_chars is not None and len(text) > self.max_chars and (limit is None or limit > 1):
            limit = max(1, (limit or _longest_list(pruned)) // 2)
            text = _dumps(_truncate_lists(pruned, limit))
        if self.max_chars is not None and len(text) > self.max_chars:
            marker = "...[truncated]"
            text = text[: max(0, self.max_chars - len(marker))] + marker
        return text


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# Field names of what later calls take and what tells results apart: ids (``id``, ``hotel_id``,
# ``productId``, ``cityUfi``), slugs, keys and tokens, codes, names / titles / labels, types, and
# coordinates. Matched against each field name (re.search).
SALIENT_KEYS = (r"(?i:^(id|ids|slug|token|key|code|ufi|name|title|label|type|lat|lng|latitude|longitude|"
                r"status|message|data|result|results)$)|(_id|_ids|_key|_code|_type|_name|_ufi|_token)$|"
                r"(Id|Ids|Slug|Key|Token|Code|Ufi|Name|Title|Label|Type)$")
_NOTHING = object()


def _keep_fields(value: Any, pattern: re.Pattern[str]) -> Any:
    """The tree with only the fields whose name matches ``pattern`` (any value under them kept whole)
    and the containers on the way to one; ``_NOTHING`` when no field matches."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if pattern.search(str(key)) and not isinstance(item, (dict, list)):
                out[key] = item
            else:
                kept = _keep_fields(item, pattern)
                if kept is not _NOTHING:
                    out[key] = kept
                elif pattern.search(str(key)):
                    out[key] = item
        return out if out else _NOTHING
    if isinstance(value, list):
        items = [_keep_fields(item, pattern) for item in value]
        items = [item for item in items if item is not _NOTHING]
        return items if items else _NOTHING
    return _NOTHING


def _drop_fields(value: Any, fields: frozenset[str]) -> Any:
    if isinstance(value, dict):
        return {k: _drop_fields(v, fields) for k, v in value.items() if k not in fields}
    if isinstance(value, list):
        return [_drop_fields(v, fields) for v in value]
    return value


def _truncate_lists(value: Any, limit: int | None) -> Any:
    if isinstance(value, dict):
        return {k: _truncate_lists(v, limit) for k, v in value.items()}
    if isinstance(value, list):
        kept = value if limit is None else value[:limit]
        out = [_truncate_lists(v, limit) for v in kept]
        if len(value) > len(kept):
            out.append(f"... {len(value) - len(kept)} more items")
        return out
    return value


def _longest_list(value: Any) -> int:
    if isinstance(value, dict):
        return max((_longest_list(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return max([len(value)] + [_longest_list(v) for v in value])
    return 0


_JSON_TYPES = {"dict": dict, "object": dict, "array": list, "boolean": bool}


def _type_problem(value: Any, expected: str) -> str | None:
    """Why ``value`` does not fit the schema type, or None when it does."""
    if expected in ("number", "integer"):
        number = canonical_value(value) if isinstance(value, str) else value
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            return f"expected a {expected}, got {type(value).__name__} {short_repr(value)}"
        if expected == "integer" and not (isinstance(number, int) or number.is_integer()):
            return f"expected an integer, got {short_repr(value)}"
        return None
    if expected == "string":
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            return f"expected a string, got {type(value).__name__}"
        return None
    python_type = _JSON_TYPES.get(expected)
    if python_type is not None and not isinstance(value, python_type):
        return f"expected {expected}, got {type(value).__name__}"
    return None


class BookingEnvironment:
    """Executes Booking tool calls against the real-response cache."""

    def __init__(self, cache: ResponseCache, schemas: Mapping[str, ToolSchema], view: ViewPolicy | None = None):
        self.cache = cache
        self.schemas = dict(schemas)
        self.view = view or ViewPolicy()

    @classmethod
    def from_default(cls, data_dir: str | None = None, cache_path: str | None = None, view: ViewPolicy | None = None) -> "BookingEnvironment":
        """The bundled schemas and the default cache (built from the bundled traces on first use)."""
        schemas = load_tool_schemas(paths.data_file(paths.TOOL_SCHEMAS, data_dir))
        return cls(open_default_cache(data_dir, cache_path), schemas, view)

    def execute(self, call: Any) -> Any:
        """The response to a call given as ``{"name", "arguments"}`` (or an object with those attributes)."""
        return self.execute_detailed(call).response

    def render(self, response: Any) -> str:
        """The response as it should appear in a prompt (the view policy)."""
        return self.view.render(response)

    def execute_detailed(self, call: Any) -> ExecutionResult:
        name, arguments = _unpack(call)
        if not isinstance(name, str) or not name.strip():
            return ExecutionResult(None, None, error_response("invalid_call", "a call needs a non-empty string 'name'"), "invalid_call")
        name = name.strip()
        if isinstance(arguments, str):
            arguments, problem = loads_arguments(arguments)
            if problem:
                return self._fail(name, None, *problem)
            if not isinstance(arguments, dict):
                return self._fail(name, None, "malformed_arguments", "arguments JSON must be an object")
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            return self._fail(name, None, "invalid_call", f"arguments must be an object, got {type(arguments).__name__}")
        # Limits first: everything below (deepcopy, canonical forms, int()) recurses or converts.
        problem = check_arguments(arguments)
        if problem:
            return self._fail(name, None, *problem)
        schema = self.schemas.get(name)
        if schema is None:
            return self._fail(name, arguments, "unknown_tool", f"tool {short_repr(name)} does not exist")
        for parameter in schema.required:
            if parameter not in arguments:
                return self._fail(name, arguments, "missing_parameter", f"required parameter {parameter!r} is missing")
        for parameter, value in arguments.items():
            spec = schema.parameters.get(parameter)
            if spec is None:
                return self._fail(name, arguments, "unknown_parameter", f"{name} has no parameter {short_repr(parameter)}")
            problem = _type_problem(value, spec.type)
            if problem is None and spec.type == "array" and spec.items:
                item_type = spec.items.get("type", "")
                problem = next((f"item {i}: {p}" for i, item in enumerate(value)
                                if (p := _type_problem(item, item_type))), None)
            if problem:
                return self._fail(name, arguments, "wrong_type", f"parameter {parameter!r}: {problem}")
        try:
            response = self.cache.lookup(name, arguments)
        except (TypeError, ValueError) as err:
            return self._fail(name, arguments, "malformed_arguments", f"arguments are not JSON values: {err}")
        if response is None:
            return self._fail(name, arguments, "no_results", "No results found for these parameters")
        return ExecutionResult(name, arguments, response, None)

    @staticmethod
    def _fail(name: str, arguments: dict | None, code: str, message: str) -> ExecutionResult:
        return ExecutionResult(name, copy.deepcopy(arguments), error_response(code, message), code)


def _unpack(call: Any) -> tuple[Any, Any]:
    if isinstance(call, Mapping):
        return call.get("name"), call.get("arguments", call.get("parameters"))
    if hasattr(call, "name"):
        return getattr(call, "name"), getattr(call, "arguments", None)
    if isinstance(call, (tuple, list)) and len(call) == 2:
        return call[0], call[1]
    return None, None

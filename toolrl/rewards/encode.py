"""Host-side encoding of rollouts into fixed-shape numpy arrays for the reward kernels.

Names, argument keys and normalised argument values are hashed with blake2b (64 bits, stored as an
int32 pair along a trailing axis of size 2) so the kernels compare integers only.  The hash of a
value is the hash of a canonical form that encodes exactly the equality of
`toolrl.rewards.reference.values_equal`: type category (int and float are both "number"), strings
after the paper's normalisation, numbers by value, lists element by element, dicts key by key.
Hence equal hashes <=> equal values (up to 2^-64 collisions).  blake2b is stable across processes
and machines, unlike Python's `hash()`.

Shapes (B batch, C = max_calls, S = max_steps, K = max_keys):
  calls:  mask/format/success [B, C] bool; name [B, C, 2] int32; keys/vals [B, C, K, 2] int32;
          key_mask [B, C, K] bool; types [B, C, K] int8.
  steps:  mask [B, S] bool; name [B, S, 2]; keys/vals [B, S, K, 2]; key_mask [B, S, K]; types [B, S, K];
          deps [B, S, S] bool (deps[b, i, j]: step i depends on step j).
  turn only: turn/later/done [B, S] bool.
  overflow [B] int32: calls beyond C + steps beyond S + argument keys beyond K.  Overflowing rows
  are encoded truncated and flagged, never silently: `registry.score_*` rescore them with the
  reference.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from typing import Any, Mapping, Sequence

import numpy as np

from toolrl.rewards.reference import normalize_string
from toolrl.rewards.types import EpisodeInput, GoldenStep, PredictedCall, TurnInput, semantic_success

# Value type codes (0 is padding).  int and float share NUMBER: the paper's "int and float agree".
TYPE_PAD, TYPE_NUMBER, TYPE_STR, TYPE_BOOL, TYPE_LIST, TYPE_DICT, TYPE_NULL, TYPE_OTHER = range(8)


@dataclasses.dataclass(frozen=True)
class EncodeConfig:
    """Static shapes of the encoded arrays.

    Attributes:
      max_calls: C, predicted calls per episode (or turn).  Real samples have <= 11 steps; corrupted
        or rambling rollouts make more calls, hence the margin.
      max_steps: S, golden steps per sample.
      max_keys: K, argument keys per call (the booking APIs have at most 8).
    """

    max_calls: int = 16
    max_steps: int = 12
    max_keys: int = 8


# ----------------------------------------------------------------------------- hashing


def _canonical_number(v: int | float) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        if v.is_integer():
            return str(int(v))  # 2.0 and 2 must agree; int() is exact for integral floats.
        return repr(v)  # shortest round-trip repr: equal floats <=> equal strings.
    return str(v)


def canonical_value(v: Any) -> Any:
    """A JSON-serialisable canonical form; canonical_value(a) == canonical_value(b) exactly when
    `values_equal(a, b)`.  Nested lists keep the tags, so delimiters inside strings cannot collide."""
    if isinstance(v, bool):
        return ["b", int(v)]
    if isinstance(v, (int, float)):
        return ["n", _canonical_number(v)]
    if isinstance(v, str):
        return ["s", normalize_string(v)]
    if isinstance(v, (list, tuple)):
        return ["l", [canonical_value(x) for x in v]]
    if isinstance(v, Mapping):
        return ["d", [[k, canonical_value(v[k])] for k in sorted(v)]]
    if v is None:
        return ["z"]
    return ["o", repr(v)]


def value_type_code(v: Any) -> int:
    """Type code of a value (matches `reference.value_type`)."""
    if isinstance(v, bool):
        return TYPE_BOOL
    if isinstance(v, (int, float)):
        return TYPE_NUMBER
    if isinstance(v, str):
        return TYPE_STR
    if isinstance(v, (list, tuple)):
        return TYPE_LIST
    if isinstance(v, Mapping):
        return TYPE_DICT
    if v is None:
        return TYPE_NULL
    return TYPE_OTHER


def stable_hash64(text: str) -> int:
    """Signed 64-bit blake2b hash of a string (stable across processes)."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little", signed=True)


# Caches: scalars repeat a lot across the G rollouts of a prompt and across samples.  Keyed by
# (python type, value) so that 1, 1.0 and True never share an entry.  Bounded by clearing.
_SCALAR_CACHE: dict[tuple[type, Any], int] = {}
_NAME_CACHE: dict[str, int] = {}
_KEY_CACHE: dict[str, int] = {}
_CACHE_LIMIT = 1_000_000


def _cached(cache: dict, key: Any, make) -> int:
    h = cache.get(key)
    if h is None:
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        h = cache[key] = make()
    return h


def value_hash(v: Any) -> int:
    """Hash of the canonical form of a value (64-bit signed int)."""
    if isinstance(v, (str, int, float)) or v is None:  # bool is an int: (type, value) keeps it apart.
        return _cached(_SCALAR_CACHE, (type(v), v), lambda: stable_hash64("v" + json.dumps(canonical_value(v))))
    return stable_hash64("v" + json.dumps(canonical_value(v), separators=(",", ":")))


def name_hash(name: str) -> int:
    return _cached(_NAME_CACHE, name, lambda: stable_hash64("f" + name))


def key_hash(key: str) -> int:
    return _cached(_KEY_CACHE, key, lambda: stable_hash64("k" + str(key)))


# ----------------------------------------------------------------------------- encoding


def _split(a: np.ndarray) -> np.ndarray:
    """int64 [...] -> int32 [..., 2] (little-endian halves)."""
    return np.ascontiguousarray(a).view(np.int32).reshape(a.shape + (2,))


class _Args:
    """Accumulates the (row, slot, key) entries of argument dicts, written at once at the end."""

    def __init__(self, n_rows: int, k: int):
        self.k = k
        self.keys = np.zeros((n_rows, k), np.int64)
        self.vals = np.zeros((n_rows, k), np.int64)
        self.types = np.zeros((n_rows, k), np.int8)
        self.mask = np.zeros((n_rows, k), bool)

    def put(self, row: int, args: Mapping[str, Any]) -> int:
        """Encodes one argument dict at `row`; returns the number of keys that did not fit."""
        k = 0
        keys, vals, types = self.keys[row], self.vals[row], self.types[row]
        for key, v in args.items():
            if k == self.k:
                return len(args) - self.k
            keys[k] = key_hash(key)
            vals[k] = value_hash(v)
            types[k] = value_type_code(v)
            k += 1
        self.mask[row, :k] = True
        return 0


def _encode_calls(rows: Sequence[Sequence[PredictedCall]], c: int, k: int, overflow: np.ndarray) -> dict[str, np.ndarray]:
    b = len(rows)
    mask = np.zeros((b, c), bool)
    fmt = np.zeros((b, c), bool)
    success = np.zeros((b, c), bool)
    names = np.zeros((b, c), np.int64)
    args = _Args(b * c, k)
    for i, calls in enumerate(rows):
        if len(calls) > c:
            overflow[i] += len(calls) - c
        for j, call in enumerate(calls[:c]):
            mask[i, j] = True
            if not call.format_ok:
                continue
            fmt[i, j] = True
            success[i, j] = semantic_success(call.executed, call.response)
            names[i, j] = name_hash(call.name)
            overflow[i] += args.put(i * c + j, call.arguments)
    return {
        "call_mask": mask,
        "call_format": fmt,
        "call_success": success,
        "call_name": _split(names),
        "call_keys": _split(args.keys.reshape(b, c, k)),
        "call_vals": _split(args.vals.reshape(b, c, k)),
        "call_types": args.types.reshape(b, c, k),
        "call_key_mask": args.mask.reshape(b, c, k),
    }


def _encode_steps(rows: Sequence[Sequence[GoldenStep]], s: int, k: int, overflow: np.ndarray) -> dict[str, np.ndarray]:
    b = len(rows)
    mask = np.zeros((b, s), bool)
    names = np.zeros((b, s), np.int64)
    deps = np.zeros((b, s, s), bool)
    args = _Args(b * s, k)
    # GRPO scores G rollouts of the same sample: encode each distinct steps tuple once.
    done: dict[int, int] = {}  # id(steps) -> first row encoding it
    key_overflow_of: dict[int, int] = {}  # first row -> keys beyond K
    for i, steps in enumerate(rows):
        first = done.get(id(steps))
        if first is not None:
            mask[i], names[i], deps[i] = mask[first], names[first], deps[first]
            for a in (args.keys, args.vals, args.types, args.mask):
                a[i * s : (i + 1) * s] = a[first * s : (first + 1) * s]
            overflow[i] += max(0, len(steps) - s) + key_overflow_of[first]
            continue
        key_overflow = 0
        for j, step in enumerate(steps[:s]):
            mask[i, j] = True
            names[i, j] = name_hash(step.function)
            key_overflow += args.put(i * s + j, step.arguments)
            for d in step.depends_on:
                if not 0 <= d < len(steps) or d == j:
                    raise ValueError(f"step {j} depends on invalid step index {d} (sample has {len(steps)} steps)")
                if d < s:
                    deps[i, j, d] = True
        overflow[i] += max(0, len(steps) - s) + key_overflow
        done[id(steps)] = i
        key_overflow_of[i] = key_overflow
    return {
        "step_mask": mask,
        "step_name": _split(names),
        "step_keys": _split(args.keys.reshape(b, s, k)),
        "step_vals": _split(args.vals.reshape(b, s, k)),
        "step_types": args.types.reshape(b, s, k),
        "step_key_mask": args.mask.reshape(b, s, k),
        "step_deps": deps,
    }


def encode_episodes(episodes: Sequence[EpisodeInput], config: EncodeConfig = EncodeConfig()) -> dict[str, np.ndarray]:
    """Encodes episodes (for the `paper` and `episode` families); see the module docstring for the
    arrays and their shapes."""
    overflow = np.zeros(len(episodes), np.int32)
    out = _encode_calls([e.calls for e in episodes], config.max_calls, config.max_keys, overflow)
    out.update(_encode_steps([e.steps for e in episodes], config.max_steps, config.max_keys, overflow))
    out["overflow"] = overflow
    return out


def encode_turns(turns: Sequence[TurnInput], config: EncodeConfig = EncodeConfig()) -> dict[str, np.ndarray]:
    """Encodes turns (for the `turn` family): the episode arrays plus turn/later/done [B, S] masks."""
    s = config.max_steps
    overflow = np.zeros(len(turns), np.int32)
    out = _encode_calls([t.calls for t in turns], config.max_calls, config.max_keys, overflow)
    out.update(_encode_steps([t.steps for t in turns], s, config.max_keys, overflow))
    for name, attr in (("turn_mask", "turn"), ("later_mask", "later"), ("done_mask", "done")):
        m = np.zeros((len(turns), s), bool)
        for i, t in enumerate(turns):
            idx = [j for j in getattr(t, attr) if j < s]
            m[i, idx] = True
        out[name] = m
    out["overflow"] = overflow
    return out

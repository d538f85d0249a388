"""Host-side encoding of rollouts into fixed-shape numpy arrays for the reward kernels.

Hashing: names, argument keys and normalised argument values are hashed with blake2b (64 bits)
so the kernels compare integers only.  The hash of a value is the hash of a canonical form that encodes exactly the equality of
`toolrl.rewards.reference_common.values_equal`: type category (int and float are both "number"), strings
after the paper's normalisation, numbers by value, lists element by element (list-of-object values
such as flight `legs` included), dicts key by key.  Hence equal hashes <=> equal values (up to
2^-64 collisions).  blake2b is stable across processes and machines, unlike Python's `hash()`.

Names as ids, arguments as bitsets: within one example, the hashed names, keys, (key, type) pairs
and (key, value) pairs are interned to small ids (exact: no 32-bit truncation of a hash), and every call/step stores three bitsets of W 32-bit words.  Then
for a (call, step) pair, |shared keys| = popcount(K_c & K_g), |shared keys with agreeing types| =
popcount(T_c & T_g), |shared keys with equal values| = popcount(V_c & V_g): a few word operations
per pair instead of a K x K key alignment, which is what makes the kernel fast.  Ids are local to an
example (only compared within it); the hashes they are interned from are global and stable.

Shapes (B batch, C = max_calls, S = max_steps, W = vocab_words):
  calls:  call_mask/format/success [B, C] bool; call_name [B, C] int32 (-1: padding/unparseable);
          call_key_bits/type_bits/val_bits [B, C, W] uint32.
  steps:  step_mask [B, S] bool; step_name [B, S] int32 (-1: padding); step_*_bits [B, S, W] uint32;
          step_deps [B, S, S] bool (step_deps[b, i, j]: step i depends on step j).
  turn only: turn_mask/later_mask/done_mask [B, S] bool.
  paper only (``paper=True``, the default of `encode_episodes`): call_counted_official,
          call_paper_success, call_has_response, call_no_error [B, C] bool; paper_n_c, paper_n_g,
          paper_n_shared, paper_n_type, paper_n_val, paper_n_val_official [B, C] int32 (key counts
          of the call, of its first same-name golden step, shared keys, ...; 0 without such a
          step).  With ``episode=False`` (the `paper` family's encoder) the argument bitsets are
          left empty: `paper` reads only these counts.  BFCL's value rules are not an equality
          relation (a model int passes against a golden float, not the other way round; the
          official dict check is not symmetric either), so they cannot be hashed: the host checks
          each argument of a call against the FIRST golden step with the call's name (the only step
          `paper` compares it with) and passes the counts of compatible types and passing values;
          the kernel does the rest (name matching, levels, orchestration).
  overflow [B] int32: calls beyond C + steps beyond S + arguments whose ids did not fit 32·W bits.
  Overflowing rows are encoded truncated and flagged, never silently: `registry.score_*` rescore
  them with the reference by default.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from typing import Any, Mapping, Sequence

import numpy as np

from toolrl.rewards import bfcl
from toolrl.rewards.reference_common import normalize_string
from toolrl.rewards.reference_paper import paper_semantic
from toolrl.rewards.types import (
    OFFICIAL_COUNTED_REASONS,
    EpisodeInput,
    GoldenStep,
    PredictedCall,
    TurnInput,
    checked_call,
    semantic_success,
    validate_depends_on,
)

# Golden value types for which the official and our value checks agree (no dict inside).
_SAME_RULE_TYPES = (str, int, float, bool)

# Value type codes (0 is padding).  int and float share NUMBER: the paper's "int and float agree".
TYPE_PAD, TYPE_NUMBER, TYPE_STR, TYPE_BOOL, TYPE_LIST, TYPE_DICT, TYPE_NULL, TYPE_OTHER = range(8)


@dataclasses.dataclass(frozen=True)
class EncodeConfig:
    """Static shapes of the encoded arrays.

    Attributes:
      max_calls: C, predicted calls per episode (or turn).  Real samples have <= 11 steps; corrupted
        or rambling rollouts make more calls, hence the margin.
      max_steps: S, golden steps per sample.
      vocab_words: W, 32-bit words of the per-example bitsets: at most 32·W distinct argument keys,
        (key, type) and (key, value) pairs per example (golden and predicted together).  The real
        samples need at most 23, so W = 2 leaves room for the model's own values.
    """

    max_calls: int = 16
    max_steps: int = 12
    vocab_words: int = 2


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
    """Type code of a value (matches `reference_common.value_type`)."""
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


class _Vocab:
    """Per-example interning of hashed keys, (key, type) and (key, value) pairs into bit ids.

    The golden steps are interned first and their vocabularies are shared (read-only) by every
    example with the same steps object; calls add their new entries in an overlay.
    """

    def __init__(self, base: "_Vocab | None" = None):
        self.base = base
        self.maps: tuple[dict, dict, dict, dict] = ({}, {}, {}, {})
        self.offset = tuple(len(m) + base.offset[i] for i, m in enumerate(base.maps)) if base else (0, 0, 0, 0)

    def _intern(self, i: int, item: Any) -> int:
        found = self.base.maps[i].get(item) if self.base else None
        if found is None:
            m = self.maps[i]
            found = m.get(item)
            if found is None:
                found = m[item] = self.offset[i] + len(m)
        return found

    def name_id(self, name: str) -> int:
        """Small id of a function name (interned from its 64-bit hash)."""
        return self._intern(3, name_hash(name))

    def ids(self, key: str, value: Any) -> tuple[int, int, int]:
        kh = key_hash(key)
        return self._intern(0, kh), self._intern(1, (kh, value_type_code(value))), self._intern(2, (kh, value_hash(value)))


def _paper_counts(call: PredictedCall, golden: GoldenStep) -> tuple[int, int, int, int, int, int]:
    """(#call keys, #golden keys, #shared keys, #shared keys with compatible types, #shared keys
    passing our value check, #shared keys passing the official one) of a call against its golden
    step (see the module docstring)."""
    n_shared = n_type = n_val = n_off = 0
    g_args = golden.arguments
    for k, v in call.arguments.items():
        if k not in g_args:
            continue
        g = g_args[k]
        n_shared += 1
        n_type += bfcl.types_compatible(v, g)
        ours = bfcl.value_ok(v, g, official=False)
        n_val += ours
        n_off += ours if type(g) in _SAME_RULE_TYPES else bfcl.value_ok(v, g, official=True)
    return len(call.arguments), len(g_args), n_shared, n_type, n_val, n_off


def _encode(
    rows_calls: Sequence[Sequence[PredictedCall]],
    rows_steps: Sequence[Sequence[GoldenStep]],
    config: EncodeConfig,
    paper: bool = False,
    hash_args: bool = True,
) -> dict[str, np.ndarray]:
    """Encodes calls and steps of B examples; see the module docstring."""
    b, c, s, w = len(rows_calls), config.max_calls, config.max_steps, config.vocab_words
    rows, nbits = c + s, 32 * w
    overflow = np.zeros(b, np.int32)
    mask = np.zeros((b, rows), bool)
    fmt = np.zeros((b, c), bool)
    success = np.zeros((b, c), bool)
    # Name ids: -1 for padding and unparseable calls (never equal to a real id).
    names = np.full((b, rows), -1, np.int32)
    deps = np.zeros((b, s, s), bool)
    if paper:
        counted_off = np.zeros((b, c), bool)
        p_success = np.zeros((b, c), bool)
        has_response = np.zeros((b, c), bool)
        no_error = np.zeros((b, c), bool)
        p_counts = np.zeros((6, b, c), np.int32)
    # (flat word index, bit value) per set bit, for the key / type / value bitsets.
    where: tuple[list[int], list[int], list[int]] = ([], [], [])
    bits: tuple[list[float], list[float], list[float]] = ([], [], [])

    def put(i: int, row: int, ids: tuple[int, int, int]) -> int:
        dropped = 0
        base = (i * rows + row) * w
        for n, x in enumerate(ids):
            if x >= nbits:
                dropped = 1
                continue
            where[n].append(base + (x >> 5))
            bits[n].append(float(1 << (x & 31)))
        return dropped

    # GRPO scores G rollouts of the same sample: encode each distinct steps tuple once.
    step_cache: dict[int, tuple[_Vocab, list, int]] = {}
    for i, (calls, steps) in enumerate(zip(rows_calls, rows_steps)):
        cached = step_cache.get(id(steps))
        if cached is None:
            validate_depends_on(steps, i)
            vocab, entries, dropped = _Vocab(), [], max(0, len(steps) - s)
            for j, step in enumerate(steps[:s]):
                if hash_args:
                    entries.append((c + j, [vocab.ids(k, v) for k, v in step.arguments.items()]))
            step_names = [vocab.name_id(step.function) for step in steps[:s]]
            first: dict[str, GoldenStep] = {}
            for step in steps:
                first.setdefault(step.function, step)
            cached = step_cache[id(steps)] = (vocab, entries, dropped, step_names, first)
        vocab, entries, dropped, step_names, first = cached
        overflow[i] += dropped
        names[i, c : c + len(step_names)] = step_names
        for j, step in enumerate(steps[:s]):
            mask[i, c + j] = True
            for d in step.depends_on:
                if d < s:
                    deps[i, j, d] = True
        for row, ids_list in entries:
            for ids in ids_list:
                overflow[i] += put(i, row, ids)

        overlay = _Vocab(vocab)
        overflow[i] += max(0, len(calls) - c)
        for j, call in enumerate(calls[:c]):
            mask[i, j] = True
            call = checked_call(call)
            if not call.format_ok:
                if paper:
                    counted_off[i, j] = call.format_error in OFFICIAL_COUNTED_REASONS
                continue
            fmt[i, j] = True
            if paper:
                counted_off[i, j] = True
                p_success[i, j] = paper_semantic(call)
                has_response[i, j] = call.executed and call.response is not None
                no_error[i, j] = has_response[i, j] and bfcl.response_no_error(call.response)
                golden = first.get(call.name)
                if golden is not None:
                    p_counts[:, i, j] = _paper_counts(call, golden)
            success[i, j] = semantic_success(call.executed, call.response)
            names[i, j] = overlay.name_id(call.name)
            if hash_args:
                for k, v in call.arguments.items():
                    overflow[i] += put(i, j, overlay.ids(k, v))

    def bitset(n: int) -> np.ndarray:
        # Bits of one row are distinct, so their sum is their OR (exact in float64 below 2^53).
        words = np.bincount(np.asarray(where[n], np.int64), np.asarray(bits[n], np.float64), minlength=b * rows * w)
        return words.astype(np.uint32).reshape(b, rows, w)

    key_bits, type_bits, val_bits = bitset(0), bitset(1), bitset(2)
    extra = {}
    if paper:
        extra = {
            "call_counted_official": counted_off,
            "call_paper_success": p_success,
            "call_has_response": has_response,
            "call_no_error": no_error,
            "paper_n_c": p_counts[0],
            "paper_n_g": p_counts[1],
            "paper_n_shared": p_counts[2],
            "paper_n_type": p_counts[3],
            "paper_n_val": p_counts[4],
            "paper_n_val_official": p_counts[5],
        }
    return {
        **extra,
        "call_mask": mask[:, :c],
        "call_format": fmt,
        "call_success": success,
        "call_name": names[:, :c],
        "call_key_bits": key_bits[:, :c],
        "call_type_bits": type_bits[:, :c],
        "call_val_bits": val_bits[:, :c],
        "step_mask": mask[:, c:],
        "step_name": names[:, c:],
        "step_key_bits": key_bits[:, c:],
        "step_type_bits": type_bits[:, c:],
        "step_val_bits": val_bits[:, c:],
        "step_deps": deps,
        "overflow": overflow,
    }


def encode_episodes(
    episodes: Sequence[EpisodeInput], config: EncodeConfig = EncodeConfig(), paper: bool = True, episode: bool = True
) -> dict[str, np.ndarray]:
    """Encodes episodes (for the `paper` and `episode` families); see the module docstring for the
    arrays and their shapes.  ``paper=False`` skips the paper-only arrays (the `episode` family
    does not read them), ``episode=False`` the argument hashing (`paper` does not read it).

    Raises:
      ValueError from `types.validate_depends_on` (naming the sample index and step).
    """
    return _encode([e.calls for e in episodes], [e.steps for e in episodes], config, paper, hash_args=episode)


def encode_turns(turns: Sequence[TurnInput], config: EncodeConfig = EncodeConfig()) -> dict[str, np.ndarray]:
    """Encodes turns (for the `turn` family): the episode arrays plus turn/later/done/optional [B, S] masks."""
    s = config.max_steps
    out = _encode([t.calls for t in turns], [t.steps for t in turns], config)
    for name, attr in (("turn_mask", "turn"), ("later_mask", "later"), ("done_mask", "done"),
                       ("optional_mask", "optional")):
        m = np.zeros((len(turns), s), bool)
        for i, t in enumerate(turns):
            m[i, [j for j in getattr(t, attr) if j < s]] = True
        out[name] = m
    return out

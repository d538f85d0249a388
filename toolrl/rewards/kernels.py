"""JAX reward kernels: pure, shape-static functions of the arrays built by `toolrl.rewards.encode`.

Each family has a per-example function (`paper_single`, `episode_single`, `turn_single`) that is
`jax.vmap`-ed over the batch and jitted by `make_kernel(family, mode, weights)`.  A kernel returns
a dict with
  reward      float32 [B]
  levels      dict of float32 [B] ("atomic", "orchestration", "name", "structure", "values",
              "semantic"; turn adds "format", "frontier_f1", "premature"; paper with
              paper_compat="official" adds the official result's keys, `reference_paper.OFFICIAL_KEYS`)
  calls       dict of float32 [B, C] per-call levels ("score", "name", "structure", "values",
              "semantic"; turn adds "format"), 0 on padding
  error_codes int32 [B, C]  (`ErrorCode`; PADDING for empty slots)
and agrees with `toolrl.rewards.reference` to float32 rounding (tested with hypothesis).

Shapes: C = max_calls, S = max_steps, W = vocab_words (see `encode.py`).  Exact ties matter (the
episode and turn matchings break ties by index), so every score that is compared is computed as in
the reference from one integer division (a rational with a small denominator), which rounds
identically for equal rationals in float32 and float64.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp

from toolrl.rewards.types import FAMILIES, MODES, ErrorCode, RewardWeights, check_paper_compat

Array = jax.Array
Batch = dict[str, Array]

_E = ErrorCode


def format_ok_from_tokens(token_ids: Array, mask: Array, open_id: int, close_id: int) -> Array:
    """Format level from token ids: tool-call markers are balanced and not nested.

    Args:
      token_ids: int [B, T] generated tokens.
      mask: bool [B, T], True on real (non-padding) tokens.
      open_id, close_id: token ids of `<tool_call>` and `</tool_call>` (single special tokens in
        Qwen2-style tokenizers).

    Returns:
      bool [B]: the running depth (opens minus closes) stays in {0, 1} and ends at 0.
    """
    step = jnp.where(mask & (token_ids == open_id), 1, 0) - jnp.where(mask & (token_ids == close_id), 1, 0)
    depth = jnp.cumsum(step, axis=-1, dtype=jnp.int32)
    final = jnp.sum(step, axis=-1, dtype=jnp.int32)  # also defined when T == 0
    return jnp.all((depth >= 0) & (depth <= 1), axis=-1) & (final == 0)


format_ok_from_tokens_jit = jax.jit(format_ok_from_tokens, static_argnames=("open_id", "close_id"))


# ----------------------------------------------------------------------------- shared pieces


def _popcount(a: Array, b: Array) -> Array:
    """|a & b| for bitsets [..., W] uint32 -> int32 [...].

    W is tiny and static: an unrolled sum of elementwise popcounts fuses better on CPU than a
    reduction over a minor axis of size W."""
    total = jax.lax.population_count(a[..., 0] & b[..., 0]).astype(jnp.int32)
    for w in range(1, a.shape[-1]):
        total = total + jax.lax.population_count(a[..., w] & b[..., w]).astype(jnp.int32)
    return total


def _pair_features(x: Batch) -> dict[str, Array]:
    """Per (call, step) argument comparison of one example, from the bitsets of encode.py.

    Returns [C, S] arrays: name_eq (bool, also requires a parsed call and both slots valid),
    n_c, n_g (key counts), n_shared (golden keys present in the call), n_type (shared keys whose
    types agree), n_val (shared keys whose values are equal).
    """
    call_ok = x["call_mask"] & x["call_format"]
    name_eq = (x["call_name"][:, None] == x["step_name"][None, :]) & call_ok[:, None] & x["step_mask"][None, :]
    ck, gk = x["call_key_bits"], x["step_key_bits"]
    n_c = _popcount(ck, ck)[:, None]
    n_g = _popcount(gk, gk)[None, :]
    return {
        "name_eq": name_eq,
        "n_c": jnp.broadcast_to(n_c, name_eq.shape),
        "n_g": jnp.broadcast_to(n_g, name_eq.shape),
        "n_shared": _popcount(ck[:, None], gk[None, :]),
        "n_type": _popcount(x["call_type_bits"][:, None], x["step_type_bits"][None, :]),
        "n_val": _popcount(x["call_val_bits"][:, None], x["step_val_bits"][None, :]),
    }


def _values_ok(f: dict[str, Array]) -> Array:
    """Values check [C, S]: every golden key present, no extra key, every value equal."""
    return (f["n_shared"] == f["n_g"]) & (f["n_shared"] == f["n_c"]) & (f["n_val"] == f["n_g"])


def _key_type_ratio(f: dict[str, Array]) -> Array:
    """`reference_common.key_type_ratio` [C, S]."""
    return jnp.where(
        f["n_g"] > 0,
        f["n_type"].astype(jnp.float32) / jnp.maximum(f["n_g"], 1).astype(jnp.float32),
        (f["n_c"] == 0).astype(jnp.float32),
    )


def _ast(f: dict[str, Array], w: RewardWeights) -> Array:
    """AST score [C, S] float32 (0 where the name differs)."""
    ratio = _key_type_ratio(f)
    w_name, w_keys, w_values = w.ast
    ast = w_name + w_keys * ratio + w_values * _values_ok(f).astype(jnp.float32)
    return jnp.where(f["name_eq"], ast, 0.0)


def _argument_code(f: dict[str, Array], j: Array) -> Array:
    """First failing argument check [C] int32 (OK when all pass) of each call against step j[c].

    The counts are taken at the matched step first, so the selection runs on [C], not [C, S]."""
    n_c, n_g, n_shared, n_type, n_val = (_take(f[k], j) for k in ("n_c", "n_g", "n_shared", "n_type", "n_val"))
    return jnp.select(
        [n_shared < n_g, n_shared < n_c, n_type < n_shared, n_val < n_shared],
        [_E.MISSING_KEY, _E.EXTRA_KEY, _E.WRONG_TYPE, _E.WRONG_VALUE],
        _E.OK,
    ).astype(jnp.int32)


def _take(m: Array, j: Array) -> Array:
    """m[c, j[c]] for m [C, S] (or a row vector [S], broadcast) and j [C].

    A one-hot masked sum rather than a gather: batched gathers are slow on CPU, this fuses.
    """
    m = jnp.broadcast_to(m, (j.shape[0], m.shape[-1]))
    hit = j[:, None] == jnp.arange(m.shape[-1])[None, :]
    if m.dtype == jnp.bool_:
        return jnp.any(hit & m, axis=1)
    return jnp.sum(jnp.where(hit, m, jnp.zeros((), m.dtype)), axis=1)


def _combine(atomic: Array, orch: Array, binary: Array, mode: str, w: RewardWeights) -> Array:
    if mode == "graduated":
        return w.atomic * atomic + w.orchestration * orch
    if mode == "atomic":
        return atomic
    if mode == "orchestration":
        return orch
    if mode == "binary":
        return binary.astype(jnp.float32)
    raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")


def _safe_div(num: Array, den: Array) -> Array:
    return num.astype(jnp.float32) / jnp.maximum(den, 1).astype(jnp.float32)


# ----------------------------------------------------------------------------- paper


def _credit_steps(name_eq: Array, step_deps: Array) -> tuple[Array, Array, Array]:
    """Transitive names-only orchestration credit (`reference_paper.credit_steps`) of one example.

    Args:
      name_eq: bool [C, S], call c has step s's name (valid call and step).
      step_deps: bool [S, S], step i depends on step j (only earlier steps: validated on the host).

    Returns:
      cred_pos int32 [S] (position at which the step was credited, C when it was not), deps_all
      bool [S] (every dependency credited), lower int32 [S] (latest credited dependency position,
      -1 without dependencies).  Steps are visited in order (a static loop over S).
    """
    n_calls, n_steps = name_eq.shape
    pos = jnp.arange(n_calls, dtype=jnp.int32)
    cred = jnp.full(n_steps, n_calls, jnp.int32)
    deps_all = jnp.zeros(n_steps, bool)
    lower = jnp.full(n_steps, -1, jnp.int32)
    for j in range(n_steps):
        deps = step_deps[j]
        all_cred = jnp.all(~deps | (cred < n_calls))
        low = jnp.max(jnp.where(deps, cred, -1))
        p = jnp.min(jnp.where(name_eq[:, j] & (pos > low), pos, n_calls))
        cred = cred.at[j].set(jnp.where(all_cred, p, n_calls).astype(jnp.int32))
        deps_all = deps_all.at[j].set(all_cred)
        lower = lower.at[j].set(low.astype(jnp.int32))
    return cred, deps_all, lower


def paper_single(x: Batch, mode: str, w: RewardWeights, compat: str = "ours") -> dict[str, Any]:
    """`paper` reward of one episode (see `reference.paper_reward`); compat is `paper_compat`."""
    official = compat == "official"
    call_mask, step_mask = x["call_mask"], x["step_mask"]
    call_ok = call_mask & x["call_format"]
    name_eq = (x["call_name"][:, None] == x["step_name"][None, :]) & call_ok[:, None] & step_mask[None, :]
    n_calls_max = name_eq.shape[0]
    counted = call_mask & x["call_counted_official"] if official else call_mask

    has = jnp.any(name_eq, axis=1)  # [C]
    # Argument counts against the first golden step with the call's name, from the host (see
    # encode.py: BFCL's value rules are not an equality relation, so they are not hashed).
    n_c, n_g, n_shared, n_type = x["paper_n_c"], x["paper_n_g"], x["paper_n_shared"], x["paper_n_type"]
    n_val = x["paper_n_val_official"] if official else x["paper_n_val"]
    values_ok = has & (n_shared == n_g) & (n_shared == n_c) & (n_val == n_g)
    ratio = jnp.where(
        n_g > 0,
        jnp.where(n_shared > 0, _safe_div(n_shared, n_g) * _safe_div(n_type, n_shared), 0.0),
        (n_c == 0).astype(jnp.float32),
    )
    w_name, w_keys, w_values = w.ast
    name = jnp.where(has, w_name, 0.0)
    structure = jnp.where(has, w_keys * ratio, 0.0)
    values = jnp.where(values_ok, w_values, 0.0)
    sem_ok = has & x["call_paper_success"]
    sem = sem_ok.astype(jnp.float32)
    ast = name + structure + values
    score = (ast + sem) / 2.0

    n = jnp.sum(counted, dtype=jnp.int32)

    def mean(v: Array) -> Array:
        return jnp.where(n > 0, jnp.sum(jnp.where(counted, v, 0.0)) / jnp.maximum(n, 1).astype(jnp.float32), 0.0)

    atomic = (mean(ast) + mean(sem)) / 2.0 if official else mean(score)

    cred, deps_all, lower = _credit_steps(name_eq, x["step_deps"])
    credited = (cred < n_calls_max) & step_mask
    n_steps = jnp.sum(step_mask, dtype=jnp.int32)
    orch = jnp.where(n_steps > 0, _safe_div(jnp.sum(credited, dtype=jnp.int32), n_steps), 0.0)

    full = values_ok & sem_ok
    binary = (n > 0) & (n_steps > 0) & jnp.all(full | ~counted) & jnp.all(credited | ~step_mask)

    pos = jnp.arange(n_calls_max, dtype=jnp.int32)
    first = jnp.argmax(name_eq, axis=1)  # first golden step with the call's name
    deps_ok = _take(deps_all, first) & (pos > _take(lower, first))
    arg_code = jnp.select(
        [n_shared < n_g, n_shared < n_c, n_type < n_shared, n_val < n_shared],
        [_E.MISSING_KEY, _E.EXTRA_KEY, _E.WRONG_TYPE, _E.WRONG_VALUE],
        _E.OK,
    ).astype(jnp.int32)
    codes = jnp.select(
        [~call_mask, ~x["call_format"], ~has, arg_code != _E.OK, ~deps_ok, ~sem_ok],
        [_E.PADDING, _E.FORMAT, _E.WRONG_NAME, arg_code, _E.DEPENDENCY_VIOLATION, _E.EXEC_FAILED],
        _E.OK,
    ).astype(jnp.int32)
    levels = {
        "atomic": atomic,
        "orchestration": orch,
        "name": mean(name),
        "structure": mean(structure),
        "values": mean(values),
        "semantic": mean(sem),
    }
    if official:
        executable = has & x["call_has_response"]
        levels.update(
            {
                "R_atomic_validity": atomic,
                "R_atomic_validity_ast": mean(ast),
                "R_atomic_validity_semantic": levels["semantic"],
                "R_atomic_validity_rate": mean(full.astype(jnp.float32)),
                "R_atomic_validity_name": levels["name"],
                "R_atomic_validity_structure": levels["structure"],
                "R_atomic_validity_values": levels["values"],
                "tool_executable_rate": mean(executable.astype(jnp.float32)),
                "tool_calling_success_rate": mean((executable & x["call_no_error"]).astype(jnp.float32)),
                "R_outcome_orchestration": orch,
                "R_outcome_state": jnp.zeros((), jnp.float32),
                "score": w.atomic * atomic + w.orchestration * orch,
            }
        )
    calls = {"score": score, "name": name, "structure": structure, "values": values, "semantic": sem}
    return {
        "reward": _combine(atomic, orch, binary, mode, w),
        "levels": levels,
        "calls": {k: jnp.where(call_mask, v, 0.0) for k, v in calls.items()},
        "error_codes": codes,
    }


# ----------------------------------------------------------------------------- episode


def episode_single(x: Batch, mode: str, w: RewardWeights) -> dict[str, Any]:
    """`episode` reward of one episode (see `reference.episode_reward`)."""
    f = _pair_features(x)
    name_eq = f["name_eq"]
    n_calls_max, n_steps_max = name_eq.shape
    ast = _ast(f, w)
    call_mask, step_mask = x["call_mask"], x["step_mask"]
    sem = call_mask & x["call_format"] & x["call_success"]

    # Sequential one-to-one matching in call order: best AST among unconsumed steps with the name,
    # ties to the earliest (argmax returns the first maximum).
    def match(consumed: Array, c: Array) -> tuple[Array, tuple[Array, Array]]:
        cand = name_eq[c] & ~consumed
        j = jnp.argmax(jnp.where(cand, ast[c], -1.0))
        has = jnp.any(cand)
        consumed = consumed | (has & (jnp.arange(n_steps_max) == j))
        return consumed, (j.astype(jnp.int32), has)

    # Unrolled: C is small and static, and a rolled loop costs a loop iteration per call on CPU.
    _, (matched, has) = jax.lax.scan(match, jnp.zeros(n_steps_max, bool), jnp.arange(n_calls_max), unroll=True)

    pos = jnp.arange(n_calls_max, dtype=jnp.int32)
    onehot = has[:, None] & (matched[:, None] == jnp.arange(n_steps_max)[None, :])  # [C, S]
    step_matched = jnp.any(onehot, axis=0)
    big = n_calls_max + 1
    match_pos = jnp.where(step_matched, jnp.sum(jnp.where(onehot, pos[:, None], 0), axis=0), big)  # [S]
    step_success = jnp.any(onehot & sem[:, None], axis=0)  # the matched call executed successfully
    # Transitive credit, steps in order (dependencies are earlier steps, a static loop over S).
    deps_ok = jnp.zeros(n_steps_max, bool)
    credited = jnp.zeros(n_steps_max, bool)
    for j in range(n_steps_max):
        ok = step_matched[j] & jnp.all(~x["step_deps"][j] | (credited & (match_pos < match_pos[j])))
        deps_ok = deps_ok.at[j].set(ok)
        credited = credited.at[j].set(ok & step_success[j])

    value = jnp.where(has, (_take(ast, matched) + sem.astype(jnp.float32)) / 2.0, 0.0)
    n = jnp.sum(call_mask, dtype=jnp.int32)
    n_steps = jnp.sum(step_mask, dtype=jnp.int32)
    den = n + n_steps - jnp.sum(has & call_mask, dtype=jnp.int32)  # unmatched calls and steps cost a slot
    w_name, w_keys, w_values = w.ast
    calls = {
        "score": value,
        "name": jnp.where(has, w_name, 0.0),
        "structure": jnp.where(has, w_keys * _take(_key_type_ratio(f), matched), 0.0),
        "values": jnp.where(has & _take(_values_ok(f), matched), w_values, 0.0),
        "semantic": (has & sem).astype(jnp.float32),
    }
    atomic = jnp.where(den > 0, jnp.sum(jnp.where(call_mask, value, 0.0)) / jnp.maximum(den, 1).astype(jnp.float32), 1.0)
    orch = jnp.where(n_steps > 0, _safe_div(jnp.sum(credited, dtype=jnp.int32), n_steps), (n == 0).astype(jnp.float32))

    full = has & _take(_values_ok(f), matched) & sem
    binary = (n == n_steps) & jnp.all(full | ~call_mask) & jnp.all(credited | ~step_mask)

    name_exists = jnp.any(name_eq, axis=1)
    arg_code = _argument_code(f, matched)
    codes = jnp.select(
        [~call_mask, ~x["call_format"], ~has & name_exists, ~has, arg_code != _E.OK, ~_take(deps_ok, matched), ~sem],
        [_E.PADDING, _E.FORMAT, _E.REPEATED, _E.WRONG_NAME, arg_code, _E.DEPENDENCY_VIOLATION, _E.EXEC_FAILED],
        _E.OK,
    ).astype(jnp.int32)
    levels = {"atomic": atomic, "orchestration": orch}
    for k in ("name", "structure", "values", "semantic"):
        levels[k] = jnp.where(den > 0, jnp.sum(calls[k]) / jnp.maximum(den, 1).astype(jnp.float32), 0.0)
    return {
        "reward": _combine(atomic, orch, binary, mode, w),
        "levels": levels,
        "calls": {k: jnp.where(call_mask, v, 0.0) for k, v in calls.items()},
        "error_codes": codes,
    }


# ----------------------------------------------------------------------------- turn


def turn_single(x: Batch, mode: str, w: RewardWeights) -> dict[str, Any]:
    """`turn` reward of one turn (see `reference.turn_reward`)."""
    f = _pair_features(x)
    name_eq = f["name_eq"]
    n_calls_max, n_steps_max = name_eq.shape
    call_mask, turn_mask = x["call_mask"], x["turn_mask"] & x["step_mask"]
    fmt = (call_mask & x["call_format"])[:, None]

    # s(p, g), summed in the reference's order: ((w0 + w1) + w2·F1) + w3·share.
    w_format, w_name, w_keys, w_values = w.turn
    n_c, n_g, n_shared = f["n_c"], f["n_g"], f["n_shared"]
    f1 = jnp.where(n_c + n_g > 0, _safe_div(2 * n_shared, n_c + n_g), 1.0)
    keys_equal = (n_shared == n_c) & (n_shared == n_g)
    share = jnp.where(n_g > 0, _safe_div(f["n_val"], n_g), 1.0)
    named = name_eq.astype(jnp.float32)
    s = (
        w_format * fmt.astype(jnp.float32)
        + w_name * named
        + (w_keys * named) * f1
        + (w_values * (name_eq & keys_equal).astype(jnp.float32)) * share
    )
    optional = x["optional_mask"] & turn_mask  # may be skipped: paired only by name, counted when matched
    valid = call_mask[:, None] & turn_mask[None, :] & (~optional[None, :] | name_eq)

    # Greedy one-to-one matching by descending s; ties by (call, step) index = flat index order.
    def pick(_: int, state: tuple[Array, Array]) -> tuple[Array, Array]:
        avail, matched = state
        flat = jnp.argmax(jnp.where(avail, s, -1.0).reshape(-1))
        c, g = flat // n_steps_max, flat % n_steps_max
        ok = jnp.any(avail)
        matched = jnp.where(ok, matched.at[c].set(g.astype(jnp.int32)), matched)
        avail = jnp.where(ok, avail & (jnp.arange(n_calls_max) != c)[:, None] & (jnp.arange(n_steps_max) != g)[None, :], avail)
        return avail, matched

    _, matched = jax.lax.fori_loop(
        0, min(n_calls_max, n_steps_max), pick, (valid, jnp.full(n_calls_max, -1, jnp.int32))
    )
    has = matched >= 0
    g = jnp.maximum(matched, 0)

    n_p = jnp.sum(call_mask, dtype=jnp.int32)
    n_gold = jnp.sum(turn_mask & ~optional, dtype=jnp.int32) + jnp.sum(has & _take(optional, g), dtype=jnp.int32)
    den = jnp.maximum(n_p, n_gold)
    atomic_sum = jnp.sum(jnp.where(has, _take(s, g), 0.0))
    atomic = jnp.where(den > 0, atomic_sum / jnp.maximum(den, 1).astype(jnp.float32), 1.0)

    deps_done = jnp.all(~x["step_deps"] | x["done_mask"][None, :], axis=1)  # [S]
    full = name_eq & _values_ok(f)  # [C, S]
    frontier = has & _take(full, g) & _take(deps_done, g)
    tp = jnp.sum(frontier, dtype=jnp.int32)
    in_turn = jnp.any(name_eq & turn_mask[None, :], axis=1)
    later = x["later_mask"] & x["step_mask"] & ~deps_done
    premature = ~in_turn & jnp.any(name_eq & later[None, :], axis=1)
    n_pre = jnp.sum(premature, dtype=jnp.int32)
    f1_turn = jnp.where(n_p + n_gold > 0, _safe_div(2 * tp, n_p + n_gold), 1.0)
    pre_share = jnp.where(n_p > 0, _safe_div(n_pre, n_p), 0.0)
    orch = f1_turn * (1.0 - pre_share)
    binary = (tp == n_p) & (tp == n_gold)

    name_ok = has & _take(name_eq, g)
    arg_code = _argument_code(f, g)
    codes = jnp.select(
        [~call_mask, ~x["call_format"], ~name_ok & premature, ~name_ok & in_turn, ~name_ok, arg_code != _E.OK, ~_take(deps_done, g)],
        [_E.PADDING, _E.FORMAT, _E.PREMATURE, _E.REPEATED, _E.WRONG_NAME, arg_code, _E.DEPENDENCY_VIOLATION],
        _E.OK,
    ).astype(jnp.int32)
    named = has & _take(name_eq, g)
    calls = {
        "score": jnp.where(has, _take(s, g), 0.0),
        "format": jnp.where(has & call_mask & x["call_format"], w_format, 0.0),
        "name": jnp.where(named, w_name, 0.0),
        "structure": jnp.where(named, w_keys * _take(f1, g), 0.0),
        "values": jnp.where(named & _take(keys_equal, g), w_values * _take(share, g), 0.0),
        "semantic": (named & x["call_success"]).astype(jnp.float32),
    }
    levels = {"atomic": atomic, "orchestration": orch, "frontier_f1": f1_turn, "premature": pre_share}
    for k in ("format", "name", "structure", "values", "semantic"):
        levels[k] = jnp.where(den > 0, jnp.sum(calls[k]) / jnp.maximum(den, 1).astype(jnp.float32), 0.0)
    return {
        "reward": _combine(atomic, orch, binary, mode, w),
        "levels": levels,
        "calls": {k: jnp.where(call_mask, v, 0.0) for k, v in calls.items()},
        "error_codes": codes,
    }


SINGLE: dict[str, Callable[..., dict[str, Any]]] = {"paper": paper_single, "episode": episode_single, "turn": turn_single}


@functools.lru_cache(maxsize=None)
def make_kernel(
    family: str, mode: str, weights: RewardWeights = RewardWeights(), paper_compat: str = "ours"
) -> Callable[[Batch], dict[str, Any]]:
    """`jax.jit(jax.vmap(single))` for a family and mode; takes the dict of `encode_*` arrays
    (extra entries such as "overflow" are ignored) and returns reward [B], levels {name: [B]},
    calls {name: [B, C]}, error_codes [B, C].  `paper_compat` ("ours" / "official") selects the
    `paper` setting; other families accept and ignore it."""
    check_paper_compat(paper_compat)
    if family not in SINGLE:
        raise ValueError(f"unknown reward family {family!r}; expected one of {FAMILIES}")
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
    options = {"compat": paper_compat} if family == "paper" else {}
    single = functools.partial(SINGLE[family], mode=mode, w=weights, **options)
    vmapped = jax.vmap(single)
    keys = _INPUT_KEYS[family]

    @jax.jit
    def kernel(batch: Batch) -> dict[str, Any]:
        return vmapped({k: batch[k] for k in keys})

    return lambda batch: kernel({k: batch[k] for k in keys})


_EPISODE_KEYS = (
    "call_mask", "call_format", "call_success", "call_name", "call_key_bits", "call_type_bits", "call_val_bits",
    "step_mask", "step_name", "step_key_bits", "step_type_bits", "step_val_bits", "step_deps",
)  # fmt: skip
_PAPER_KEYS = (
    "call_mask", "call_format", "call_name", "step_mask", "step_name", "step_deps",
    "call_counted_official", "call_paper_success", "call_has_response", "call_no_error",
    "paper_n_c", "paper_n_g", "paper_n_shared", "paper_n_type", "paper_n_val", "paper_n_val_official",
)  # fmt: skip
_INPUT_KEYS = {
    "paper": _PAPER_KEYS,
    "episode": _EPISODE_KEYS,
    "turn": _EPISODE_KEYS + ("turn_mask", "later_mask", "done_mask", "optional_mask"),
}

"""Plain-Python reference of the graduated rewards: the oracle the JAX kernels are tested against.

One function per definition of docs/design.md, "Rewards".  Readability over speed: this is the
spec in code.  Families:

- `paper_reward`: the seed paper's episode formula, flaws included (first step with the name,
  name-only orchestration, atomic mean over the model's calls), in two settings: ``paper_compat=
  "official"`` reproduces the authors' `compute_score` exactly, ``"ours"`` is the same formula with
  the documented fixes of docs/paper_reward_differences.md.
- `episode_reward`: our corrected episode reward (one-to-one matching, orchestration credit only for
  executed successful calls whose dependencies are credited, atomic mean over #calls + #steps -
  #matched so that no extra call is free).
- `turn_reward`: per assistant turn, graduated pair score s(p, g) and frontier orchestration.

Each takes a `mode`: `graduated` (w_a·atomic + w_o·orchestration), `atomic`, `orchestration`,
`binary` (1 only when the episode/turn is exactly right), and returns a `Score` with the reward, the
per-level scores, per-call levels and one `ErrorCode` per predicted call.

Levels of every family: "atomic", "orchestration", and the atomic breakdown "name", "structure",
"values", "semantic" (each the family's mean over calls of that part of the call score, so for
`paper`/`episode` atomic = (name + structure + values + semantic) / 2; `turn` adds "format",
"frontier_f1", "premature").  Per-call levels (`Score.call_levels`, one tuple entry per call):
"score" (the call's contribution before the mean), "name", "structure", "values", "semantic"
(`turn`: also "format").  With ``paper_compat="official"`` `paper` also reports the keys of the
official result (`OFFICIAL_KEYS`).

Calls whose arguments break the limits of `types.argument_problem` are format failures in every
family; golden `depends_on` is validated by `types.validate_depends_on`.

Conventions for empty inputs (not covered by the paper): `paper` scores R_atomic = 0 with no calls
and R_orch = 0 with no golden steps; `episode` and `turn` treat "no golden calls and no predicted
calls" as exactly right (every part 1).
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Mapping, Sequence

from toolrl.rewards import bfcl
from toolrl.rewards.types import (
    MODES,
    OFFICIAL_COUNTED_REASONS,
    EpisodeInput,
    ErrorCode,
    GoldenStep,
    PredictedCall,
    RewardWeights,
    TurnInput,
    check_paper_compat,
    checked_call,
    semantic_success,
    validate_depends_on,
)

# Keys of the official `compute_score` result (reported as levels with paper_compat="official").
OFFICIAL_KEYS = (
    "R_atomic_validity", "R_atomic_validity_ast", "R_atomic_validity_semantic", "R_atomic_validity_rate",
    "R_atomic_validity_name", "R_atomic_validity_structure", "R_atomic_validity_values",
    "tool_executable_rate", "tool_calling_success_rate", "R_outcome_orchestration", "R_outcome_state", "score",
)  # fmt: skip
CALL_LEVELS = ("score", "name", "structure", "values", "semantic")

_STRIP = re.compile(r"[ ,./\-_*^]")


@dataclasses.dataclass(frozen=True)
class Score:
    """A reward with its parts.

    Attributes:
      reward: the scalar reward of the requested mode.
      levels: per-level scores ("atomic", "orchestration", ... see each family).
      error_codes: one `ErrorCode` (as int) per predicted call, in order.
    """

    reward: float
    levels: dict[str, float]
    error_codes: tuple[int, ...]
    call_levels: dict[str, tuple[float, ...]] = dataclasses.field(default_factory=dict)


# ----------------------------------------------------------------------------- values


def normalize_string(s: str) -> str:
    """String normalisation of the paper: drop ` ,./-_*^` and lower-case."""
    return _STRIP.sub("", s).lower()


def value_type(v: Any) -> str:
    """Type category of a JSON value: number (int and float agree), str, bool, list, dict, null."""
    if isinstance(v, bool):  # bool is an int subclass in Python: test it first.
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "str"
    if isinstance(v, (list, tuple)):
        return "list"
    if isinstance(v, Mapping):
        return "dict"
    if v is None:
        return "null"
    return "other"


def values_equal(a: Any, b: Any) -> bool:
    """Equality of argument values: same type category, strings normalised, numbers by value,
    lists element by element, dicts key by key (keys exact), recursively."""
    ta, tb = value_type(a), value_type(b)
    if ta != tb:
        return False
    if ta == "str":
        return normalize_string(a) == normalize_string(b)
    if ta == "number":
        return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))
    if ta == "list":
        return len(a) == len(b) and all(values_equal(x, y) for x, y in zip(a, b))
    if ta == "dict":
        return set(a) == set(b) and all(values_equal(a[k], b[k]) for k in a)
    return a == b


# ----------------------------------------------------------------------------- call-level checks


def argument_error(call_args: Mapping[str, Any], golden_args: Mapping[str, Any]) -> ErrorCode:
    """First failing argument check (MISSING_KEY, EXTRA_KEY, WRONG_TYPE, WRONG_VALUE) or OK."""
    if any(k not in call_args for k in golden_args):
        return ErrorCode.MISSING_KEY
    if any(k not in golden_args for k in call_args):
        return ErrorCode.EXTRA_KEY
    if any(value_type(call_args[k]) != value_type(golden_args[k]) for k in golden_args):
        return ErrorCode.WRONG_TYPE
    if any(not values_equal(call_args[k], golden_args[k]) for k in golden_args):
        return ErrorCode.WRONG_VALUE
    return ErrorCode.OK


def values_check(call_args: Mapping[str, Any], golden_args: Mapping[str, Any]) -> bool:
    """Every golden key present, no extra key, every value equal."""
    return argument_error(call_args, golden_args) == ErrorCode.OK


def key_type_ratio(call_args: Mapping[str, Any], golden_args: Mapping[str, Any]) -> float:
    """|keys(c) ∩ keys(g)| / |keys(g)| · type_acc of the paper; with no golden arguments, 1 only
    when the call has none either.

    type_acc is the share of shared keys whose types agree, so the product simplifies to
    (#shared keys with agreeing types) / |keys(g)|: one division, which keeps ties exact (the
    episode matching compares these numbers) in float32 and float64 alike.
    """
    if not golden_args:
        return 1.0 if not call_args else 0.0
    agreeing = sum(1 for k in golden_args if k in call_args and value_type(call_args[k]) == value_type(golden_args[k]))
    return agreeing / len(golden_args)


def ast_score(call: PredictedCall, step: GoldenStep, weights: RewardWeights) -> float:
    """AST score of the paper: w_name·[name] + w_keys·key_type_ratio + w_values·[values check]."""
    if not call.format_ok or call.name != step.function:
        return 0.0
    w_name, w_keys, w_values = weights.ast
    return w_name + w_keys * key_type_ratio(call.arguments, step.arguments) + w_values * float(
        values_check(call.arguments, step.arguments)
    )


def call_success(call: PredictedCall) -> bool:
    """Semantic level: executed and the response is a success."""
    return call.format_ok and semantic_success(call.executed, call.response)


def call_value(call: PredictedCall, step: GoldenStep | None, weights: RewardWeights) -> float:
    """(AST + semantic) / 2; a call without a golden step scores 0."""
    if step is None:
        return 0.0
    return (ast_score(call, step, weights) + float(call_success(call))) / 2.0


def is_full_match(call: PredictedCall, step: GoldenStep) -> bool:
    """Format, name, and values check all pass (AST score at its maximum)."""
    return call.format_ok and call.name == step.function and values_check(call.arguments, step.arguments)


def _combine(atomic: float, orchestration: float, binary: bool, mode: str, weights: RewardWeights) -> float:
    """The ablation modes."""
    if mode == "graduated":
        return weights.atomic * atomic + weights.orchestration * orchestration
    if mode == "atomic":
        return atomic
    if mode == "orchestration":
        return orchestration
    if mode == "binary":
        return float(binary)
    raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")


def _call_error(call: PredictedCall, step: GoldenStep | None, repeated: bool, deps_ok: bool) -> ErrorCode:
    """Error code of an episode-level call matched to `step` (None: unmatched)."""
    if not call.format_ok:
        return ErrorCode.FORMAT
    if step is None:
        return ErrorCode.REPEATED if repeated else ErrorCode.WRONG_NAME
    code = argument_error(call.arguments, step.arguments)
    if code != ErrorCode.OK:
        return code
    if not deps_ok:
        return ErrorCode.DEPENDENCY_VIOLATION
    if not call_success(call):
        return ErrorCode.EXEC_FAILED
    return ErrorCode.OK


# ----------------------------------------------------------------------------- paper


def paper_structure(call_args: Mapping[str, Any], golden_args: Mapping[str, Any]) -> float:
    """The paper's structure ratio in [0, 1] (times w_keys in the AST score): |shared keys| / |keys(g)|
    · type_acc, type_acc = share of shared keys whose types agree (`bfcl.types_compatible`: int,
    float and bool agree), 0 without shared keys; with no golden arguments, 1 only when the call has
    none either.  Computed as the official scorer does (two ratios multiplied)."""
    if not golden_args:
        return 1.0 if not call_args else 0.0
    shared = [k for k in golden_args if k in call_args]
    if not shared:
        return 0.0
    agreeing = sum(1 for k in shared if bfcl.types_compatible(call_args[k], golden_args[k]))
    return (len(shared) / len(golden_args)) * (agreeing / len(shared))


def paper_argument_error(call_args: Mapping[str, Any], golden_args: Mapping[str, Any], official: bool) -> ErrorCode:
    """First failing check of the paper's AST levels: MISSING_KEY, EXTRA_KEY, WRONG_TYPE (types not
    compatible), WRONG_VALUE (`bfcl.value_ok` fails), or OK (the values level passes)."""
    if any(k not in call_args for k in golden_args):
        return ErrorCode.MISSING_KEY
    if any(k not in golden_args for k in call_args):
        return ErrorCode.EXTRA_KEY
    if any(not bfcl.types_compatible(call_args[k], golden_args[k]) for k in golden_args):
        return ErrorCode.WRONG_TYPE
    if any(not bfcl.value_ok(call_args[k], golden_args[k], official) for k in golden_args):
        return ErrorCode.WRONG_VALUE
    return ErrorCode.OK


def paper_values_ok(call_args: Mapping[str, Any], golden_args: Mapping[str, Any], official: bool) -> bool:
    """The paper's values level (BFCL's check): same key set, every value passes `bfcl.value_ok`."""
    return set(call_args) == set(golden_args) and all(bfcl.value_ok(call_args[k], golden_args[k], official) for k in golden_args)


def paper_semantic(call: PredictedCall) -> bool:
    """The paper's semantic level: the call has a response (executed, not None) and
    `bfcl.response_ok` holds (``[]``, ``""`` and numbers pass; ``status: 0`` fails)."""
    return call.format_ok and call.executed and call.response is not None and bfcl.response_ok(call.response)


def credit_steps(calls: Sequence[PredictedCall], steps: Sequence[GoldenStep]) -> dict[int, int]:
    """Names-only orchestration credit of the paper (transitive): steps are visited in order; step
    j is credited at the first call position i with j's function name such that every step j
    depends on was itself credited, at a position < i.  Returns {step: credited position}."""
    credited: dict[int, int] = {}
    for j, g in enumerate(steps):
        if any(d not in credited for d in g.depends_on):
            continue
        lower = max((credited[d] for d in g.depends_on), default=-1)
        pos = next((i for i, c in enumerate(calls) if i > lower and c.format_ok and c.name == g.function), None)
        if pos is not None:
            credited[j] = pos
    return credited


def paper_reward(
    ep: EpisodeInput, mode: str = "graduated", weights: RewardWeights = RewardWeights(), paper_compat: str = "ours"
) -> Score:
    """The seed paper's reward (docs/design.md, "Rewards", `paper`), reproduced with its known flaws.

    Per call: the FIRST golden step with the call's name (none -> every level 0); AST = w_name +
    w_keys·`paper_structure` + w_values·[`paper_values_ok`]; semantic = `paper_semantic`.  R_atomic
    = mean over the counted calls of (AST + semantic) / 2 (0 without calls); R_orch = share of the
    golden steps credited by `credit_steps` (0 without steps).

    Args:
      paper_compat: "ours" (every call counts, unparseable ones as 0; dicts and lists of dicts
        compared key by key / element by element) or "official" (the authors' scorer exactly:
        blocks whose JSON did not parse are dropped, BFCL's dict check as it is).

    Levels: atomic, orchestration, name, structure, values, semantic (+ `OFFICIAL_KEYS` in the
    official setting).
    """
    check_paper_compat(paper_compat)
    official = paper_compat == "official"
    steps = ep.steps
    validate_depends_on(steps)
    calls = [checked_call(c) for c in ep.calls]
    w_name, w_keys, w_values = weights.ast
    first: dict[str, int] = {}
    for j, g in enumerate(steps):
        first.setdefault(g.function, j)
    credited = credit_steps(calls, steps)

    counted = [c.format_ok or not official or c.format_error in OFFICIAL_COUNTED_REASONS for c in calls]
    parts: dict[str, list[float]] = {k: [] for k in ("name", "structure", "values", "semantic", "ast", "score")}
    codes, full, executable, no_error = [], [], [], []
    for i, c in enumerate(calls):
        j = first.get(c.name) if c.format_ok else None
        if j is None:
            name = structure = values = semantic = 0.0
            ok_values = False
            code = ErrorCode.FORMAT if not c.format_ok else ErrorCode.WRONG_NAME
        else:
            g = steps[j]
            ok_values = paper_values_ok(c.arguments, g.arguments, official)
            name = w_name
            structure = w_keys * paper_structure(c.arguments, g.arguments)
            values = w_values if ok_values else 0.0
            semantic = float(paper_semantic(c))
            code = paper_argument_error(c.arguments, g.arguments, official)
            deps_ok = all(d in credited for d in g.depends_on) and i > max((credited[d] for d in g.depends_on), default=-1)
            if code == ErrorCode.OK and not deps_ok:
                code = ErrorCode.DEPENDENCY_VIOLATION
            elif code == ErrorCode.OK and not semantic:
                code = ErrorCode.EXEC_FAILED
        ast = name + structure + values
        for k, v in (("name", name), ("structure", structure), ("values", values), ("semantic", semantic), ("ast", ast)):
            parts[k].append(v)
        parts["score"].append((ast + semantic) / 2.0)
        codes.append(int(code))
        full.append(j is not None and ok_values and semantic == 1.0)
        has_response = j is not None and c.executed and c.response is not None
        executable.append(has_response)
        no_error.append(has_response and bfcl.response_no_error(c.response))

    n = sum(counted)

    def mean(xs: Sequence[float]) -> float:
        return sum(x for x, k in zip(xs, counted) if k) / n if n else 0.0

    if official:
        atomic = (mean(parts["ast"]) + mean(parts["semantic"])) / 2
    else:
        atomic = mean(parts["score"])
    orchestration = len(credited) / len(steps) if steps else 0.0
    binary = n > 0 and bool(steps) and all(f for f, k in zip(full, counted) if k) and len(credited) == len(steps)
    reward = _combine(atomic, orchestration, binary, mode, weights)
    levels = {"atomic": atomic, "orchestration": orchestration}
    levels.update({k: mean(parts[k]) for k in ("name", "structure", "values", "semantic")})
    if official:
        valid = full  # AST total >= 1 and semantic: the values level implies full structure
        levels.update(
            {
                "R_atomic_validity": atomic,
                "R_atomic_validity_ast": mean(parts["ast"]),
                "R_atomic_validity_semantic": mean(parts["semantic"]),
                "R_atomic_validity_rate": mean([float(v) for v in valid]),
                "R_atomic_validity_name": levels["name"],
                "R_atomic_validity_structure": levels["structure"],
                "R_atomic_validity_values": levels["values"],
                "tool_executable_rate": mean([float(v) for v in executable]),
                "tool_calling_success_rate": mean([float(v) for v in no_error]),
                "R_outcome_orchestration": orchestration,
                "R_outcome_state": 0.0,
                "score": weights.atomic * atomic + weights.orchestration * orchestration,
            }
        )
    call_levels = {k: tuple(parts[k]) for k in CALL_LEVELS}
    return Score(reward, levels, tuple(codes), call_levels)


# ----------------------------------------------------------------------------- episode


def match_episode(ep: EpisodeInput, weights: RewardWeights = RewardWeights()) -> list[int | None]:
    """One-to-one matching of calls to golden steps, in call order.

    Each call takes, among the unconsumed steps with its name, the one with the best AST score
    (ties to the earliest step); the step is then consumed.  Returns the step index per call.
    """
    consumed: set[int] = set()
    matched: list[int | None] = []
    for c in ep.calls:
        candidates = [j for j, g in enumerate(ep.steps) if c.format_ok and g.function == c.name and j not in consumed]
        if not candidates:
            matched.append(None)
            continue
        best = max(candidates, key=lambda j: (ast_score(c, ep.steps[j], weights), -j))
        consumed.add(best)
        matched.append(best)
    return matched


def episode_reward(
    ep: EpisodeInput, mode: str = "graduated", weights: RewardWeights = RewardWeights(), paper_compat: str = "ours"
) -> Score:
    """Our corrected episode reward (docs/design.md, "Rewards", `episode`).

    Levels: atomic = Σ call values / (#calls + #steps - #matched) (each unmatched call and each
    unmatched step costs a slot: a repeated or hallucinated call is never free); orchestration = share
    of golden steps credited, a step being credited when its matched call executed successfully
    (`call_success`) at a position after the matches of all steps it depends on, and those steps are
    credited (transitively: a call whose prerequisite failed earns no credit); name, structure,
    values, semantic (the atomic breakdown, same denominator).  `paper_compat` is accepted and ignored.
    """
    check_paper_compat(paper_compat)
    validate_depends_on(ep.steps)
    ep = EpisodeInput(tuple(checked_call(c) for c in ep.calls), ep.steps)
    calls, steps = ep.calls, ep.steps
    matched = match_episode(ep, weights)
    position = {j: i for i, j in enumerate(matched) if j is not None}  # step -> call position
    w_name, w_keys, w_values = weights.ast

    # Steps in order (dependencies come first): deps_ok = matched after its credited dependencies;
    # credited = deps_ok and its call executed successfully.
    deps_ok, credit = [False] * len(steps), [False] * len(steps)
    for j, step in enumerate(steps):
        deps_ok[j] = j in position and all(credit[d] and position[d] < position[j] for d in step.depends_on)
        credit[j] = deps_ok[j] and call_success(calls[position[j]])

    values, codes, full = [], [], []
    parts: dict[str, list[float]] = {k: [] for k in ("name", "structure", "values", "semantic")}
    for c, j in zip(calls, matched):
        step = steps[j] if j is not None else None
        values.append(call_value(c, step, weights))
        full.append(step is not None and is_full_match(c, step) and call_success(c))
        repeated = c.format_ok and any(g.function == c.name for g in steps)
        codes.append(_call_error(c, step, repeated=repeated, deps_ok=j is not None and deps_ok[j]))
        hit = step is not None
        parts["name"].append(w_name if hit else 0.0)
        parts["structure"].append(w_keys * key_type_ratio(c.arguments, step.arguments) if hit else 0.0)
        parts["values"].append(w_values if hit and values_check(c.arguments, step.arguments) else 0.0)
        parts["semantic"].append(float(hit and call_success(c)))

    denominator = len(calls) + len(steps) - len(position)
    atomic = sum(values) / denominator if denominator else 1.0
    orchestration = sum(credit) / len(steps) if steps else float(not calls)
    binary = len(calls) == len(steps) and all(full) and all(credit)
    reward = _combine(atomic, orchestration, binary, mode, weights)
    levels = {"atomic": atomic, "orchestration": orchestration}
    levels.update({k: sum(v) / denominator if denominator else 0.0 for k, v in parts.items()})
    call_levels = {"score": tuple(values), **{k: tuple(v) for k, v in parts.items()}}
    return Score(reward, levels, tuple(int(x) for x in codes), call_levels)


# ----------------------------------------------------------------------------- turn


def key_f1(call_args: Mapping[str, Any], golden_args: Mapping[str, Any]) -> float:
    """F1 of the key sets, 2|P∩G| / (|P| + |G|) (one division: exact ties); 1 when both empty."""
    if not call_args and not golden_args:
        return 1.0
    shared = sum(1 for k in call_args if k in golden_args)
    return 2 * shared / (len(call_args) + len(golden_args))


def value_share(call_args: Mapping[str, Any], golden_args: Mapping[str, Any]) -> float:
    """Share of golden values equal after normalisation (1 when there are no golden arguments)."""
    if not golden_args:
        return 1.0
    return sum(1 for k in golden_args if k in call_args and values_equal(call_args[k], golden_args[k])) / len(golden_args)


def turn_pair_score(p: PredictedCall, g: GoldenStep, weights: RewardWeights = RewardWeights()) -> float:
    """s(p, g) = w0·[format] + w1·[name] + w2·[name]·F1(keys) + w3·[name, keys equal]·value share;
    each level counts only when the level below holds."""
    w_format, w_name, w_keys, w_values = weights.turn
    if not p.format_ok:
        return 0.0
    s = w_format
    if p.name != g.function:
        return s
    s += w_name
    s += w_keys * key_f1(p.arguments, g.arguments)
    if set(p.arguments) == set(g.arguments):
        s += w_values * value_share(p.arguments, g.arguments)
    return s


def match_turn(t: TurnInput, weights: RewardWeights = RewardWeights()) -> list[int | None]:
    """Greedy one-to-one matching by descending s(p, g), ties by predicted index then golden step
    index; an optional golden call pairs only with a parsed call of its name.  Returns the matched
    golden step index per predicted call."""
    optional = set(t.optional)
    pairs = [(turn_pair_score(p, t.steps[j], weights), i, j) for i, p in enumerate(t.calls) for j in t.turn
             if j not in optional or (p.format_ok and p.name == t.steps[j].function)]
    pairs.sort(key=lambda x: (-x[0], x[1], x[2]))
    matched: list[int | None] = [None] * len(t.calls)
    used: set[int] = set()
    for _, i, j in pairs:
        if matched[i] is None and j not in used:
            matched[i] = j
            used.add(j)
    return matched


def is_premature(p: PredictedCall, t: TurnInput) -> bool:
    """Names a golden call of a later turn with a dependency not done yet, and names no golden call
    of this turn (an attempt at a current call is judged by the atomic part instead)."""
    if not p.format_ok or any(t.steps[j].function == p.name for j in t.turn):
        return False
    return any(
        t.steps[j].function == p.name and not all(d in t.done for d in t.steps[j].depends_on) for j in t.later
    )


def turn_reward(
    t: TurnInput, mode: str = "graduated", weights: RewardWeights = RewardWeights(), paper_compat: str = "ours"
) -> Score:
    """Our per-turn reward (docs/design.md, "Rewards", `turn`).

    A predicted call is on the frontier when its matched golden call is a full match whose
    dependencies are all done.  Orchestration = F1(frontier calls, golden calls of the turn) ·
    (1 − premature / |P|), with F1 = 2·#frontier / (|P| + |G|); G holds the turn's required golden
    calls and those of its optional ones (`TurnInput.optional`) that a predicted call matched.
    Levels: atomic, orchestration, frontier_f1, premature (share of predicted calls), and the atomic
    breakdown format, name, structure, values (summing to atomic) plus semantic (share of executed
    successful matched calls, informational), over max(|P|, |G|).  `paper_compat` is ignored.
    """
    check_paper_compat(paper_compat)
    validate_depends_on(t.steps)
    t = dataclasses.replace(t, calls=tuple(checked_call(c) for c in t.calls))
    calls = t.calls
    matched = match_turn(t, weights)
    optional = set(t.optional) & set(t.turn)
    n_p = len(calls)
    n_g = len(t.turn) - len(optional) + sum(1 for j in matched if j in optional)
    atomic_sum = sum(turn_pair_score(p, t.steps[j], weights) for p, j in zip(calls, matched) if j is not None)
    denominator = max(n_p, n_g)
    atomic = atomic_sum / denominator if denominator else 1.0

    def deps_done(j: int) -> bool:
        return all(d in t.done for d in t.steps[j].depends_on)

    frontier = [j is not None and is_full_match(p, t.steps[j]) and deps_done(j) for p, j in zip(calls, matched)]
    premature = [is_premature(p, t) for p in calls]
    f1 = 2 * sum(frontier) / (n_p + n_g) if n_p + n_g else 1.0
    premature_share = sum(premature) / n_p if n_p else 0.0
    orchestration = f1 * (1.0 - premature_share)

    turn_names = {t.steps[j].function for j in t.turn}
    codes = []
    for p, j, pre in zip(calls, matched, premature):
        if not p.format_ok:
            code = ErrorCode.FORMAT
        elif j is None or t.steps[j].function != p.name:
            code = ErrorCode.PREMATURE if pre else ErrorCode.REPEATED if p.name in turn_names else ErrorCode.WRONG_NAME
        else:
            code = argument_error(p.arguments, t.steps[j].arguments)
            if code == ErrorCode.OK and not deps_done(j):
                code = ErrorCode.DEPENDENCY_VIOLATION
        codes.append(int(code))

    binary = sum(frontier) == n_p == n_g
    reward = _combine(atomic, orchestration, binary, mode, weights)
    levels = {"atomic": atomic, "orchestration": orchestration, "frontier_f1": f1, "premature": premature_share}
    w_format, w_name, w_keys, w_values = weights.turn
    parts: dict[str, list[float]] = {k: [] for k in ("score", "format", "name", "structure", "values", "semantic")}
    for p, j in zip(calls, matched):
        g = t.steps[j] if j is not None else None
        hit = g is not None and p.format_ok
        named = hit and p.name == g.function
        parts["score"].append(turn_pair_score(p, g, weights) if g is not None else 0.0)
        parts["format"].append(w_format if hit else 0.0)
        parts["name"].append(w_name if named else 0.0)
        parts["structure"].append(w_keys * key_f1(p.arguments, g.arguments) if named else 0.0)
        same_keys = named and set(p.arguments) == set(g.arguments)
        parts["values"].append(w_values * value_share(p.arguments, g.arguments) if same_keys else 0.0)
        parts["semantic"].append(float(named and call_success(p)))
    for k in ("format", "name", "structure", "values", "semantic"):
        levels[k] = sum(parts[k]) / denominator if denominator else 0.0
    return Score(reward, levels, tuple(codes), {k: tuple(v) for k, v in parts.items()})


REFERENCES = {"paper": paper_reward, "episode": episode_reward, "turn": turn_reward}

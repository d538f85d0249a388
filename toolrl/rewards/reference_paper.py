"""The seed paper's reward in the plain-Python oracle (docs/design.md, "Rewards", `paper`): the
episode formula, flaws included (first step with the name, name-only orchestration, atomic mean
over the model's calls), in two settings: ``paper_compat="official"`` reproduces the authors'
`compute_score` exactly, ``"ours"`` is the same formula with the documented fixes of
docs/paper_reward_differences.md.  Value rules are BFCL's (:mod:`toolrl.rewards.bfcl`).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from toolrl.rewards import bfcl
from toolrl.rewards.reference_common import Score, _combine
from toolrl.rewards.types import (
    OFFICIAL_COUNTED_REASONS,
    EpisodeInput,
    ErrorCode,
    GoldenStep,
    PredictedCall,
    RewardWeights,
    check_paper_compat,
    checked_call,
    validate_depends_on,
)

# Keys of the official `compute_score` result (reported as levels with paper_compat="official").
OFFICIAL_KEYS = (
    "R_atomic_validity", "R_atomic_validity_ast", "R_atomic_validity_semantic", "R_atomic_validity_rate",
    "R_atomic_validity_name", "R_atomic_validity_structure", "R_atomic_validity_values",
    "tool_executable_rate", "tool_calling_success_rate", "R_outcome_orchestration", "R_outcome_state", "score",
)  # fmt: skip
CALL_LEVELS = ("score", "name", "structure", "values", "semantic")


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

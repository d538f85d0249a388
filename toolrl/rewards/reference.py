"""Plain-Python reference of the graduated rewards: the oracle the JAX kernels are tested against.

One function per definition of docs/design.md, "Rewards".  Readability over speed: this is the
spec in code.  This module holds our two families and the table of all three (`REFERENCES`); the
common pieces (`Score`, value equality, call-level checks, modes) are in
:mod:`toolrl.rewards.reference_common`, the paper's family in :mod:`toolrl.rewards.reference_paper`.
Families:

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
from typing import Any, Mapping

from toolrl.rewards.reference_common import (
    Score,
    _combine,
    argument_error,
    ast_score,
    call_success,
    call_value,
    is_full_match,
    key_type_ratio,
    values_check,
    values_equal,
)
from toolrl.rewards.reference_paper import paper_reward
from toolrl.rewards.types import (
    EpisodeInput,
    ErrorCode,
    GoldenStep,
    PredictedCall,
    RewardWeights,
    TurnInput,
    check_paper_compat,
    checked_call,
    validate_depends_on,
)

# ----------------------------------------------------------------------------- episode


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

"""Hand-computed cases for the parser and every rule of the reference rewards.

Numbers are worked out in the comments; AST weights 0.33/0.33/0.34, R = 0.5·R_atomic + 0.5·R_orch,
turn weights 0.1/0.2/0.3/0.4.
"""

import pytest

from toolrl.rewards.parse import ParseError, ToolCall, parse_tool_calls
from toolrl.rewards.reference import (
    episode_reward,
    paper_reward,
    turn_pair_score,
    turn_reward,
)
from toolrl.rewards.reference_common import values_equal
from toolrl.rewards.types import EpisodeInput, ErrorCode, GoldenStep, PredictedCall, TurnInput, semantic_success

OK = {"status": True, "data": [1]}
E = ErrorCode

SEARCH = GoldenStep("Search", {"city": "New York", "n": 2})
HOTEL = GoldenStep("Hotel", {"id": "h1"}, depends_on=(0,))
STEPS = (SEARCH, HOTEL)


def call(name, args, response=OK, executed=True):
    return PredictedCall(name, args, executed=executed, response=response)


GOOD = (call("Search", {"city": "New York", "n": 2}), call("Hotel", {"id": "h1"}))


def approx(x):
    return pytest.approx(x, abs=1e-12)


# ----------------------------------------------------------------------------- parse


def test_parse_several_calls_dict_and_string_arguments():
    text = (
        'I will search. <tool_call>{"name": "Search", "arguments": {"city": "Paris"}}</tool_call>\n'
        '<tool_call>{"name": "Hotel", "arguments": "{\\"id\\": \\"h1\\"}"}</tool_call>'
        '<tool_call>{"name": "Ping", "parameters": {"x": 1}}</tool_call>'
        '<tool_call>{"name": "NoArgs"}</tool_call>'
    )
    r = parse_tool_calls(text)
    assert r.format_ok and not r.errors
    assert r.calls == (
        ToolCall("Search", {"city": "Paris"}),
        ToolCall("Hotel", {"id": "h1"}),
        ToolCall("Ping", {"x": 1}),
        ToolCall("NoArgs", {}),
    )


def test_parse_reports_malformed_pieces_in_order_and_never_raises():
    text = (
        "<tool_call>{not json}</tool_call>"
        '<tool_call>{"arguments": {}}</tool_call>'
        '<tool_call>{"name": "A", "arguments": "[1, 2]"}</tool_call>'
        '<tool_call>{"name": "B", "arguments": {"k": 1}}</tool_call>'
        "</tool_call>"
        '<tool_call>{"name": "C"'
    )
    r = parse_tool_calls(text)
    assert not r.format_ok
    assert [e.reason for e in r.errors] == [
        "invalid_json",
        "missing_name",
        "arguments_not_object",
        "stray_close_tag",
        "unclosed_block",
    ]
    assert r.calls == (ToolCall("B", {"k": 1}),)
    assert [type(b) for b in r.blocks] == [ParseError] * 3 + [ToolCall] + [ParseError] * 2
    assert [b.index for b in r.errors] == [0, 1, 2, 4, 5]


def test_parse_no_calls_is_format_ok_and_garbage_never_raises():
    assert parse_tool_calls("The answer is 42.") .format_ok
    for text in ["<tool_call>", "</tool_call>", "<tool_call><tool_call>{}</tool_call>", "\x00{[", ""]:
        parse_tool_calls(text)  # must not raise


# ----------------------------------------------------------------------------- value rules


def test_values_equal_rules():
    assert values_equal("New York", "new-york")  # normalisation strips ' -' and lower-cases
    assert values_equal("2024-11-25", "20241125")
    assert not values_equal("New York", "Newark")
    assert values_equal(2, 2.0) and not values_equal(2, 2.5)  # int and float agree by value
    assert not values_equal(True, 1) and not values_equal("1", 1)  # bool and str are their own types
    assert values_equal([{"fromId": "BOS.AIRPORT"}], [{"fromId": "bosairport"}])  # element by element
    assert not values_equal([{"a": 1}, {"a": 2}], [{"a": 2}, {"a": 1}])  # order matters
    assert not values_equal({"a": 1}, {"a": 1, "b": 2})
    assert values_equal(None, None) and not values_equal(None, "")


def test_semantic_success():
    assert semantic_success(True, {"status": True})
    assert semantic_success(True, [{"x": 1}])  # bare-list responses of real APIs
    assert not semantic_success(False, {"status": True})
    assert not semantic_success(True, {"error": "boom"})
    assert not semantic_success(True, {"status": False, "message": "x"})
    assert not semantic_success(True, {}) and not semantic_success(True, []) and not semantic_success(True, "")


# ----------------------------------------------------------------------------- paper


def test_paper_golden_rollout_scores_one():
    s = paper_reward(EpisodeInput(GOOD, STEPS))
    assert s.reward == 1.0 and s.error_codes == (E.OK, E.OK)


def test_paper_name_miss():
    # Call 0 names no golden step -> value 0. Call 1 perfect -> 1. R_atomic = 0.5.
    # Orch: Search step has no call with its name -> 0; Hotel depends on Search, never called -> 0.
    # R = 0.5*0.5 + 0.5*0 = 0.25.
    s = paper_reward(EpisodeInput((call("Serch", {"city": "New York", "n": 2}), GOOD[1]), STEPS))
    assert s.levels["atomic"] == approx(0.5) and s.levels["orchestration"] == 0.0
    assert s.reward == approx(0.25)
    assert s.error_codes == (E.WRONG_NAME, E.DEPENDENCY_VIOLATION)


def test_paper_partial_keys():
    # Call 0 misses "n": AST = 0.33 + 0.33*(1 shared, type ok)/2 + 0 = 0.495; semantic 1
    # value = (0.495 + 1)/2 = 0.7475. Call 1 = 1. R_atomic = 0.87375. Orch = 1.
    # R = 0.5*0.87375 + 0.5 = 0.936875.
    s = paper_reward(EpisodeInput((call("Search", {"city": "New York"}), GOOD[1]), STEPS))
    assert s.levels["atomic"] == approx(0.87375)
    assert s.reward == approx(0.936875)
    assert s.error_codes == (E.MISSING_KEY, E.OK)


def test_paper_type_mismatch_and_int_float():
    # n="2" (str vs number): shared 2 keys, types agree on 1 -> AST = 0.33 + 0.33*1/2 = 0.495.
    # value = 0.7475, R_atomic = (0.7475 + 1)/2 = 0.87375, R = 0.936875 (as above).
    s = paper_reward(EpisodeInput((call("Search", {"city": "New York", "n": "2"}), GOOD[1]), STEPS))
    assert s.reward == approx(0.936875) and s.error_codes[0] == E.WRONG_TYPE
    # n=2.0 for a golden int 2: types agree (structure full) but BFCL's value check wants an int:
    # AST = 0.33 + 0.33 + 0 = 0.66, value 0.83, R_atomic = 0.915, R = 0.9575 (the official rule).
    s = paper_reward(EpisodeInput((call("Search", {"city": "new_york", "n": 2.0}), GOOD[1]), STEPS))
    assert s.reward == approx(0.9575) and s.error_codes[0] == E.WRONG_VALUE
    # The other way round (golden float, model int) passes: BFCL converts an int to float.
    steps = (GoldenStep("Geo", {"lat": 2.0}),)
    assert paper_reward(EpisodeInput((call("Geo", {"lat": 2}),), steps)).reward == 1.0


def test_paper_wrong_value_and_extra_key():
    # Wrong value: AST = 0.33 + 0.33 + 0 = 0.66, value = 0.83, R_atomic = 0.915, R = 0.9575.
    s = paper_reward(EpisodeInput((call("Search", {"city": "Boston", "n": 2}), GOOD[1]), STEPS))
    assert s.reward == approx(0.9575) and s.error_codes[0] == E.WRONG_VALUE
    # Extra key: shared 2/2 types ok -> 0.33 + 0.33, values check fails (extra) -> same 0.9575.
    s = paper_reward(EpisodeInput((call("Search", {"city": "New York", "n": 2, "x": 1}), GOOD[1]), STEPS))
    assert s.reward == approx(0.9575) and s.error_codes[0] == E.EXTRA_KEY


def test_paper_no_argument_calls():
    steps = (GoldenStep("Now", {}),)
    # Golden has no arguments: keys term 0.33 only when the call has none.
    assert paper_reward(EpisodeInput((call("Now", {}),), steps)).reward == 1.0
    # With an argument: AST = 0.33 + 0 + 0 (extra key) = 0.33, value = 0.665, R = 0.5*0.665+0.5 = 0.8325.
    s = paper_reward(EpisodeInput((call("Now", {"tz": "UTC"}),), steps))
    assert s.reward == approx(0.8325) and s.error_codes == (E.EXTRA_KEY,)


def test_paper_failed_execution():
    # Hotel call returns an error: semantic 0, value = (1 + 0)/2 = 0.5; R_atomic = 0.75; R = 0.875.
    s = paper_reward(EpisodeInput((GOOD[0], call("Hotel", {"id": "h1"}, {"error": "no"})), STEPS))
    assert s.reward == approx(0.875) and s.error_codes == (E.OK, E.EXEC_FAILED)
    s = paper_reward(EpisodeInput((GOOD[0], call("Hotel", {"id": "h1"}, None, executed=False)), STEPS))
    assert s.reward == approx(0.875)


def test_paper_dependency_violated():
    # Hotel before Search: atomic still 1 (values only), but Hotel's dependency Search is called at a
    # later position -> Hotel not credited, Search credited -> R_orch = 0.5, R = 0.75.
    s = paper_reward(EpisodeInput((GOOD[1], GOOD[0]), STEPS))
    assert s.levels["atomic"] == 1.0 and s.levels["orchestration"] == 0.5
    assert s.reward == approx(0.75)
    assert s.error_codes == (E.DEPENDENCY_VIOLATION, E.OK)


def test_paper_no_calls_and_unparseable():
    # No calls: R_atomic = 0 by definition, R_orch = 0 -> 0.
    assert paper_reward(EpisodeInput((), STEPS)).reward == 0.0
    # An unparseable block counts as a call of value 0: R_atomic = (1 + 1 + 0)/3, R_orch = 1
    # -> R = 0.5*2/3 + 0.5 = 0.8333.
    s = paper_reward(EpisodeInput(GOOD + (PredictedCall.unparseable(),), STEPS))
    assert s.reward == approx(0.5 * 2 / 3 + 0.5) and s.error_codes[-1] == E.FORMAT


def test_paper_flaw_repeated_function_perfect_rollout_below_one():
    # Two Search steps with different arguments: the second (perfect) call is checked against the
    # FIRST Search step: AST = 0.33 + 0.33 + 0 (city differs) = 0.66, value 0.83,
    # R_atomic = (1 + 0.83)/2 = 0.915, R_orch = 1 -> R = 0.9575 < 1 for a perfect rollout.
    steps = (GoldenStep("Search", {"city": "Paris"}), GoldenStep("Search", {"city": "Rome"}))
    calls = (call("Search", {"city": "Paris"}), call("Search", {"city": "Rome"}))
    assert paper_reward(EpisodeInput(calls, steps)).reward == approx(0.9575)
    assert episode_reward(EpisodeInput(calls, steps)).reward == 1.0


def test_paper_flaw_repeating_good_call_or_dropping_bad_one_raises_reward():
    steps = (GoldenStep("A", {"x": 1}), GoldenStep("B", {"y": 1}))
    bad_b = call("B", {"y": 2})  # value = (0.66 + 1)/2 = 0.83
    base = paper_reward(EpisodeInput((call("A", {"x": 1}), bad_b), steps)).reward
    # base: R_atomic = (1 + 0.83)/2 = 0.915, R_orch = 1 -> 0.9575.
    assert base == approx(0.9575)
    # Repeating the good A call: R_atomic = (1 + 1 + 0.83)/3 = 0.9433 -> R = 0.97167 > base.
    rep = paper_reward(EpisodeInput((call("A", {"x": 1}), call("A", {"x": 1}), bad_b), steps)).reward
    assert rep == approx(0.5 * 2.83 / 3 + 0.5) and rep > base
    # Dropping B entirely: R_atomic = 1, R_orch = 1/2 -> 0.75 < base here, but dropping a failing
    # call whose step is ALSO covered by name elsewhere raises it: one call may satisfy several
    # steps, so A,A with steps A,A needs no exact arguments at all.
    steps_aa = (GoldenStep("A", {"x": 1}), GoldenStep("A", {"x": 2}))
    one = paper_reward(EpisodeInput((call("A", {"x": 1}),), steps_aa)).reward  # drop 2nd call
    both = paper_reward(EpisodeInput((call("A", {"x": 1}), call("A", {"x": 2})), steps_aa)).reward
    assert one == 1.0 and both == approx(0.9575) and one > both
    # The corrected episode reward ranks them the right way round.
    assert episode_reward(EpisodeInput((call("A", {"x": 1}),), steps_aa)).reward < 1.0
    assert episode_reward(EpisodeInput((call("A", {"x": 1}), call("A", {"x": 2})), steps_aa)).reward == 1.0
    rep_e = episode_reward(EpisodeInput((call("A", {"x": 1}), call("A", {"x": 1}), bad_b), steps)).reward
    base_e = episode_reward(EpisodeInput((call("A", {"x": 1}), bad_b), steps)).reward
    assert rep_e < base_e


# ----------------------------------------------------------------------------- episode


def test_episode_golden_and_rules():
    assert episode_reward(EpisodeInput(GOOD, STEPS)).reward == 1.0
    # Name miss: call 0 unmatched (value 0), Hotel matched (1). atomic = 1/(2 + 2 - 1) = 1/3 (the
    # unmatched call and the unmatched step each cost a slot).
    # Orch: Search unmatched; Hotel's dependency unmatched -> 0. R = 1/6.
    s = episode_reward(EpisodeInput((call("Serch", {}), GOOD[1]), STEPS))
    assert s.reward == approx(1 / 6) and s.error_codes == (E.WRONG_NAME, E.DEPENDENCY_VIOLATION)
    # Dropped call: atomic = 1/(1 + 2 - 1) = 0.5; orch: Search credited, Hotel unmatched -> 0.5. R = 0.5.
    assert episode_reward(EpisodeInput(GOOD[:1], STEPS)).reward == approx(0.5)
    # Repeated call: third call finds no unconsumed Search -> 0 and REPEATED; atomic = 2/(3 + 2 - 2), orch 1.
    s = episode_reward(EpisodeInput(GOOD + (GOOD[0],), STEPS))
    assert s.reward == approx(0.5 * 2 / 3 + 0.5) and s.error_codes[-1] == E.REPEATED
    # Swapped dependent calls: Hotel matched at position 0 before Search at 1 -> Hotel not credited.
    # atomic = 1, orch = 0.5, R = 0.75.
    s = episode_reward(EpisodeInput((GOOD[1], GOOD[0]), STEPS))
    assert s.reward == approx(0.75) and s.error_codes == (E.DEPENDENCY_VIOLATION, E.OK)
    # No calls: atomic 0, orch 0.
    assert episode_reward(EpisodeInput((), STEPS)).reward == 0.0
    # Unparseable instead of Hotel: atomic 1/(2 + 2 - 1), orch 1/2.
    assert episode_reward(EpisodeInput((GOOD[0], PredictedCall.unparseable()), STEPS)).reward == approx(0.5 / 3 + 0.25)


def test_episode_best_argument_match_wins_ties_earliest():
    steps = (GoldenStep("S", {"c": "Paris"}), GoldenStep("S", {"c": "Rome"}))
    # Rome first: matched to step 1 (AST 1 vs 0.66), then Paris to step 0. Both perfect: atomic 1,
    # no dependencies -> R = 1 even in the "wrong" order.
    calls = (call("S", {"c": "Rome"}), call("S", {"c": "Paris"}))
    assert episode_reward(EpisodeInput(calls, steps)).reward == 1.0
    # A call matching neither (Oslo) ties at 0.66 with both steps and takes the earliest (step 0);
    # the following Paris call then gets step 1 (AST 0.66, value 0.83).
    calls = (call("S", {"c": "Oslo"}), call("S", {"c": "Paris"}))
    s = episode_reward(EpisodeInput(calls, steps))
    assert s.levels["atomic"] == approx((0.83 + 0.83) / 2)


def test_episode_modes_and_binary():
    ep = EpisodeInput((call("Search", {"city": "New York"}), GOOD[1]), STEPS)
    # atomic: values (0.7475, 1) / 2 = 0.87375; orch 1.
    assert episode_reward(ep, "atomic").reward == approx(0.87375)
    assert episode_reward(ep, "orchestration").reward == 1.0
    assert episode_reward(ep, "binary").reward == 0.0
    assert episode_reward(EpisodeInput(GOOD, STEPS), "binary").reward == 1.0
    with pytest.raises(ValueError, match="unknown mode"):
        episode_reward(ep, "nope")


# ----------------------------------------------------------------------------- turn


def test_turn_pair_score_levels():
    g = GoldenStep("Search", {"city": "Paris", "n": 2})
    # Format only: 0.1. Name: 0.1+0.2 = 0.3, plus keys F1 2*1/(1+2) = 2/3 -> 0.3 + 0.2 = 0.5.
    assert turn_pair_score(PredictedCall("Other", {}), g) == approx(0.1)
    assert turn_pair_score(PredictedCall("Search", {"city": "Paris"}), g) == approx(0.5)
    # Keys equal, one of two values equal: 0.1+0.2+0.3+0.4*0.5 = 0.8.
    assert turn_pair_score(PredictedCall("Search", {"city": "Paris", "n": 3}), g) == approx(0.8)
    assert turn_pair_score(PredictedCall("Search", {"city": "paris", "n": 2.0}), g) == 1.0
    assert turn_pair_score(PredictedCall.unparseable(), g) == 0.0
    # No-argument golden call: F1(∅, ∅) = 1 and share 1.
    assert turn_pair_score(PredictedCall("Now", {}), GoldenStep("Now", {})) == 1.0


def test_turn_reward_frontier_premature_and_repeats():
    steps = (
        GoldenStep("Search", {"city": "Paris"}),
        GoldenStep("Weather", {"city": "Paris"}),
        GoldenStep("Hotel", {"id": "h1"}, depends_on=(0,)),
    )
    turn = TurnInput(calls=(), steps=steps, turn=(0, 1), later=(2,), done=frozenset())
    good = (PredictedCall("Search", {"city": "Paris"}), PredictedCall("Weather", {"city": "Paris"}))
    t = dataclass_replace(turn, calls=good)
    s = turn_reward(t)
    assert s.reward == 1.0 and s.error_codes == (E.OK, E.OK)
    assert turn_reward(t, "binary").reward == 1.0
    # Premature Hotel call added: atomic = (1 + 1)/3; frontier 2, F1 = 4/5; premature 1/3 ->
    # orch = 0.8 * 2/3 = 0.5333; R = 0.5*0.6667 + 0.5*0.5333 = 0.6.
    s = turn_reward(dataclass_replace(turn, calls=good + (PredictedCall("Hotel", {"id": "h1"}),)))
    assert s.reward == approx(0.5 * 2 / 3 + 0.5 * 0.8 * 2 / 3) and s.error_codes[-1] == E.PREMATURE
    # Repeated Search: matched pairs (Search,0)=1, (Weather,1)=1, extra Search unmatched ->
    # atomic 2/3, F1 = 4/5, no premature -> R = 0.5*2/3 + 0.5*0.8 = 0.7333.
    s = turn_reward(dataclass_replace(turn, calls=good + (good[0],)))
    assert s.reward == approx(0.5 * 2 / 3 + 0.4) and s.error_codes[-1] == E.REPEATED
    # No calls: atomic 0, F1 0 -> 0.  Unparseable: s = 0, frontier 0 -> 0 too.
    assert turn_reward(turn).reward == 0.0
    assert turn_reward(dataclass_replace(turn, calls=(PredictedCall.unparseable(),))).reward == 0.0
    # Dependency not done: Hotel's turn when Search is not done -> full match but not frontier.
    t3 = TurnInput(calls=(PredictedCall("Hotel", {"id": "h1"}),), steps=steps, turn=(2,), done=frozenset())
    s = turn_reward(t3)
    # atomic 1, F1 0 -> R = 0.5.
    assert s.reward == approx(0.5) and s.error_codes == (E.DEPENDENCY_VIOLATION,)
    t3 = dataclass_replace(t3, done=frozenset({0, 1}))
    assert turn_reward(t3).reward == 1.0


def dataclass_replace(obj, **kw):
    import dataclasses

    return dataclasses.replace(obj, **kw)

"""`paper` against the behaviour of the authors' scorer (horizon-rl/ToolOrchestrationReward,
`training/reward/complex_tool.py`, with Gorilla BFCL's `simple_function_checker`).

Every expected number is worked out by hand from what that code does (comments); each case runs
through the reference AND the kernel (`score_episodes`) in the setting named.  AST weights
0.33/0.33/0.34, R = 0.5·R_atomic + 0.5·R_orch.
"""

import json

import numpy as np
import pytest

from toolrl.rewards import (
    PAPER_COMPAT,
    EpisodeInput,
    ErrorCode,
    GoldenStep,
    PredictedCall,
    episode_from_text,
    get_reward,
    parse_tool_calls_official,
    score_episodes,
    score_turns,
)
from toolrl.rewards import bfcl, reference, reference_paper
from toolrl.rewards.types import TurnInput

E = ErrorCode
OK = {"status": True, "data": [1]}


def call(name, args, response=OK, executed=True):
    return PredictedCall(name, args, executed=executed, response=response)


def score(ep, compat, mode="graduated"):
    """Reference score, after checking that the kernel agrees on reward, levels and codes."""
    ref = reference.paper_reward(ep, mode, paper_compat=compat)
    out = score_episodes("paper", mode, [ep], paper_compat=compat)
    assert out.reward[0] == pytest.approx(ref.reward, abs=1e-6)
    for k, v in ref.levels.items():
        assert out.levels[k][0] == pytest.approx(v, abs=1e-6), k
    assert tuple(out.error_codes[0][: len(ep.calls)]) == ref.error_codes
    return ref


def approx(x):
    return pytest.approx(x, abs=1e-9)


# ----------------------------------------------------------------------------- orchestration


@pytest.mark.parametrize("compat", PAPER_COMPAT)
def test_orchestration_credit_is_transitive(compat):
    # Steps Car_Location -> Rentals (dep 0) -> Packages (dep 1); calls Rentals, Location, Packages.
    # Official: step 0 credited at position 1; step 1 needs a Rentals call after position 1: none;
    # step 2 depends on step 1, which was not credited -> not credited.  R_orch = 1/3.
    steps = (
        GoldenStep("Car_Location", {}),
        GoldenStep("Rentals", {}, depends_on=(0,)),
        GoldenStep("Packages", {}, depends_on=(1,)),
    )
    calls = (call("Rentals", {}), call("Car_Location", {}), call("Packages", {}))
    s = score(EpisodeInput(calls, steps), compat)
    assert s.levels["orchestration"] == approx(1 / 3)
    # Atomic: every call is perfect -> 1.  R = 0.5 + 0.5/3.
    assert s.reward == approx(0.5 + 0.5 / 3)
    assert s.error_codes == (E.DEPENDENCY_VIOLATION, E.OK, E.DEPENDENCY_VIOLATION)
    # In order: everything credited.
    assert score(EpisodeInput((calls[1], calls[0], calls[2]), steps), compat).reward == 1.0


@pytest.mark.parametrize("compat", PAPER_COMPAT)
def test_orchestration_credit_position_is_the_first_valid_call(compat):
    # A, B(dep 0), A, B: step 0 credited at position 0, step 1 at position 1.  With calls B, A, B:
    # step 0 at 1, step 1 at the first B after 1 (position 2) -> both credited.
    steps = (GoldenStep("A", {}), GoldenStep("B", {}, depends_on=(0,)))
    s = score(EpisodeInput((call("B", {}), call("A", {}), call("B", {})), steps), compat)
    assert s.levels["orchestration"] == 1.0
    assert s.error_codes == (E.DEPENDENCY_VIOLATION, E.OK, E.OK)


# ----------------------------------------------------------------------------- semantic level


@pytest.mark.parametrize("compat", PAPER_COMPAT)
@pytest.mark.parametrize(
    "response, success",
    [
        ([], True),  # any list passes, even empty
        ("", True),  # a string passes, even ""
        ("Error: not found", True),
        (0, True),  # a number passes
        (2.5, True),
        (False, True),  # a bool is an int: passes
        ({"status": True}, True),
        ({"data": 1}, True),
        ({"status": 0}, False),  # status == False holds for 0
        ({"status": 0.0, "data": 1}, False),
        ({"status": False}, False),
        ({"error": None}, False),  # the key alone fails
        ({}, False),  # empty dict
        (None, False),  # no response: not executed
    ],
)
def test_semantic_rule(compat, response, success):
    # One step A{x: 1}, one perfect call: AST 1; semantic 1 -> R = 1, semantic 0 -> atomic 0.5,
    # R = 0.75.
    ep = EpisodeInput((call("A", {"x": 1}, response),), (GoldenStep("A", {"x": 1}),))
    s = score(ep, compat)
    assert s.reward == approx(1.0 if success else 0.75)
    assert s.error_codes == ((E.OK,) if success else (E.EXEC_FAILED,))


def test_semantic_rule_is_the_papers_only():
    # The episode family keeps our rule: an empty list or a string is a failure there.
    from toolrl.rewards.types import semantic_success

    assert not semantic_success(True, []) and not semantic_success(True, "x") and not semantic_success(True, 0)
    assert bfcl.response_ok([]) and bfcl.response_ok("x") and bfcl.response_ok(0)


def test_official_success_and_executable_rates():
    # Calls: A -> {} (executed, empty: semantic 0 but no error), A -> {"error"}, A not executed,
    # B (no golden step: never looked up).  total_calls = 4.
    # tool_executable_rate = 2 with a response among matched... A{} and A{"error"} -> 2/4;
    # tool_calling_success_rate: A{} has no error -> 1/4; R_atomic_validity_semantic = 0.
    steps = (GoldenStep("A", {}),)
    calls = (call("A", {}, {}), call("A", {}, {"error": "x"}), call("A", {}, None, executed=False), call("B", {}))
    s = score(EpisodeInput(calls, steps), "official")
    assert s.levels["tool_executable_rate"] == approx(0.5)
    assert s.levels["tool_calling_success_rate"] == approx(0.25)
    assert s.levels["R_atomic_validity_semantic"] == 0.0
    # AST: three A calls score 1 each, B 0 -> 3/4; R_atomic = (0.75 + 0)/2.
    assert s.levels["R_atomic_validity_ast"] == approx(0.75)
    assert s.levels["R_atomic_validity"] == approx(0.375)
    assert s.levels["R_atomic_validity_rate"] == 0.0
    assert s.levels["R_outcome_orchestration"] == 1.0 and s.levels["R_outcome_state"] == 0.0
    assert s.levels["score"] == approx(0.5 * 0.375 + 0.5)
    assert set(reference_paper.OFFICIAL_KEYS) <= set(s.levels)


# ----------------------------------------------------------------------------- values level


@pytest.mark.parametrize("compat", PAPER_COMPAT)
def test_int_golden_rejects_float_but_float_golden_accepts_int(compat):
    # Golden 2 (int), model 2.0: types compatible (structure 0.33) but BFCL wants an int: values 0.
    # AST 0.66, call value 0.83, R = 0.5·0.83 + 0.5 = 0.915.
    s = score(EpisodeInput((call("A", {"n": 2.0}),), (GoldenStep("A", {"n": 2}),)), compat)
    assert s.reward == approx(0.915) and s.error_codes == (E.WRONG_VALUE,)
    # Golden 2.0, model 2: BFCL converts the int to float -> passes.
    assert score(EpisodeInput((call("A", {"n": 2}),), (GoldenStep("A", {"n": 2.0}),)), compat).reward == 1.0
    # Inside a list there is no conversion: golden [1.5, 2.0], model [1.5, 2] -> item type fails.
    s = score(EpisodeInput((call("A", {"n": [1.5, 2]}),), (GoldenStep("A", {"n": [1.5, 2.0]}),)), compat)
    assert s.reward == approx(0.915)


@pytest.mark.parametrize("compat", PAPER_COMPAT)
def test_bool_is_type_compatible_with_numbers_but_not_equal(compat):
    # Golden n=1, model True: isinstance(True, int) -> structure 0.33; BFCL's value check wants an
    # int exactly -> values 0.  AST 0.66 -> R = 0.915.  Same the other way round.
    s = score(EpisodeInput((call("A", {"n": True}),), (GoldenStep("A", {"n": 1}),)), compat)
    assert s.reward == approx(0.915) and s.levels["structure"] == approx(0.33)
    s = score(EpisodeInput((call("A", {"f": 1}),), (GoldenStep("A", {"f": True}),)), compat)
    assert s.reward == approx(0.915)
    # A str for a number is a type mismatch: structure 0, AST 0.33 -> value 0.665 -> R 0.8325.
    s = score(EpisodeInput((call("A", {"n": "1"}),), (GoldenStep("A", {"n": 1}),)), compat)
    assert s.reward == approx(0.8325) and s.error_codes == (E.WRONG_TYPE,)


@pytest.mark.parametrize("compat", PAPER_COMPAT)
def test_string_standardisation_maps_single_to_double_quote(compat):
    # BFCL: drop " ,./-_*^", lower-case, ' -> ".  "It's" and 'it"s' are equal; "its" is not.
    steps = (GoldenStep("A", {"q": "It's New-York"}),)
    assert score(EpisodeInput((call("A", {"q": 'it"s newyork'}),), steps), compat).reward == 1.0
    assert score(EpisodeInput((call("A", {"q": "its newyork"}),), steps), compat).reward == approx(0.915)
    assert bfcl.standardize("It's A_B") == 'it"sab'


LEGS = [{"fromId": "BOS.AIRPORT", "toId": "JFK.AIRPORT", "date": "2024-11-25"}]


def test_list_of_dicts_ours_element_by_element_official_bfcl_bug():
    steps = (GoldenStep("Flights", {"legs": LEGS}),)
    same = EpisodeInput((call("Flights", {"legs": [{"fromId": "bos airport", "toId": "JFK.AIRPORT", "date": "20241125"}]}),), steps)
    # Ours: element by element with the same rules -> 1.
    assert score(same, "ours").reward == 1.0
    # Official: BFCL's dict check iterates the characters of each golden string, so "bosairport"
    # is not among ["b", "o", ...]: values fail.  AST 0.66 -> R 0.915.
    s = score(same, "official")
    assert s.reward == approx(0.915) and s.error_codes == (E.WRONG_VALUE,)
    # ... the exact golden value fails too (the golden rollout of every flight sample is below 1).
    assert score(EpisodeInput((call("Flights", {"legs": LEGS}),), steps), "official").reward == approx(0.915)
    # The bug's odd corners: a one-character golden string passes, and a missing key whose golden
    # value is a string is accepted ("" is in every string).
    one = (GoldenStep("F", {"legs": [{"a": "X", "b": "yz"}]}),)
    assert score(EpisodeInput((call("F", {"legs": [{"a": "x"}]}),), one), "official").reward == 1.0
    assert score(EpisodeInput((call("F", {"legs": [{"a": "x"}]}),), one), "ours").reward == approx(0.915)
    # Wrong number of dicts fails in both.
    assert score(EpisodeInput((call("F", {"legs": []}),), one), "official").reward == approx(0.915)


def test_dict_values_follow_the_same_rule():
    steps = (GoldenStep("A", {"filter": {"city": "Paris", "n": "2"}}),)
    ep = EpisodeInput((call("A", {"filter": {"city": "paris", "n": "2"}}),), steps)
    assert score(ep, "ours").reward == 1.0
    # Official: "paris" is not one of the characters of "Paris" -> fails.
    assert score(ep, "official").reward == approx(0.915)
    # A golden dict value that is a number makes BFCL raise (len() of an int): we score it a fail.
    num = (GoldenStep("A", {"filter": {"n": 2}}),)
    assert score(EpisodeInput((call("A", {"filter": {"n": 2}}),), num), "official").reward == approx(0.915)
    assert score(EpisodeInput((call("A", {"filter": {"n": 2}}),), num), "ours").reward == 1.0


@pytest.mark.parametrize("compat", PAPER_COMPAT)
def test_repeated_function_is_checked_against_the_first_step(compat):
    # Two Search steps: the perfect second call is checked against the FIRST step's arguments:
    # AST 0.66, value 0.83; R_atomic = (1 + 0.83)/2 = 0.915; both steps credited by name: R = 0.9575.
    steps = (GoldenStep("Search", {"city": "Paris"}), GoldenStep("Search", {"city": "Rome"}))
    calls = (call("Search", {"city": "Paris"}), call("Search", {"city": "Rome"}))
    s = score(EpisodeInput(calls, steps), compat)
    assert s.reward == approx(0.9575)
    # One call satisfies both steps (names only, no dependency): R_orch 1, atomic 1.
    assert score(EpisodeInput(calls[:1], steps), compat).reward == 1.0


@pytest.mark.parametrize("compat", PAPER_COMPAT)
def test_structure_is_overlap_times_type_accuracy(compat):
    # Golden {a: 1, b: "x", c: "y"}; model {a: "1", b: "x", d: 1}: shared {a, b} -> overlap 2/3,
    # types agree on b only -> 1/2; structure = 0.33·(2/3)·(1/2) = 0.11; values fail.
    # AST = 0.44, value (0.44 + 1)/2 = 0.72, R = 0.5·0.72 + 0.5 = 0.86.
    steps = (GoldenStep("A", {"a": 1, "b": "x", "c": "y"}),)
    s = score(EpisodeInput((call("A", {"a": "1", "b": "x", "d": 1}),), steps), compat)
    assert s.levels["structure"] == approx(0.11) and s.reward == approx(0.86)
    assert s.call_levels["score"] == (approx(0.72),)


# ----------------------------------------------------------------------------- unparseable calls


GOOD_STEPS = (GoldenStep("A", {"x": 1}), GoldenStep("B", {}))
GOOD_CALLS = (call("A", {"x": 1}), call("B", {}))


def test_unparseable_calls_ours_count_as_zero_official_dropped():
    bad = GOOD_CALLS + (PredictedCall.unparseable("invalid_json"),)
    # Ours: 3 calls, values 1, 1, 0 -> atomic 2/3 -> R = 0.5·2/3 + 0.5.
    s = score(EpisodeInput(bad, GOOD_STEPS), "ours")
    assert s.reward == approx(0.5 * 2 / 3 + 0.5) and s.error_codes[-1] == E.FORMAT
    # Official: a block whose JSON did not parse is not a call at all -> R = 1.
    s = score(EpisodeInput(bad, GOOD_STEPS), "official")
    assert s.reward == 1.0 and s.error_codes[-1] == E.FORMAT
    # ... but JSON that parsed into a non-object or a nameless object is a call worth 0.
    for reason in ("not_an_object", "missing_name"):
        kept = GOOD_CALLS + (PredictedCall.unparseable(reason),)
        assert score(EpisodeInput(kept, GOOD_STEPS), "official").reward == approx(0.5 * 2 / 3 + 0.5)
    # Only unparseable calls: official has no calls -> atomic 0, orchestration 0.
    assert score(EpisodeInput((PredictedCall.unparseable(),), GOOD_STEPS), "official").reward == 0.0


def _text(*objs):
    return "".join("<tool_call>" + (o if isinstance(o, str) else json.dumps(o)) + "</tool_call>" for o in objs)


def test_official_text_reading():
    # Nested open tag: the official regex takes "A<tool_call>{...}" as one body -> invalid JSON ->
    # dropped, and the inner call is NOT parsed on its own.
    r = parse_tool_calls_official("<tool_call>A" + _text({"name": "B"}))
    assert r.calls == () and [e.reason for e in r.errors] == ["invalid_json"]
    # Arguments that are not an object read as {}; "parameters" is ignored; the name is not stripped.
    r = parse_tool_calls_official(_text({"name": "B", "arguments": [1]}, {"name": "B", "parameters": {"x": 1}}, {"name": " B"}))
    assert [(c.name, c.arguments) for c in r.calls] == [("B", {}), ("B", {}), (" B", {})]
    # So a golden no-argument step B gets a full AST from a call with garbage arguments:
    ep = episode_from_text(_text({"name": "A", "arguments": {"x": 1}}, {"name": "B", "arguments": "[1]"}), [OK, OK], GOOD_STEPS, "official")
    assert score(ep, "official").reward == 1.0
    # ... while ours reads it as an unparseable block worth 0: atomic 1/2, orchestration 1/2.
    ep = episode_from_text(_text({"name": "A", "arguments": {"x": 1}}, {"name": "B", "arguments": "[1]"}), [OK], GOOD_STEPS)
    assert ep.calls[1].format_error == "arguments_not_object"
    assert score(ep, "ours").reward == approx(0.5)
    # Unclosed and stray markers are no blocks for the official reader; calls for ours.
    text = _text({"name": "A", "arguments": {"x": 1}}, {"name": "B"}) + "</tool_call><tool_call>{"
    assert len(episode_from_text(text, [OK, OK], GOOD_STEPS, "official").calls) == 2
    assert len(episode_from_text(text, [OK, OK], GOOD_STEPS).calls) == 4


def test_official_pairs_responses_by_signature():
    # Two identical calls; the first got no response, the second did.  The official scorer looks
    # responses up by (name, sorted arguments): the first call takes the second one's response,
    # the second finds none.  Semantic: 1, 0 either way round -> same score, but the levels show it.
    steps = (GoldenStep("A", {"x": 1}),)
    text = _text({"name": "A", "arguments": {"x": 1}}, {"name": "A", "arguments": {"x": 1}})
    off = episode_from_text(text, [None, OK], steps, "official")
    assert [c.executed for c in off.calls] == [True, False]
    ours = episode_from_text(text, [None, OK], steps)
    assert [c.executed for c in ours.calls] == [False, True]
    assert score(off, "official").call_levels["semantic"] == (1.0, 0.0)


def test_episode_from_text_with_an_environment_and_turns():
    class Env:
        def __init__(self):
            self.seen = []

        def execute(self, c):
            self.seen.append(c)
            if c["name"] == "Boom":
                raise RuntimeError("down")
            return {"status": True, "data": c["arguments"]}

    env = Env()
    turns = [_text({"name": "A", "arguments": {"x": 1}}) + "thinking", "<tool_call>{oops</tool_call>" + _text({"name": "Boom"})]
    ep = episode_from_text(turns, env, GOOD_STEPS)
    assert [c.name for c in ep.calls] == ["A", "", "Boom"] and len(env.seen) == 2
    assert ep.calls[1].format_error == "invalid_json"
    assert "error" in ep.calls[2].response  # a raising environment becomes an error response
    with pytest.raises(ValueError, match="2 responses for 1"):
        episode_from_text(_text({"name": "A"}), [OK, OK], GOOD_STEPS)
    with pytest.raises(ValueError, match="paper_compat"):
        episode_from_text("", None, GOOD_STEPS, "nope")


# ----------------------------------------------------------------------------- registry / validation


def test_paper_compat_is_validated_everywhere():
    ep = EpisodeInput(GOOD_CALLS, GOOD_STEPS)
    for fn in (
        lambda: get_reward("paper", paper_compat="bad"),
        lambda: score_episodes("paper", "graduated", [ep], paper_compat="bad"),
        lambda: score_turns("turn", "graduated", [], paper_compat="bad"),
        lambda: reference.paper_reward(ep, paper_compat="bad"),
    ):
        with pytest.raises(ValueError, match="unknown paper_compat 'bad'; expected one of ours, official"):
            fn()
    # Other families accept the setting and ignore it.
    a = score_episodes("episode", "graduated", [ep], paper_compat="official").reward
    assert a.tolist() == score_episodes("episode", "graduated", [ep]).reward.tolist() == [1.0]
    r = get_reward("paper", "graduated", paper_compat="official")
    assert r.reference(ep).reward == float(r.kernel(r.encode([ep]))["reward"][0]) == 1.0


@pytest.mark.parametrize(
    "deps, message",
    [((1,), "1, which is the step itself"), ((5,), "5, which is out of range"), ((2,), "2, which is a later step"), ((-1,), "-1, which is out of range")],
)
def test_depends_on_validation_is_one_rule_for_every_path(deps, message):
    steps = (GoldenStep("A", {}), GoldenStep("B", {}, depends_on=deps), GoldenStep("C", {}))
    good = EpisodeInput((), (GoldenStep("A", {}),))
    ep = EpisodeInput((call("A", {}),), steps)
    for family in ("paper", "episode"):
        with pytest.raises(ValueError, match=f"sample 1: golden step 1 \\('B'\\) depends on {message}"):
            score_episodes(family, "graduated", [good, ep])
        with pytest.raises(ValueError, match=f"golden step 1 \\('B'\\) depends on {message}"):
            reference.REFERENCES[family](ep)
    with pytest.raises(ValueError, match=f"sample 0: golden step 1 \\('B'\\) depends on {message}"):
        score_turns("turn", "graduated", [TurnInput((), steps, (0,))])


def test_real_data_dependencies_pass_validation():
    from toolrl.data.paths import default_data_dir
    from toolrl.data.traces import load_trace_file
    from toolrl.rewards.corruptions import golden_episode

    for name in ("eval_100.json", "bfcl_training_3_per_workflow.json"):
        eps = [golden_episode(s.steps) for s in load_trace_file(default_data_dir() / name)]
        out = score_episodes("paper", "graduated", eps, paper_compat="official")
        assert out.reward.shape == (len(eps),)


def test_padding_is_to_multiples_of_64_not_powers_of_two():
    from toolrl.rewards.registry import _bucket

    assert _bucket(1533, 64) == 1536 and _bucket(1, 64) == 64 and _bucket(65, 64) == 128
    assert _bucket(1533, 1) == 1533
    ep = EpisodeInput(GOOD_CALLS, GOOD_STEPS)
    out = score_episodes("paper", "graduated", [ep] * 3, pad_multiple=1)
    np.testing.assert_allclose(out.reward, [1.0, 1.0, 1.0])
    assert out.call_levels["score"].shape == (3, 16)

"""Never raise on any model text (issue 14): the parsers, `episode_from_text` and the batch scorers
on hostile input -- deep nesting, huge numbers, huge strings, lone surrogates, NaN / Infinity --
give verdicts with reasons ("too_deep", "too_large", "invalid_json"), and kernel == reference on
whatever comes out."""

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from toolrl.rewards import (
    PAPER_COMPAT,
    EpisodeInput,
    ErrorCode,
    GoldenStep,
    PredictedCall,
    TurnInput,
    episode_from_text,
    parse_tool_calls,
    parse_tool_calls_official,
    safe_json_loads,
    score_episodes,
    score_turns,
)
from toolrl.rewards import reference
from toolrl.rewards.types import MAX_ARGUMENT_DEPTH, argument_problem

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
STEPS = (GoldenStep("A", {"x": 1, "s": "New York"}), GoldenStep("B", {"legs": [{"id": "a"}]}, depends_on=(0,)))


def deep(depth, leaf=1):
    v = leaf
    for i in range(depth):
        v = [v] if i % 2 else {"k": v}
    return v


def test_the_reported_cases_are_verdicts_not_exceptions():
    text = '<tool_call>{"name":"x","arguments":{"q":' + "9" * 4301 + "}}</tool_call>"
    assert [e.reason for e in parse_tool_calls(text).errors] == ["too_large"]
    assert [e.reason for e in parse_tool_calls_official(text).errors] == ["too_large"]
    text = '<tool_call>{"name":"x","arguments":{"q":' + "[" * 500 + "]" * 500 + "}}</tool_call>"
    assert [e.reason for e in parse_tool_calls(text).errors] == ["too_deep"]
    # Arguments ~500 levels deep reaching the encoder directly: a FORMAT verdict, no RecursionError.
    ep = EpisodeInput((PredictedCall("A", {"q": deep(500)}),), STEPS)
    for family in ("paper", "episode"):
        out = score_episodes(family, "graduated", [ep])
        assert out.error_codes[0, 0] == ErrorCode.FORMAT
        assert out.reward[0] == pytest.approx(reference.REFERENCES[family](ep).reward, abs=1e-6)


def test_safe_json_loads_reasons():
    assert safe_json_loads('{"a": [1, 2]}') == ({"a": [1, 2]}, None)
    assert safe_json_loads("[" * 65 + "]" * 65) == (None, "too_deep")
    assert safe_json_loads("[" * 64 + "]" * 64)[1] is None
    assert safe_json_loads('"[[[[[[[["', max_depth=2) == ("[[[[[[[[", None)  # brackets in strings don't count
    assert safe_json_loads("1" * 5000) == (None, "too_large")
    assert safe_json_loads("x" * 10, max_chars=5) == (None, "too_large")
    assert safe_json_loads("{") == (None, "invalid_json")
    assert safe_json_loads(None) == (None, "invalid_json")
    value, reason = safe_json_loads('[NaN, Infinity, -Infinity, 1e999, "\\ud800"]')
    assert reason is None and np.isnan(value[0]) and value[1:4] == [float("inf"), float("-inf"), float("inf")]


def test_argument_limits():
    assert argument_problem({"q": deep(MAX_ARGUMENT_DEPTH - 1)}) == ""
    assert argument_problem({"q": deep(MAX_ARGUMENT_DEPTH + 1)}) == "too_deep"
    assert argument_problem({"q": 10**5000}) == "too_large"
    assert argument_problem({"q": "x" * 300_000}) == "too_large"
    assert argument_problem({"q": list(range(30_000))}) == "too_large"
    assert argument_problem({"q": float("nan"), "r": "\ud800"}) == ""


FRAGMENTS = [
    "<tool_call>", "</tool_call>", '{"name": "A", "arguments": {"x": ', '{"name": "B", "arguments": {"legs": [',
    '{"name": "A"}', "{", "}", "[", "]", '"', ",", ":", "[" * 300, "]" * 300, "{" * 200, "9" * 4400, "NaN",
    "Infinity", "-Infinity", "1e999", "-0", '"\\ud800"', '"\\udfff\\ud800"', "\ud800", '"x" * 5', "null",
    '"' + "s" * 5000 + '"', "1", "1.0", "true", '"New York"', '{"id": "a"}', '"arguments": "{\\"x\\": 1}"',
]  # fmt: skip
text_st = st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=4), max_size=30).map("".join)


@FUZZ
@given(text_st)
def test_parsers_never_raise(text):
    for parse in (parse_tool_calls, parse_tool_calls_official):
        r = parse(text)
        assert len(r.blocks) == len(r.calls) + len(r.errors)
        for c in r.calls:
            assert isinstance(c.arguments, dict) and argument_problem(c.arguments) == ""


@FUZZ
@given(st.lists(text_st, min_size=1, max_size=6), st.sampled_from(PAPER_COMPAT))
def test_text_to_reward_never_raises_and_kernel_matches_reference(texts, compat):
    responses = [{"status": True}, {"error": "x"}, "", [], {"status": float("nan")}, 10**400, "\ud800"]

    class Cycle:  # an environment answering from a fixed list
        n = 0

        def execute(self, call):
            self.n += 1
            return responses[self.n % len(responses)]

    eps = [episode_from_text(t, Cycle() if i % 2 else None, STEPS, compat) for i, t in enumerate(texts)]
    eps = [EpisodeInput(e.calls[:40], e.steps) for e in eps]
    for family in ("paper", "episode"):
        out = score_episodes(family, "graduated", eps, paper_compat=compat)
        for b, ep in enumerate(eps):
            ref = reference.REFERENCES[family](ep, paper_compat=compat)
            assert out.reward[b] == pytest.approx(ref.reward, abs=1e-6)


hostile_value = st.sampled_from(
    [deep(70), deep(500), 10**5000, 10**400, -(10**300), "x" * 300_000, "\ud800", "\udfff", float("nan"),
     float("inf"), float("-inf"), [float("nan")], {"k": float("nan")}, list(range(25_000)), 1, "New York", [{"id": "a"}]]
)  # fmt: skip


@FUZZ
@given(st.lists(st.dictionaries(st.sampled_from(["x", "s", "legs", "q"]), hostile_value, max_size=3), min_size=1, max_size=5))
def test_scorers_never_raise_on_hostile_arguments(arg_dicts):
    calls = tuple(PredictedCall("A" if i % 2 else "B", a, response={"status": True}) for i, a in enumerate(arg_dicts))
    golden = STEPS + (GoldenStep("C", {"n": float("nan"), "big": 10**300, "s": "\ud800"}),)
    eps = [EpisodeInput(calls, golden), EpisodeInput(calls[::-1], golden)]
    for family in ("paper", "episode"):
        for compat in PAPER_COMPAT:
            out = score_episodes(family, "graduated", eps, paper_compat=compat)
            for b, ep in enumerate(eps):
                ref = reference.REFERENCES[family](ep, paper_compat=compat)
                assert out.reward[b] == pytest.approx(ref.reward, abs=1e-6)
                assert tuple(out.error_codes[b, : len(ep.calls)]) == ref.error_codes
    turns = [TurnInput(calls, golden, turn=(0, 1), later=(2,))]
    out = score_turns("turn", "graduated", turns)
    assert out.reward[0] == pytest.approx(reference.turn_reward(turns[0]).reward, abs=1e-6)


def test_nan_and_surrogate_values_compare_consistently():
    # json.loads turns each NaN literal into a new float object: BFCL's `value in [golden]` is then
    # False (identity, then ==), so NaN never matches a golden NaN in the paper's value check.
    steps = (GoldenStep("A", {"v": float("nan"), "s": "\ud800x"}),)
    text = '<tool_call>{"name": "A", "arguments": {"v": NaN, "s": "\\ud800X"}}</tool_call>'
    for compat in PAPER_COMPAT:
        ep = episode_from_text(text, [{"status": True}], steps, compat)
        out = score_episodes("paper", "graduated", [ep], paper_compat=compat)
        assert out.error_codes[0, 0] == ErrorCode.WRONG_VALUE
        assert out.reward[0] == pytest.approx(reference.paper_reward(ep, paper_compat=compat).reward, abs=1e-6)
    assert json.loads(json.dumps("\ud800")) == "\ud800"

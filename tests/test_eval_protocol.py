"""Checks of the evaluator on the real eval_100 samples: golden = 100%, corruptions lower exactly what they should."""

from __future__ import annotations

import dataclasses

import pytest

from toolrl.eval import (CORRUPTIONS, EvalReport, build_turn_tasks, corrupted_policy, evaluate, golden_policy,
                         load_eval_samples, make_matcher, no_calls_policy)
from toolrl.eval.match import ERROR_KINDS
from toolrl.eval.policies import GoldenPolicy, render_calls
from toolrl.eval.types import FREE_FUNCTIONS

# Counts of the golden run on eval_100 (pinned: they follow from the segmentation rule and the data).
# 278 golden turns -> 180 scored turns (free-only turns merge into the next), 90 of them with a complete
# history; 28 samples have every scored turn complete. Hotels: 21 complete turns, 39 required calls, 11 samples.
COMPLETE = dict(turns=90, calls=126, samples=28)
HOTELS = dict(turns=21, calls=39, samples=11)
# Target of the corruptions: Hotels-129, scored turn 0 (complete history). Its golden turns are
# [Search_Hotel_Destination] (free only, merges forward) and [Search_Hotels, Get_Hotel_Reviews_Tips__Sort_Option,
# Get_Hotel_Reviews_Tips]: 3 required calls, 1 optional; the sample has no other scored turn.
TARGET = ("Hotels-129", 0)


@pytest.fixture(scope="module")
def samples(data_dir):
    return load_eval_samples("eval_100", data_dir)


@pytest.fixture(scope="module")
def matcher(data_dir, response_cache):
    return make_matcher(data_dir, response_cache.lookup)


@pytest.fixture(scope="module")
def golden_report(samples, matcher) -> EvalReport:
    return evaluate(samples, golden_policy(samples), matcher)


def _counts(report: EvalReport, bucket: str = "complete", domain: str = "overall"):
    m = report.metrics[bucket][domain]
    return m.turns, m.turns_correct, m.calls, m.calls_correct, m.samples, m.samples_success


def _errors(report: EvalReport, bucket: str = "complete") -> dict[str, int]:
    return {k: v for k, v in report.metrics[bucket]["overall"].errors.items() if v}


def test_target_turn_is_what_the_hand_computations_assume(samples):
    sample = next(s for s in samples if s.sample_id == TARGET[0])
    tasks = build_turn_tasks(sample)
    assert len(tasks) == 1 and tasks[0].complete
    assert [c.function for c in tasks[0].required] == [
        "Search_Hotels", "Get_Hotel_Reviews_Tips__Sort_Option", "Get_Hotel_Reviews_Tips"]
    assert [c.function for c in tasks[0].optional] == ["Search_Hotel_Destination"]


def test_golden_policy_scores_100_percent(golden_report):
    for bucket in ("complete", "incomplete", "all"):
        for domain, m in golden_report.metrics[bucket].items():
            assert m.turns_correct == m.turns and m.calls_correct == m.calls, (bucket, domain)
            assert m.samples_success == m.samples, (bucket, domain)
            assert not any(m.errors.values()), (bucket, domain, m.errors)
    t, _, c, _, s, _ = _counts(golden_report)
    assert (t, c, s) == (COMPLETE["turns"], COMPLETE["calls"], COMPLETE["samples"])
    assert _counts(golden_report, domain="Hotels")[0::2] == (HOTELS["turns"], HOTELS["calls"], HOTELS["samples"])
    # The free (location) calls were all made and consumed by the golden trajectory.
    m = golden_report.overall("all")
    assert m.free_calls_matched == m.free_calls > 0


def test_incomplete_history_is_reported_apart(golden_report, samples):
    # Every scored turn is in exactly one of the two buckets; 180 = 90 complete + 90 incomplete.
    complete, incomplete = golden_report.overall("complete"), golden_report.overall("incomplete")
    assert complete.turns + incomplete.turns == golden_report.overall("all").turns == 180
    assert complete.samples + incomplete.samples == len(samples) == 100
    for result in golden_report.results:
        task = next(t for s in samples if s.sample_id == result.sample_id for t in build_turn_tasks(s)
                    if t.turn == result.turn)
        shown = [c for turn in task.history for c in turn.calls] + list(task.optional)
        assert result.complete == all(c.has_response for c in shown)


def test_no_calls_policy_scores_zero(samples, matcher):
    report = evaluate(samples, no_calls_policy, matcher)
    for bucket in ("complete", "incomplete"):
        m = report.overall(bucket)
        assert (m.turns_correct, m.calls_correct, m.samples_success) == (0, 0, 0)
        # Every required golden call is left over: one stopped_early each, nothing else.
        assert _errors(report, bucket) == {"stopped_early": m.calls}
    assert report.overall().free_calls_matched == 0


# Hand computation for one corrupted turn (TARGET, Hotels, complete history), against the golden counts:
#   a turn with a wrong call   -> turns right 90 -> 89, the sample fails: successes 28 -> 27;
#   wrong value / missing or extra parameter / wrong name / dropped call: one of its 3 required calls is
#     no longer matched -> calls right 126 -> 125;
#   an extra call: all 3 required calls still matched -> calls right stay 126, but the turn is wrong;
#   reversed order: calls inside a turn are a set -> nothing changes.
# The incomplete bucket never moves (the target turn is complete).
@pytest.mark.parametrize("corruption, turns_right, calls_right, successes, errors", [
    ("wrong_value", 89, 125, 27, {"wrong_value": 1}),
    ("missing_parameter", 89, 125, 27, {"missing_parameter": 1}),
    ("extra_parameter", 89, 125, 27, {"extra_parameter": 1}),
    ("wrong_name", 89, 125, 27, {"wrong_name": 1}),
    ("extra_call", 89, 126, 27, {"hallucinated_call": 1}),
    ("drop_call", 89, 125, 27, {"stopped_early": 1}),
    ("drop_all", 89, 123, 27, {"stopped_early": 3}),  # all 3 required calls missing: 126 - 3
    ("reverse_order", 90, 126, 28, {}),
])
def test_corruption_lowers_exactly_its_metrics(samples, matcher, golden_report, corruption, turns_right,
                                               calls_right, successes, errors):
    report = evaluate(samples, corrupted_policy(samples, CORRUPTIONS[corruption], [TARGET]), matcher)
    assert _counts(report) == (90, turns_right, 126, calls_right, 28, successes)
    assert _errors(report) == errors
    # Per domain: only Hotels moves, by the same amounts.
    assert _counts(report, domain="Hotels") == (21, 21 - (90 - turns_right), 39, 39 - (126 - calls_right),
                                                11, 11 - (28 - successes))
    for domain in ("Attraction", "Car-Rental", "Cross", "Flights"):
        assert _counts(report, domain=domain) == _counts(golden_report, domain=domain)
    assert _counts(report, "incomplete") == _counts(golden_report, "incomplete")


def test_corrupting_every_turn(samples, matcher):
    # wrong_value on every scored turn: each turn loses exactly its first required call.
    report = evaluate(samples, corrupted_policy(samples, CORRUPTIONS["wrong_value"]), matcher)
    m = report.overall("complete")
    assert (m.turns_correct, m.calls_correct, m.samples_success) == (0, COMPLETE["calls"] - COMPLETE["turns"], 0)
    assert _errors(report) == {"wrong_value": COMPLETE["turns"]}


def test_calls_of_the_wrong_turn(samples, matcher):
    # Hotels-18 has two complete scored turns: [Search_Hotels_By_Coordinates] then
    # [Get_Room_List_With_Availability x2]. Answering each with the other's calls (wrong order across
    # turns): turn 0 gets 2 unmatched calls for 1 golden -> 1 wrong_name + 1 hallucinated_call;
    # turn 1 gets 1 call for 2 golden -> 1 wrong_name + 1 stopped_early. Both turns wrong, 3 calls lost.
    base = golden_policy(samples)

    def swapped(requests):
        texts = base(requests)
        out = []
        for request, text in zip(requests, texts):
            if request.sample_id == "Hotels-18":
                other = dataclasses.replace(request, turn=1 - request.turn)
                text = base([other])[0]
            out.append(text)
        return out

    report = evaluate(samples, swapped, matcher)
    assert _counts(report) == (90, 88, 126, 123, 28, 27)
    assert _errors(report) == {"wrong_name": 2, "hallucinated_call": 1, "stopped_early": 1}


def test_free_calls_are_optional_and_consumed(samples, matcher):
    # Skipping the location lookups and answering the required calls directly is right: free calls
    # are optional. Only the free-call counters move.
    policy = golden_policy(samples)

    def skip_free(requests):
        out = []
        for request in requests:
            task = policy.tasks[(request.sample_id, request.turn)]
            calls = [c.as_dict() for c in task.subturns[-1].calls if c.function not in FREE_FUNCTIONS]
            if not task.required[0].is_free:  # trailing free-only groups: their free calls are required
                out.append(render_calls(calls))
            else:
                out.append(policy([request])[0])
        return out

    report = evaluate(samples, skip_free, matcher)
    for bucket in ("complete", "incomplete"):
        m = report.overall(bucket)
        assert m.turns_correct == m.turns and m.calls_correct == m.calls
    assert report.overall("all").free_calls_matched < report.overall("all").free_calls


def test_unmatched_free_call_is_an_error(samples, matcher):
    # One extra location lookup that no golden call has, in the target turn: the turn is wrong, the
    # lookup is answered with an error message, and the required calls are still right.
    def add_lookup(calls):
        return [{"name": "Search_Hotel_Destination", "arguments": {"query": "Atlantis"}}] + calls

    report = evaluate(samples, corrupted_policy(samples, add_lookup, [TARGET]), matcher)
    assert _counts(report) == (90, 89, 126, 126, 28, 27)
    assert _errors(report) == {"hallucinated_call": 1}


def test_round_history_answers_matched_and_unmatched_calls(samples, matcher):
    # Car-Rental-70's first scored turn merges the free-only turn [Search_Car_Location x2] into
    # [Search_Car_Rentals]: the golden policy uses 2 rounds; round 1 sees the lookups with their golden
    # responses.
    seen = []
    base = golden_policy(samples)

    def spy(requests):
        seen.extend(r for r in requests if r.sample_id == "Car-Rental-70" and r.turn == 0)
        return base(requests)

    report = evaluate(samples, spy, matcher)
    assert [r.round for r in seen] == [0, 1]
    tail = seen[1].messages[-3:]
    assert tail[0]["role"] == "assistant" and [c["name"] for c in tail[0]["tool_calls"]] == ["Search_Car_Location"] * 2
    assert [m["role"] for m in tail[1:]] == ["tool", "tool"]
    assert "Zurich" in tail[1]["content"] and "Geneva" in tail[2]["content"]
    result = next(r for r in report.results if r.sample_id == "Car-Rental-70" and r.turn == 0)
    assert result.rounds == 2 and result.correct and result.optional_matched == 2


def test_error_kinds_are_known(golden_report):
    assert set(golden_report.overall().errors) == set(ERROR_KINDS)


def test_format_errors_count(samples, matcher):
    def broken(requests):
        return ["<tool_call>{not json</tool_call>" if (r.sample_id, r.turn) == TARGET else t
                for r, t in zip(requests, golden_policy(samples)(requests))]

    report = evaluate(samples, broken, matcher)
    # The target turn: 1 unparseable block, and the 3 required calls never made.
    assert _counts(report) == (90, 89, 126, 123, 28, 27)
    assert _errors(report) == {"format_error": 1, "stopped_early": 3}


def test_golden_policy_is_also_perfect_on_bfcl_training(data_dir, matcher):
    samples = load_eval_samples("bfcl_training", data_dir, max_samples=30)
    report = evaluate(samples, golden_policy(samples), matcher)
    m = report.overall("all")
    assert m.turns > 0 and m.turns_correct == m.turns and m.samples_success == m.samples == 30
    # All responses are recorded in the synthesized file: every turn has a complete history.
    assert report.overall("incomplete").turns == 0

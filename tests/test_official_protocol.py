"""The official protocol (toolrl.eval.official): the benchmark's runner and rules, checked case by case.

Every expected number below was worked out by hand from reading the benchmark's code
(THUDM/ComplexFuncBench: runner/base_runner.py, runner/qwen_runner.py, utils/compare_method.py,
print_results.py); the comments trace the steps. Policies are scripted: no model is loaded.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from toolrl.eval import (evaluate, golden_policy, corrupted_policy, load_eval_samples, make_matcher,
                         no_calls_policy, official_golden_policy)
from toolrl.eval.judge import HttpJudge, JudgeSettings, make_judge, parse_verdict
from toolrl.eval import official as official_module, official_policies, official_rules
from toolrl.eval.match import CallMatcher
from toolrl.eval.official import UNEXPECTED_CALL_RESPONSE, run_official
from toolrl.eval.official_rules import OfficialRules, format_error, rule_based, value_check
from toolrl.eval.policies import extra_call, render_calls
from toolrl.eval.score import PredictionFormatError, main as score_main, read_predictions
from toolrl.eval.types import EvalSample, GoldenCall, GoldenTurn
from toolrl.rewards.types import PredictedCall

# ----------------------------------------------------------------------------- hand-made samples

S, N, A = "string", "number", "array"


def tool(name, properties, required=()):
    return {"name": name, "description": "", "parameters": {
        "type": "object", "properties": {k: {"type": t} for k, t in properties.items()}, "required": list(required)}}


TOOLS = (
    tool("Search_Car_Location", {"query": S}, ["query"]),
    tool("Location_to_Lat_Long", {"query": S}, ["query"]),
    tool("Search_Car_Rentals", {"pick_up_latitude": N, "pick_up_longitude": N, "pick_up_date": S, "legs": A},
         ["pick_up_latitude", "pick_up_longitude", "pick_up_date"]),
    tool("Vehicle_Details", {"vehicle_id": S, "search_key": S}, ["vehicle_id", "search_key"]),
    tool("Search_Hotels", {"dest_id": S, "search_type": S, "arrival_date": S, "categories_filter": S, "units": S},
         ["dest_id", "search_type", "arrival_date"]),
    tool("Get_Room_List", {"hotel_id": N, "arrival_date": S}, ["hotel_id", "arrival_date"]),
)
# The exact-match parameters the benchmark lists for these functions (utils/exact_match_values.json, trimmed
# to the parameters used here): note pick_up_latitude is not one, pick_up_longitude is.
EXACT = {"Search_Car_Location": frozenset(), "Location_to_Lat_Long": frozenset(),
         "Search_Car_Rentals": frozenset({"pick_up_longitude", "pick_up_date"}),
         "Vehicle_Details": frozenset({"vehicle_id", "search_key"}),
         "Search_Hotels": frozenset({"dest_id", "search_type", "arrival_date", "categories_filter"}),
         "Get_Room_List": frozenset({"hotel_id", "arrival_date"})}

LOOKUP_A = {"name": "Search_Car_Location", "arguments": {"query": "Berlin Airport"}}
LOOKUP_B = {"name": "Search_Car_Location", "arguments": {"query": "Berlin Hbf"}}
RENTAL = {"name": "Search_Car_Rentals",
          "arguments": {"pick_up_latitude": 52.52, "pick_up_longitude": 13.4, "pick_up_date": "2024-12-01"}}
V1 = {"name": "Vehicle_Details", "arguments": {"vehicle_id": "v1", "search_key": "k"}}
V2 = {"name": "Vehicle_Details", "arguments": {"vehicle_id": "v2", "search_key": "k"}}
LATLONG = {"name": "Location_to_Lat_Long", "arguments": {"query": "Berlin"}}
EXTRA = {"name": "Not_A_Function", "arguments": {"q": 1}}


def sample(sample_id, *turns):
    calls, out = 0, []
    for turn in turns:
        group = []
        for call in turn:
            group.append(GoldenCall(calls, call["name"], dict(call["arguments"]), {"data": [call["name"], calls]}))
            calls += 1
        out.append(GoldenTurn(tuple(group)))
    return EvalSample(sample_id, sample_id.rsplit("-", 1)[0], "query", TOOLS, tuple(out))


# Car: [A, B] (lookups only) -> [rental] -> [V1, V2]: 3 golden turns, 5 calls.
CAR = sample("Car-1", [LOOKUP_A, LOOKUP_B], [RENTAL], [V1, V2])


def scripted(answers):
    """Official-mode policy: answers[(sample_id, k)] = calls of the k-th answer (a final answer when absent)."""
    def policy(requests):
        out = []
        for r in requests:
            answer = answers.get((r.sample_id, r.turn))
            out.append(answer if isinstance(answer, str) else render_calls(answer) if answer else "Done.")
        return out
    return policy


def run(samples, policy, **rules):
    return run_official(samples, policy, OfficialRules(EXACT, **rules))


def counts(result):
    return (result.success, result.outcome, result.success_turns, result.turns, result.correct_calls, result.calls)


# ----------------------------------------------------------------------------- single-call rules


def test_format_check_is_the_benchmarks():
    ok = dict(RENTAL["arguments"])
    assert format_error("Search_Car_Rentals", ok, TOOLS) is None
    assert "should be a number" in format_error("Search_Car_Rentals", {**ok, "pick_up_latitude": "8.56"}, TOOLS)
    assert "should be a string" in format_error("Search_Car_Rentals", {**ok, "pick_up_date": 20241201}, TOOLS)
    assert "should be a array" in format_error("Search_Car_Rentals", {**ok, "legs": "x"}, TOOLS)
    assert format_error("Search_Car_Rentals", {**ok, "pick_up_latitude": True}, TOOLS) is None  # bool is an int
    assert "requires parameters" in format_error("Search_Car_Rentals", {"pick_up_latitude": 1.0}, TOOLS)
    assert "does not have parameters" in format_error("Search_Car_Rentals", {**ok, "color": "red"}, TOOLS)
    assert "not defined in the function list" in format_error("Not_A_Function", {}, TOOLS)


def _golden_hotel_search():
    return GoldenCall(0, "Search_Hotels", {"dest_id": "-2092174", "search_type": "city", "arrival_date": "2024-12-01",
                                           "categories_filter": "class::3,free_cancellation::1", "units": "metric"})


def _call(golden, **changes):
    arguments = {k: v for k, v in {**golden.arguments, **changes}.items() if v is not None}
    return PredictedCall(golden.function, arguments)


def test_exact_values_plain_equality_and_categories_as_a_set():
    golden = _golden_hotel_search()
    turn = CallMatcher(EXACT)  # our turn protocol's matcher, for contrast
    official = OfficialRules(EXACT)
    # categories_filter: the same items in another order (and spacing) is a rule-based match upstream;
    # we compare the string (an exact parameter) and reject it.
    reordered = _call(golden, categories_filter="free_cancellation::1, class::3")
    assert rule_based(reordered, golden) and official.compare(reordered, golden).status == "match"
    assert not turn.matches(reordered, golden)
    assert value_check(_call(golden, categories_filter="class::3"), golden, EXACT) == "value_error"
    # An exact parameter with surrounding whitespace: upstream compares with ==, we strip first.
    spaced = _call(golden, dest_id=" -2092174")
    assert official.compare(spaced, golden).status == "mismatch"
    assert official.compare(spaced, golden).error == "value_error"
    assert turn.matches(spaced, golden)
    # A missing exact parameter is param_missing; a number for a number is equal whatever its spelling.
    assert value_check(_call(golden, arrival_date=None), golden, EXACT) == "param_missing"
    room = GoldenCall(1, "Get_Room_List", {"hotel_id": 191605, "arrival_date": "2024-12-01"})
    assert rule_based(PredictedCall("Get_Room_List", {"hotel_id": 191605.0, "arrival_date": "2024-12-01"}), room)
    assert not rule_based(PredictedCall("Get_Room_List", {"hotel_id": "191605", "arrival_date": "2024-12-01"}), room)
    assert official.compare(PredictedCall("Get_Hotel", golden.arguments), golden).error == "func_error"


def test_non_exact_parameters_need_the_live_api_or_the_judge():
    golden = _golden_hotel_search()
    turn = CallMatcher(EXACT)
    official = OfficialRules(EXACT)
    # Case of a non-exact value: we accept outright; upstream goes on to the live API, then the judge.
    upper = _call(golden, units="Metric")
    assert turn.matches(upper, golden)
    verdict = official.compare(upper, golden)
    assert (verdict.status, verdict.how, verdict.error) == ("undecided", "live_api", "value_error")
    # A missing optional parameter: we reject it; upstream would ask the live API (which often accepts).
    missing = _call(golden, units=None)
    assert not turn.matches(missing, golden)
    assert official.compare(missing, golden).status == "undecided"
    assert official.compare(missing, golden).error == "param_missing"
    # The judge settles what the API would have: a yes is a match; a no leaves the API's answer open.
    assert OfficialRules(EXACT, judge=lambda p, g: True).compare(upper, golden).status == "match"
    assert OfficialRules(EXACT, judge=lambda p, g: False).compare(upper, golden).status == "undecided"


def test_response_based_match_through_the_cache():
    golden = _golden_hotel_search()
    same, other = {"data": ["hotel 1"]}, {"data": ["hotel 2"]}
    table = {"metric": same, "imperial": same, "kelvin": other}

    def lookup(function, arguments):
        return table.get(arguments.get("units").strip())

    rules = OfficialRules(EXACT, lookup)
    assert rules.compare(_call(golden, units="imperial"), golden).how == "response"  # both cached, equal
    differs = rules.compare(_call(golden, units="kelvin"), golden)  # both cached, different: the judge's turn
    assert (differs.status, differs.how) == ("undecided", "judge")
    kelvin = _call(golden, units="kelvin")
    assert OfficialRules(EXACT, lookup, judge=lambda p, g: False).compare(kelvin, golden).status == "mismatch"
    assert OfficialRules(EXACT, lookup, judge=lambda p, g: True).compare(kelvin, golden).status == "match"
    # Same cache key (surrounding whitespace is canonicalised away): the cache cannot tell, so undecided.
    assert rules.compare(_call(golden, units=" metric "), golden).status == "undecided"
    # A cache miss: undecided (live API).
    assert rules.compare(_call(golden, units="furlongs"), golden).how == "live_api"

    class Silent:  # a judge that gives no answer (e.g. its server is down)
        def decide(self, predicted, golden, context):
            return None

    assert OfficialRules(EXACT, lookup, judge=Silent()).compare(_call(golden, units="kelvin"), golden).status \
        == "undecided"


# ----------------------------------------------------------------------------- the runner


def test_golden_trajectory_and_the_messages_the_policy_sees():
    (result,) = run([CAR], official_golden_policy([CAR]))
    # init: [A, B] is lookups only -> advance: golden = A, B, rental. Answer 0 = [A, B]: 2 exact; advance
    # (golden = rental, V1, V2). Answer 1 = [rental]; advance. Answer 2 = [V1, V2]; golden empty.
    # Answer 3: final -> Success., all 3 turns, 5 of 5 calls.
    assert counts(result) == (True, "success", 3, 3, 5, 5)
    assert result.steps == 4 and result.model_turns == 3
    conv = result.conversation
    assert [m["role"] for m in conv] == ["user", "assistant", "observation", "assistant", "observation",
                                         "assistant", "observation", "assistant"]
    assert conv[2]["content"] == [{"data": ["Search_Car_Location", 0]}, {"data": ["Search_Car_Location", 1]}]


def test_extra_call_keeps_every_turn_and_the_benchmarks_error_text():
    def with_extra(calls):
        return calls + [EXTRA]

    (result,) = run([CAR], scripted({("Car-1", 0): with_extra([LOOKUP_A, LOOKUP_B]), ("Car-1", 1): with_extra([RENTAL]),
                                     ("Car-1", 2): with_extra([V1, V2])}))
    # Answer 0: A, B exact; the extra call is paired with the golden rental left over (format error:
    # unknown function). Answer 1: golden = rental, V1, V2 (the next turn already opened): rental exact,
    # the extra call paired with V1 or V2: format error. Answer 2: V1, V2 exact, nothing left to pair the
    # extra call with: it is not compared, and gets the benchmark's text. Final answer: Success.
    assert counts(result) == (True, "success", 3, 3, 5, 5)
    assert result.call_errors == ["format_error", "format_error", "unpaired_call"]
    observations = [m["content"] for m in result.conversation if m["role"] == "observation"]
    assert observations[0][2] == {"error": "Function Not_A_Function is not defined in the function list."}
    assert observations[2][2] == UNEXPECTED_CALL_RESPONSE
    # The turn protocol fails every scored turn of the same behaviour.
    turn = evaluate([CAR], corrupted_policy([CAR], extra_call), CallMatcher(EXACT))
    assert turn.protocol == "turn" and turn.overall("all").turns_correct == 0


def test_stops_at_the_first_answer_without_a_correct_call():
    wrong = {"name": "Search_Car_Rentals", "arguments": {**RENTAL["arguments"], "pick_up_date": "2024-12-02"}}
    (result,) = run([CAR], scripted({("Car-1", 0): [LOOKUP_A, LOOKUP_B], ("Car-1", 1): [wrong],
                                     ("Car-1", 2): [V1, V2]}))
    # Answer 1: golden = rental, V1, V2; the wrong rental is paired with the rental (value_error on an exact
    # parameter); no correct call -> the sample ends. Success turn = first turn holding a call left = 1.
    assert counts(result) == (False, "no_correct_call", 1, 3, 2, 5)
    assert result.steps == 2 and result.call_errors == ["value_error"]


def test_free_lookups_anywhere_in_the_sample():
    car = sample("Car-2", [LOOKUP_A], [RENTAL], [LATLONG], [V1])
    (result,) = run([car], scripted({("Car-2", 0): [LOOKUP_A, LATLONG], ("Car-2", 1): [RENTAL], ("Car-2", 2): [V1]}))
    # Answer 0: golden = A, rental. A exact; Location_to_Lat_Long (golden in turn 2) is no golden call here,
    # but one of the sample's lookups: correct, answered with its golden response, marked called. Advance:
    # golden = rental + [lat/long], which leaves as called. Answers 1, 2 exact. 4 of 4 calls, Success.
    assert counts(result) == (True, "success", 4, 4, 4, 4)
    assert [m["content"] for m in result.conversation if m["role"] == "observation"][0][1] == \
        {"data": ["Location_to_Lat_Long", 2]}
    # Turn protocol: the lookup of the later turn is an extra call in turn 0 -> that turn is wrong.
    policy = lambda requests: [render_calls([LOOKUP_A, LATLONG, RENTAL] if r.turn == 0 else [V1]) for r in requests]
    turn = evaluate([car], policy, CallMatcher(EXACT))
    assert [r.correct for r in turn.results] == [False, True]


def test_hotel_type_search_is_free():
    search = {"name": "Search_Hotels", "arguments": {"dest_id": "123", "search_type": "hotel",
                                                     "arrival_date": "2024-12-01"}}
    rooms = {"name": "Get_Room_List", "arguments": {"hotel_id": 123, "arrival_date": "2024-12-01"}}
    hotel = sample("Hotels-1", [search], [rooms])
    (result,) = run([hotel], scripted({("Hotels-1", 0): [rooms]}))
    # init: [search(hotel)] counts as only free -> golden = search, rooms. Answer 0: rooms exact; advance;
    # golden = [search] is "only free" -> advance. Final: the hotel-type search is dropped -> Success,
    # 2 of 2 turns, 1 of 2 calls.
    assert counts(result) == (True, "success", 2, 2, 1, 2)
    turn = evaluate([hotel], lambda requests: [render_calls([rooms]) for _ in requests], CallMatcher(EXACT))
    assert turn.overall("all").samples_success == 0


def test_end_of_sample_quirks():
    # A trailing Location_to_Lat_Long is not in upstream's end-of-sample list: it stays, stop_early.
    car = sample("Car-3", [RENTAL], [LATLONG])
    (result,) = run([car], scripted({("Car-3", 0): [RENTAL]}))
    assert counts(result) == (False, "stop_early", 1, 2, 1, 2)
    # Two trailing Search_Car_Location: removing while iterating skips the second, which stays.
    car = sample("Car-4", [RENTAL], [LOOKUP_A, LOOKUP_B])
    (result,) = run([car], scripted({("Car-4", 0): [RENTAL]}))
    assert counts(result) == (False, "stop_early", 1, 2, 1, 3)
    car = sample("Car-5", [RENTAL], [LOOKUP_A])
    (result,) = run([car], scripted({("Car-5", 0): [RENTAL]}))
    assert counts(result) == (True, "success", 2, 2, 1, 2)


def test_repeated_turn_after_the_end_costs_only_success():
    (result,) = run([CAR], official_golden_policy([CAR], repeat_last=True))
    # After the last golden turn golden is empty; calling again is func_hallucination: the sample fails,
    # but the success turn (no golden call left -> all turns) and the correct calls stand.
    assert counts(result) == (False, "func_hallucination", 3, 3, 5, 5)


def test_a_repeated_lookup_counts_each_time():
    (result,) = run([CAR], scripted({("Car-1", k): [LOOKUP_A] for k in range(20)}))
    # Answer 0: A exact; advance -> golden = B, rental, V1, V2. Every later [A] meets B first, is one of the
    # sample's lookups: correct again. Upstream never stops it; we stop at 2 x 3 turns + 3 = 9 answers.
    assert result.outcome == "step_limit" and result.steps == 9
    assert (result.correct_calls, result.calls, result.success_turns) == (9, 5, 0)


def test_decode_error_ends_the_sample():
    (result,) = run([CAR], scripted({("Car-1", 0): '<tool_call>{"name": "Search_Car_Location", </tool_call>'}))
    assert counts(result) == (False, "decode_error", 0, 3, 0, 5)


def test_final_answer_after_a_wrong_paired_call_depends_on_the_runner():
    lookup = {"name": "Search_Car_Location", "arguments": {"query": "x"}}
    other = {"name": "Vehicle_Details", "arguments": {"vehicle_id": "zzz", "search_key": "k"}}
    car = sample("Car-6", [RENTAL], [V1, lookup])
    answers = {("Car-6", 0): [RENTAL], ("Car-6", 1): [V1, other]}
    # Answer 1: V1 exact; `other` is paired with the lookup left over: func_error. Final answer: the
    # lookup is dropped, nothing is left -> Success for the Qwen/Llama runners ...
    (result,) = run([car], scripted(answers))
    assert counts(result) == (True, "success", 2, 2, 2, 3) and result.call_errors == ["func_error"]
    # ... but the GPT/Mistral runners fail it for the last step's error (success turn: the lookup's turn).
    (result,) = run([car], scripted(answers), final_answer_keeps_errors=True)
    assert counts(result) == (False, "final_with_errors", 1, 2, 2, 3)


def test_undecided_calls_are_reported_as_such():
    near = {"name": "Search_Car_Rentals", "arguments": {**RENTAL["arguments"], "pick_up_latitude": 52.0}}
    answers = {("Car-1", 0): [LOOKUP_A, LOOKUP_B], ("Car-1", 1): [near], ("Car-1", 2): [V1, V2]}
    # pick_up_latitude is not an exact parameter: only the live API or the judge could decide the call.
    (result,) = run([CAR], scripted(answers))
    assert counts(result) == (False, "no_correct_call", 1, 3, 2, 5)
    assert result.undecided_calls == 1 and result.call_errors == ["undecided"]
    report = evaluate([CAR], scripted(answers), CallMatcher(EXACT), protocol="official")
    m = report.overall()
    assert (m.samples_success, m.undecided_samples, m.undecided_calls, m.undecided_turns) == (0, 1, 1, 2)
    assert m.errors.get("value_error", 0) == 0  # never counted as wrong
    (judged,) = run([CAR], scripted(answers), judge=lambda p, g: True)
    assert counts(judged) == (True, "success", 3, 3, 5, 5) and judged.undecided_calls == 0


# ----------------------------------------------------------------------------- eval_100, both protocols


@pytest.fixture(scope="module")
def samples(data_dir):
    return load_eval_samples("eval_100", data_dir)


@pytest.fixture(scope="module")
def matcher(data_dir, response_cache):
    return make_matcher(data_dir, response_cache.lookup)


def _rates(report, bucket="all"):
    m = report.overall(bucket)
    return m.success_rate, m.call_accuracy, m.turn_accuracy


def test_golden_scores_100_percent_in_both_protocols(samples, matcher):
    official = evaluate(samples, official_golden_policy(samples), matcher, protocol="official")
    assert official.protocol == "official" and _rates(official) == (1.0, 1.0, 1.0)
    m = official.overall()
    assert (m.samples, m.calls, m.turns, m.undecided_calls) == (100, 465, 278, 0)
    assert set(k for k, v in m.errors.items() if v) == {"outcome:success"}
    turn = evaluate(samples, golden_policy(samples), matcher)
    assert turn.protocol == "turn" and _rates(turn) == (1.0, 1.0, 1.0)


def test_one_extra_call_per_turn(samples, matcher):
    official = evaluate(samples, official_golden_policy(samples, extra_call), matcher, protocol="official")
    assert _rates(official) == (1.0, 1.0, 1.0)
    turn = evaluate(samples, corrupted_policy(samples, extra_call), matcher)
    m = turn.overall("all")
    assert (m.turns_correct, m.samples_success, m.calls_correct) == (0, 0, m.calls)


def test_no_calls(samples, matcher):
    official = evaluate(samples, no_calls_policy, matcher, protocol="official")
    m = official.overall()
    assert (m.samples_success, m.calls_correct) == (0, 0)
    # The final answer drops the Search_* lookups left: a sample whose first turn is one such lookup gets
    # turn 0 credited (Hotels-129: [Search_Hotel_Destination] then the search); two lookups in the first
    # turn keep the second (removal while iterating), so Car-Rental-70 gets none.
    by_id = {r.sample_id: r for r in official.results}
    assert by_id["Hotels-129"].success_turns == 1 and by_id["Car-Rental-70"].success_turns == 0
    assert m.turns_correct == 43 and m.turns == 278
    assert evaluate(samples, no_calls_policy, matcher).overall("all").turns_correct == 0


def test_skipping_the_hotel_type_search_on_eval_100(samples, matcher):
    def skip(calls):
        return [c for c in calls if not (c["name"] == "Search_Hotels" and c["arguments"].get("search_type") == "hotel")]

    ids = {"Hotels-22", "Hotels-24", "Hotels-26"}
    chosen = [s for s in samples if s.sample_id in ids]
    official = evaluate(chosen, official_golden_policy(chosen, skip), matcher, protocol="official")
    # Hotels-26 by hand: init golden = destination lookup, search(hotel), reviews. Answer 0: lookup; the
    # rest is "only free" (the hotel search) -> advance. Answer 1: reviews. Final: the search is dropped.
    assert [(r.sample_id, r.success, r.success_turns, r.correct_calls, r.calls) for r in official.results
            if r.sample_id == "Hotels-26"] == [("Hotels-26", True, 2, 2, 3)]
    assert official.overall().samples_success == 3


def test_corrupted_values_give_undecided_calls(samples, matcher):
    from toolrl.eval.policies import wrong_value

    report = evaluate(samples, official_golden_policy(samples, wrong_value), matcher, protocol="official")
    m = report.overall()
    assert m.undecided_calls > 0 and m.undecided_samples > 0
    assert m.samples_success == 0  # an undecided sample is never a success
    assert m.undecided_calls + m.calls_correct <= m.calls


# ----------------------------------------------------------------------------- report, config, scoring


def test_reports_name_their_protocol(samples, matcher):
    few = samples[:3]
    official = evaluate(few, official_golden_policy(few), matcher, protocol="official")
    assert "protocol: official" in official.table().title
    assert official.to_json()["protocol"] == "official" and len(official.to_json()["samples"]) == 3
    turn = evaluate(few, golden_policy(few), matcher)
    assert "protocol: turn" in turn.table().title and turn.to_json()["protocol"] == "turn"
    with pytest.raises(ValueError, match="protocol"):
        evaluate(few, golden_policy(few), matcher, protocol="bench")


def test_config_protocol_official(tmp_path, samples, cache_path):
    from toolrl.eval import run_evaluation
    from toolrl.rl.config import ConfigError, base_config, validate

    config = base_config()
    assert config.eval.game == "turn" and config.eval.protocol == ""  # eval.protocol: the deprecated name
    config.eval.protocol = "official"  # the old field and the old name still work (one release)
    config.eval.max_samples = 4
    config.eval.cache_path = str(cache_path)
    with pytest.warns(FutureWarning, match="eval.protocol is deprecated"):
        validate(config)
    assert (config.eval.game, config.eval.protocol) == ("benchmark", "")
    report = run_evaluation(config, official_golden_policy(samples[:4]), tmp_path)
    # Reports keep calling the benchmark game "official", the name earlier result files carry.
    assert report.protocol == "official" and report.settings["protocol"] == "official"
    assert (report.overall().samples, report.overall().samples_success) == (4, 4)
    written = json.loads((tmp_path / "eval_results.json").read_text())
    assert written["protocol"] == "official" and written["game"] == "benchmark"
    config.eval.game = "bench"
    with pytest.raises(ConfigError, match="eval.game='bench' is not an evaluation game"):
        validate(config)


def _golden_predictions(samples):
    from toolrl.eval.protocol import build_turn_tasks

    return [{"sample_id": t.sample_id, "turn": t.turn, "round": r, "calls": [c.as_dict() for c in sub.calls]}
            for s in samples for t in build_turn_tasks(s) for r, sub in enumerate(t.subturns)]


def test_score_official_from_our_format_and_the_benchmarks(tmp_path, samples, cache_path, capsys):
    ours = tmp_path / "pred.jsonl"
    ours.write_text("\n".join(json.dumps(r) for r in _golden_predictions(samples[:10])))
    exported, out = tmp_path / "bench.jsonl", tmp_path / "out"
    assert score_main(["--predictions", str(ours), "--protocol", "official", "--max-samples", "10",
                       "--cache", str(cache_path), "--export-benchmark", str(exported), "--out", str(out)]) == 0
    result = json.loads((out / "eval_results.json").read_text())
    assert result["protocol"] == "official" and result["settings"]["predictions_format"] == "toolrl"
    assert result["metrics"]["all"]["overall"]["success_rate"] == 1.0
    records = [json.loads(line) for line in exported.read_text().splitlines()]
    assert len(records) == 10 and records[0]["message"] == "Success."
    assert records[0]["count_dict"]["success_turn_num"] == records[0]["count_dict"]["total_turn_num"]
    # The benchmark's own format, scored back: the same numbers, and its count_dict agrees with ours.
    out2 = tmp_path / "out2"
    assert score_main(["--predictions", str(exported), "--protocol", "official", "--max-samples", "10",
                       "--cache", str(cache_path), "--out", str(out2)]) == 0
    again = json.loads((out2 / "eval_results.json").read_text())
    assert again["settings"]["predictions_format"] == "benchmark"
    assert again["settings"]["benchmark_agreement"]["agree"] == 10
    assert again["metrics"]["all"]["overall"]["call_accuracy"] == 1.0
    assert "agree with ours on 10 of 10 samples" in capsys.readouterr().out
    with pytest.raises(PredictionFormatError, match="--protocol official"):
        read_predictions(exported)


def test_score_a_hand_written_benchmark_record(tmp_path, samples, cache_path, capsys):
    """A benchmark result line for Hotels-129 with the benchmark's own function names (parentheses),
    a wrong review call at the second answer, and the count_dict the benchmark would have written."""
    sample = next(s for s in samples if s.sample_id == "Hotels-129")
    lookup, (search, sort_option, reviews) = sample.turns[0].calls, sample.turns[1].calls
    names = {"Get_Hotel_Reviews_Tips__Sort_Option": "Get_Hotel_Reviews(Tips)_Sort_Option",
             "Get_Hotel_Reviews_Tips": "Get_Hotel_Reviews(Tips)"}
    as_benchmark = lambda c: {"name": names.get(c.function, c.function), "arguments": c.arguments}
    wrong = dict(as_benchmark(reviews), arguments={**reviews.arguments, "hotel_id": 1})
    record = {"id": "Hotels-129", "gen_convs": [
        {"role": "user", "content": sample.query},
        {"role": "assistant", "function_call": [as_benchmark(c) for c in lookup]},
        {"role": "observation", "content": [c.response for c in lookup]},
        {"role": "assistant", "function_call": [as_benchmark(search), as_benchmark(sort_option), wrong]},
        {"role": "observation", "content": ["...", "...", UNEXPECTED_CALL_RESPONSE]},
        {"role": "assistant", "content": "Here are the reviews."}],
        # Answer 0: the lookup (1 correct). Answer 1: search and sort option correct, the review call
        # paired with the golden review call: hotel_id is exact -> value_error. Final answer: the review
        # call is left -> stop_early, success turn 1 (its turn); 3 of 4 calls.
        "message": {"error_type": "stop_early", "content": "Stop early."},
        "count_dict": {"success_turn_num": 1, "total_turn_num": 2, "correct_call_num": 3, "total_call_num": 4,
                       "real_turn_num": 2}, "resp_eval": None}
    assert record["gen_convs"][3]["function_call"][1]["name"] == "Get_Hotel_Reviews(Tips)_Sort_Option"
    path = tmp_path / "bench.jsonl"
    path.write_text(json.dumps(record) + "\n")
    out = tmp_path / "out"
    assert score_main(["--predictions", str(path), "--protocol", "official", "--cache", str(cache_path),
                       "--allow-partial", "--out", str(out)]) == 0
    result = json.loads((out / "eval_results.json").read_text())
    (mine,) = [r for r in result["samples"] if r["sample_id"] == "Hotels-129"]
    assert (mine["outcome"], mine["success_turns"], mine["correct_calls"], mine["calls"]) == ("stop_early", 1, 3, 4)
    assert result["settings"]["benchmark_agreement"] == {"records": 1, "agree": 1, "differ": {}, "n_differ": 0}
    # The other 99 samples have no record: each is a final answer at once.
    assert result["metrics"]["all"]["overall"]["samples"] == 100


# ----------------------------------------------------------------------------- the judge client


class _Handler(BaseHTTPRequestHandler):
    replies: list = []
    bodies: list = []

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).bodies.append(body)
        content = type(self).replies.pop(0)
        data = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_http_judge_against_a_local_server():
    server = HTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        _Handler.replies = ['```json\n{"is_equal": true, "reason": "same city"}\n```', "no idea"]
        judge = make_judge(JudgeSettings(True, f"http://127.0.0.1:{server.server_port}/v1", "judge-model"))
        assert isinstance(judge, HttpJudge) and judge.url.endswith("/v1/chat/completions")
        golden = GoldenCall(0, "Search_Car_Location", {"query": "New York"})
        context = {"functions": TOOLS[:1], "history": [{"role": "user", "content": "q"}]}
        assert judge.decide(PredictedCall("Search_Car_Location", {"query": "NY"}), golden, context) is True
        body = _Handler.bodies[-1]
        assert body["model"] == "judge-model" and '"NY"' in body["messages"][1]["content"]
        assert judge.decide(PredictedCall("Search_Car_Location", {"query": "NY"}), golden, context) is True  # memo
        assert judge.stats["asked"] == 1
        # An unreadable verdict is "not equivalent", as upstream reads it.
        assert judge.decide(PredictedCall("Search_Car_Location", {"query": "LA"}), golden, context) is False
        assert judge.stats["unreadable"] == 1
    finally:
        server.shutdown()
        server.server_close()
    # No server: no answer, the call stays undecided.
    down = HttpJudge(f"http://127.0.0.1:{server.server_port}", retries=0, timeout=2)
    assert down.decide(PredictedCall("F", {}), GoldenCall(0, "F", {"a": 1})) is None and down.stats["failed"] == 1
    assert parse_verdict('{"is_equal": "False"}') is False and parse_verdict("{}") is None


def test_the_old_import_paths_still_give_the_same_objects():
    """official.py was split (rules, scripted policies); what others import from it is re-exported,
    and the evaluator's PredictedCall is the rewards' one (one predicted-call type)."""
    import toolrl.eval.match as match
    import toolrl.rewards.types as reward_types

    for name in ("OfficialRules", "Verdict", "RUNNER_RULES", "format_error", "rule_based", "value_check",
                 "error_type", "pair_leftovers", "call_similarity", "only_free", "free_key", "same_call"):
        assert getattr(official_module, name) is getattr(official_rules, name), name
    for name in ("OfficialGoldenPolicy", "official_golden_policy", "FINAL_ANSWER"):
        assert getattr(official_module, name) is getattr(official_policies, name), name
    assert match.PredictedCall is reward_types.PredictedCall
    assert PredictedCall("F", {"a": 1}).as_dict() == {"name": "F", "arguments": {"a": 1}}

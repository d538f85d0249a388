"""Checks of the evaluator's parts: segmentation, call matching, predictions scoring, judge flag, config."""

from __future__ import annotations

import json

import pytest

from toolrl.eval import evaluate, golden_policy, load_eval_samples, make_matcher, run_evaluation
from toolrl.eval.judge import JudgeConfigError, JudgeSettings, make_judge
from toolrl.eval.match import CallMatcher, PredictedCall, bfcl_name, load_exact_match_values
from toolrl.eval.protocol import build_turn_tasks
from toolrl.eval.score import PredictionFormatError, main as score_main, parse_prediction_record
from toolrl.data.turns import segment_steps
from toolrl.eval.types import EvalSample, GoldenCall, GoldenTurn


@pytest.fixture(scope="module")
def samples(data_dir):
    return load_eval_samples("eval_100", data_dir)


# ----------------------------------------------------------------------------- segmentation


def test_segment_steps_cuts_only_at_dependencies_on_the_current_turn():
    # 0, 1 independent; 2 needs 0 and 1; 3, 4 need 2; 5 needs 0 only (already in an earlier turn).
    deps = [(), (), (0, 1), (2,), (2,), (0,)]
    assert segment_steps(deps) == [[0, 1], [2], [3, 4, 5]]
    assert segment_steps([(), (0,), (1,)]) == [[0], [1], [2]]
    assert segment_steps([]) == []


def test_eval_100_turns(samples):
    by_id = {s.sample_id: s for s in samples}
    # Two car-location lookups, the rental search reading both, then three calls reading the search.
    assert [[c.function for c in t.calls] for t in by_id["Car-Rental-70"].turns] == [
        ["Search_Car_Location", "Search_Car_Location"], ["Search_Car_Rentals"],
        ["Vehicle_Supplier_Details", "Vehicle_Supplier_Review", "Get_Packages"]]
    # Both later calls read the destination lookup (hotel id = dest_id): they share a turn.
    assert [[c.function for c in t.calls] for t in by_id["Hotels-26"].turns] == [
        ["Search_Hotel_Destination"], ["Search_Hotels", "Get_Hotel_Reviews_Tips"]]
    assert len(samples) == 100 and sum(len(s.calls) for s in samples) == 465
    # Segmentation keeps the recorded order of the steps.
    for sample in samples:
        indices = [c.index for c in sample.calls]
        assert indices == sorted(indices)


def test_free_only_turns_merge_into_the_next(samples):
    sample = next(s for s in samples if s.sample_id == "Car-Rental-70")
    tasks = build_turn_tasks(sample)
    assert [len(t.subturns) for t in tasks] == [2, 1]
    assert [c.function for c in tasks[0].required] == ["Search_Car_Rentals"]
    assert [c.function for c in tasks[0].optional] == ["Search_Car_Location"] * 2
    assert tasks[0].history == () and len(tasks[1].history) == 2


def test_trailing_free_only_group_is_required():
    call = GoldenCall(0, "Search_Flight_Location", {"query": "Oslo"}, {"data": [1]})
    tasks = build_turn_tasks(EvalSample("X-1", "X", "q", (), (GoldenTurn((call,)),)))
    assert len(tasks) == 1 and tasks[0].required == (call,) and tasks[0].optional == ()


def test_benchmark_jsonl_turns_are_given(tmp_path, data_dir, response_cache):
    record = {
        "id": "Flights-7",
        "functions": [{"name": "Search_Flight_Location"}, {"name": "Search_Flights"}],
        "conversations": [
            {"role": "user", "content": "Fly me from Oslo to Rome."},
            {"role": "assistant", "function_call": [
                {"name": "Search_Flight_Location", "arguments": {"query": "Oslo"}},
                {"name": "Search_Flight_Location", "arguments": {"query": "Rome"}}]},
            {"role": "observation", "content": [{"data": [{"id": "OSL.CITY"}]}, {"data": [{"id": "ROM.CITY"}]}]},
            {"role": "assistant", "function_call": [
                {"name": "Search_Flights", "arguments": {"fromId": "OSL.CITY", "toId": "ROM.CITY", "departDate": "2024-12-01"}}]},
            {"role": "observation", "content": [{"data": {"flightOffers": []}}]},
            {"role": "assistant", "content": "Here are your flights."},
        ],
    }
    path = tmp_path / "bench.jsonl"
    path.write_text(json.dumps(record) + "\n")
    (sample,) = load_eval_samples(str(path), data_dir)
    assert sample.domain == "Flights" and [len(t.calls) for t in sample.turns] == [2, 1]
    report = evaluate([sample], golden_policy([sample]), make_matcher(data_dir, response_cache.lookup))
    assert report.overall().turns == report.overall().turns_correct == 1


# ----------------------------------------------------------------------------- call matching


def test_exact_match_names_follow_booking_api(data_dir, tool_schemas):
    assert bfcl_name("Get_Hotel_Reviews(Tips)_Sort_Option") == "Get_Hotel_Reviews_Tips__Sort_Option"
    assert bfcl_name("Get_Hotel_Reviews(Tips)") == "Get_Hotel_Reviews_Tips"
    exact = load_exact_match_values(data_dir)
    assert "Get_Hotel_Reviews_Tips__Sort_Option" in exact and "Get_Hotel_Reviews_Tips" in exact
    # Every function of the six free ones and the schemas is named the booking_api.json way.
    from toolrl.eval.types import FREE_FUNCTIONS
    assert FREE_FUNCTIONS <= set(tool_schemas)


def test_exact_parameters_vs_normalised_ones(data_dir):
    matcher = make_matcher(data_dir)
    golden = GoldenCall(0, "Get_Room_List_With_Availability",
                        {"hotel_id": 191605, "arrival_date": "2024-12-05", "departure_date": "2024-12-10",
                         "units": "metric"})

    def check(**changes):
        return matcher.matches(PredictedCall(golden.function, {**golden.arguments, **changes}), golden)

    assert check()
    assert check(hotel_id="191605")  # canonical: a numeric string equals the number
    assert check(units=" METRIC ")  # non-exact parameter: case and spaces normalised away
    assert not check(arrival_date="2024/12/05")  # exact parameter: punctuation matters
    assert not check(hotel_id=191606)
    assert not matcher.matches(PredictedCall("Get_Room_List", golden.arguments), golden)
    assert not matcher.matches(PredictedCall(golden.function, {**golden.arguments, "extra": 1}), golden)


def test_response_equivalence(data_dir):
    responses = {("F", json.dumps({"a": "x"})): {"data": 1}, ("F", json.dumps({"a": "y"})): {"data": 1},
                 ("F", json.dumps({"a": "z"})): {"data": 2}}

    def lookup(function, arguments):
        return responses.get((function, json.dumps(arguments)))

    matcher = CallMatcher({}, lookup)
    recorded = GoldenCall(0, "F", {"a": "x"}, {"data": 1})
    lost = GoldenCall(0, "F", {"a": "x"}, "")
    assert matcher.matches(PredictedCall("F", {"a": "y"}), recorded)  # same response as recorded
    assert matcher.matches(PredictedCall("F", {"a": "y"}), lost)  # golden answered from the cache
    assert not matcher.matches(PredictedCall("F", {"a": "z"}), recorded)
    assert not matcher.matches(PredictedCall("F", {"a": "w"}), recorded)  # a miss is never equivalent
    assert not CallMatcher({"F": frozenset({"a"})}, lookup).matches(PredictedCall("F", {"a": "y"}), recorded)


def test_judge_flag(data_dir):
    assert make_judge(JudgeSettings()) is None
    with pytest.raises(JudgeConfigError, match="endpoint is empty"):
        make_judge(JudgeSettings(enabled=True))
    matcher = CallMatcher({}, None, judge=lambda predicted, golden: True)
    assert matcher.matches(PredictedCall("F", {"a": 1}), GoldenCall(0, "F", {"b": 2}))


# ----------------------------------------------------------------------------- predictions file, config


def test_score_predictions_file(tmp_path, samples, cache_path, capsys):
    lines = []
    for task in [t for s in samples[:10] for t in build_turn_tasks(s)]:
        for round_, sub in enumerate(task.subturns):
            lines.append({"sample_id": task.sample_id, "turn": task.turn, "round": round_,
                          "calls": [c.as_dict() for c in sub.calls]})
    predictions = tmp_path / "pred.jsonl"
    predictions.write_text("\n".join(json.dumps(line) for line in lines))
    out = tmp_path / "out"
    assert score_main(["--predictions", str(predictions), "--max-samples", "10", "--cache", str(cache_path),
                       "--out", str(out)]) == 0
    result = json.loads((out / "eval_results.json").read_text())
    overall = result["metrics"]["all"]["overall"]
    assert overall["turn_accuracy"] == 1.0 and overall["samples"] == 10
    assert (out / "eval_by_domain.png").stat().st_size > 0
    requests = tmp_path / "requests.jsonl"
    assert score_main(["--dump-requests", str(requests), "--max-samples", "3"]) == 0
    first = json.loads(requests.read_text().splitlines()[0])
    assert first["messages"][0]["role"] == "user" and first["turn"] == 0


def test_prediction_records_are_validated():
    assert parse_prediction_record({"sample_id": "A-1", "turn": 0, "text": "hi"}, "x")[0] == ("A-1", 0, 0)
    for bad in ({"turn": 0, "text": ""}, {"sample_id": "A-1", "turn": -1, "text": ""},
                {"sample_id": "A-1", "turn": 0}, {"sample_id": "A-1", "turn": 0, "calls": [{"arguments": {}}]}):
        with pytest.raises(PredictionFormatError):
            parse_prediction_record(bad, "line 1")


def test_config_and_run_evaluation(tmp_path, samples, cache_path):
    """Evaluation settings live in the training config (config.eval); the golden policy scores 100 %."""
    from toolrl.rl.config import ConfigError, base_config, validate

    config = base_config()
    validate(config)
    config.eval.max_samples = 5
    config.eval.cache_path = str(cache_path)
    report = run_evaluation(config, golden_policy(samples[:5]), tmp_path)
    assert report.overall("all").samples == report.overall("all").samples_success == 5
    assert report.settings["response_max_chars"] == config.data.response_max_chars  # the training view
    assert (tmp_path / "eval_results.json").is_file() and (tmp_path / "eval_by_domain.png").is_file()
    assert report.table().row_count == len(report.metrics["complete"])
    config.eval.judge.enabled = True
    with pytest.raises(ConfigError, match="eval.judge.endpoint"):
        validate(config)
    with pytest.raises(JudgeConfigError):
        run_evaluation(config, golden_policy(samples[:5]))

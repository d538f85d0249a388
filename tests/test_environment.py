import json

import pytest
from hypothesis import given, settings, strategies as st

from toolrl.env.booking import ERROR_CODES, ViewPolicy

ZURICH = {"name": "Search_Car_Location", "arguments": {"query": "Zurich Airport"}}


def test_hit_in_every_call_shape(booking_env):
    expected = booking_env.execute(ZURICH)
    assert expected["data"][0]["iata_code"] == "ZRH"
    assert booking_env.execute({"name": "Search_Car_Location", "arguments": '{"query": " Zurich Airport "}'}) == expected
    assert booking_env.execute(("Search_Car_Location", {"query": "Zurich Airport"})) == expected
    result = booking_env.execute_detailed(ZURICH)
    assert result.hit and result.success


def test_numeric_strings_hit_numeric_entries(booking_env, all_samples):
    step = next(s for sample in all_samples for s in sample.steps
                if s.has_response and any(isinstance(v, float) for v in s.arguments.values()))
    as_strings = {k: str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v for k, v in step.arguments.items()}
    assert booking_env.execute({"name": step.function, "arguments": as_strings}) == booking_env.execute(
        {"name": step.function, "arguments": step.arguments})


@pytest.mark.parametrize("call, code", [
    ({"name": "Book_A_Spaceship", "arguments": {}}, "unknown_tool"),
    ({"name": "Search_Car_Location", "arguments": {}}, "missing_parameter"),
    ({"name": "Search_Car_Location", "arguments": {"query": "Zurich", "page": 2}}, "unknown_parameter"),
    ({"name": "Search_Car_Location", "arguments": {"query": ["Zurich"]}}, "wrong_type"),
    ({"name": "Search_Car_Rentals", "arguments": {"pick_up_latitude": "north", "pick_up_longitude": 8.5,
                                                   "drop_off_latitude": 1, "drop_off_longitude": 1,
                                                   "pick_up_date": "2024-11-25", "pick_up_time": "11:00",
                                                   "drop_off_date": "2024-11-30", "drop_off_time": "14:00"}}, "wrong_type"),
    ({"name": "Search_Flights_Multi_Stops", "arguments": {"legs": "BOS"}}, "wrong_type"),
    ({"name": "Search_Flights_Multi_Stops", "arguments": {"legs": ["BOS"]}}, "wrong_type"),
    ({"name": "Search_Car_Location", "arguments": '{"query": "Zurich"'}, "malformed_arguments"),
    ({"name": "Search_Car_Location", "arguments": "[1, 2]"}, "malformed_arguments"),
    ({"name": "Search_Car_Location", "arguments": {"query": "Atlantis"}}, "no_results"),
    ({"arguments": {}}, "invalid_call"),
    ({"name": "Search_Car_Location", "arguments": 5}, "invalid_call"),
    (None, "invalid_call"),
])
def test_errors_answer_like_the_api(booking_env, call, code):
    response = booking_env.execute(call)
    assert response["status"] is False and response["error"] == code and response["message"]
    assert code in ERROR_CODES
    assert not booking_env.execute_detailed(call).success


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                           max_leaves=8)


@settings(max_examples=300, deadline=None)
@given(name=st.one_of(st.sampled_from(["Search_Car_Location", "Search_Hotels", "Get_Room_List", "Search_Flights_Multi_Stops"]), st.text(max_size=10), st.integers()),
       arguments=st.one_of(json_values, st.text(max_size=20)))
def test_no_input_makes_it_raise(booking_env, name, arguments):
    response = booking_env.execute({"name": name, "arguments": arguments})
    assert isinstance(response, (dict, list))


def test_view_policy_bounds_the_prompt_but_not_the_cache(booking_env, response_cache):
    big = max((r for _, _, r in response_cache.iter_entries()), key=lambda r: len(json.dumps(r)))
    assert len(json.dumps(big)) > 20_000
    policy = ViewPolicy(max_list_items=3, drop_fields=("photoUrls",), max_chars=2000)
    text = policy.render(big)
    assert len(text) <= 2000
    assert "photoUrls" not in text


def test_view_policy_rules():
    response = {"status": True, "data": [{"id": i, "photo": "p"} for i in range(10)]}
    rendered = json.loads(ViewPolicy(max_list_items=2, drop_fields=("photo",), max_chars=None).render(response))
    assert rendered == {"status": True, "data": [{"id": 0}, {"id": 1}, "... 8 more items"]}
    shrunk = ViewPolicy(max_list_items=10, max_chars=80).render(response)
    assert len(shrunk) <= 80 and json.loads(shrunk)["data"][-1].endswith("more items")
    cut = ViewPolicy(max_list_items=None, max_chars=20).render({"text": "x" * 100})
    assert len(cut) == 20 and cut.endswith("...[truncated]")
    assert ViewPolicy(max_list_items=None, max_chars=None).render(response) == json.dumps(response, separators=(",", ":"))

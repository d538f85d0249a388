"""The environment never raises on a call, whatever the model wrote; a damaged cache is never
mistaken for the model's fault."""

from __future__ import annotations

import json
import math
import sqlite3

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from toolrl.env.booking import ERROR_CODES, BookingEnvironment
from toolrl.env.cache import CacheError, ResponseCache
from toolrl.env.limits import MAX_DEPTH, MAX_NUMBER_DIGITS, check_arguments

NUMBER_TOOL = ("Get_Filter", "room_qty")  # a tool with an integer parameter


def nested(depth: int, leaf="a"):
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def number_call(booking_env, value):
    name, parameter = NUMBER_TOOL
    schema = booking_env.schemas[name]
    assert schema.parameters[parameter].type in ("number", "integer")
    arguments = {p: 1 for p in schema.required}
    arguments[parameter] = value
    return {"name": name, "arguments": arguments}


@pytest.mark.parametrize("arguments", [
    {"query": nested(500)},
    {"query": "Zurich", "page": nested(500)},
    {"query": nested(5000)},
    '{"query": ' + "[" * 500 + '"a"' + "]" * 500 + "}",
    '{"query": ' + "[" * 100_000 + "]" * 100_000 + "}",
    {"a": nested(300, {"b": 1})},
])
def test_deep_arguments_answer_too_deep(booking_env, arguments):
    result = booking_env.execute_detailed({"name": "Search_Car_Location", "arguments": arguments})
    assert result.error == "too_deep", result.response
    assert result.response["status"] is False and str(MAX_DEPTH) in result.response["message"]


def test_huge_numeric_string_answers_too_large(booking_env):
    result = booking_env.execute_detailed(number_call(booking_env, "9" * 4301))
    assert result.error == "too_large", result.response
    assert "4301 digits" in result.response["message"]
    assert booking_env.execute_detailed(number_call(booking_env, 10 ** 5000)).error == "too_large"
    assert booking_env.execute_detailed(number_call(booking_env, "1" * (MAX_NUMBER_DIGITS + 1))).error == "too_large"
    big_string = {"name": "Search_Car_Location", "arguments": {"query": "x" * 2_000_000}}
    assert booking_env.execute_detailed(big_string).error == "too_large"
    big_text = {"name": "Search_Car_Location", "arguments": json.dumps({"query": "x" * 2_000_000})}
    assert booking_env.execute_detailed(big_text).error == "too_large"


def test_non_finite_numbers_and_lone_surrogates_are_malformed(booking_env):
    for value in (math.nan, math.inf, -math.inf):
        assert booking_env.execute_detailed(number_call(booking_env, value)).error == "malformed_arguments"
    for text in ('{"query": NaN}', '{"query": Infinity}', '{"query": "\\ud800"}'):
        result = booking_env.execute_detailed({"name": "Search_Car_Location", "arguments": text})
        assert result.error == "malformed_arguments", (text, result.response)
    result = booking_env.execute_detailed({"name": "Search_Car_Location", "arguments": {"query": "\ud800x"}})
    assert result.error == "malformed_arguments"
    assert "surrogate" in result.response["message"]


def test_new_codes_are_documented():
    import toolrl.env.booking as booking

    for code in ("too_deep", "too_large"):
        assert code in ERROR_CODES and f"``{code}``" in booking.__doc__


def test_check_arguments_is_iterative_and_bounded():
    assert check_arguments({"a": [1, {"b": "c"}]}) is None
    problem = check_arguments(nested(200_000))  # no recursion: a Python-level nesting this deep is fine to inspect
    assert problem is not None and problem[0] == "too_deep"


def test_corrupt_cache_payload_is_a_cache_error_naming_file_and_key(tmp_path, cache_path, tool_schemas):
    damaged = tmp_path / "damaged.sqlite"
    damaged.write_bytes(cache_path.read_bytes())
    with sqlite3.connect(damaged) as connection:
        key, = connection.execute("SELECT key FROM entries WHERE function = 'Search_Car_Location' LIMIT 1").fetchone()
        connection.execute("UPDATE entries SET response = ? WHERE key = ?", ('{"status": true, "data": [', key))
    function, arguments = key.split("\x1f")
    with ResponseCache(damaged) as cache:
        env = BookingEnvironment(cache, tool_schemas)
        with pytest.raises(CacheError) as info:
            env.execute({"name": function, "arguments": json.loads(arguments)})
    message = str(info.value)
    assert str(damaged) in message and "Search_Car_Location" in message and "rebuild" in message
    assert "malformed_arguments" not in message


# ----------------------------------------------------------------------------- fuzz

surrogates = st.integers(0xD800, 0xDFFF).map(chr)
weird_text = st.one_of(
    st.text(max_size=12),
    st.lists(st.one_of(st.characters(), surrogates), max_size=8).map("".join),
    st.integers(4000, 6000).map(lambda n: "9" * n),
    st.integers(1, 3).map(lambda n: "x" * (10 ** 6 * n)),
)
weird_numbers = st.one_of(
    st.integers(), st.integers(-10 ** 5000, 10 ** 5000), st.floats(allow_nan=True, allow_infinity=True),
    st.integers(4290, 4400).map(lambda n: 10 ** n),
)
leaves = st.one_of(st.none(), st.booleans(), weird_numbers, weird_text)
values = st.recursive(leaves, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(weird_text, inner, max_size=3),
                      max_leaves=10)
deep = st.tuples(st.integers(0, 3000), values).map(lambda t: nested(t[0], t[1]))
names = st.one_of(st.sampled_from(["Search_Car_Location", "Search_Hotels", "Get_Filter", "Get_Room_List",
                                   "Search_Flights_Multi_Stops"]), weird_text, st.integers())


def as_text(value) -> st.SearchStrategy:
    """The arguments as JSON text (with NaN / Infinity / \\ud800 escapes as Python writes them)."""
    import sys

    old = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        text = json.dumps(value, ensure_ascii=True, default=str)
    except RecursionError:
        text = '{"query": ' + "[" * 3000 + "]" * 3000 + "}"
    finally:
        sys.set_int_max_str_digits(old)
    return st.just(text)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(name=names, arguments=st.one_of(
    st.dictionaries(st.sampled_from(["query", "room_qty", "dest_id", "legs", "x"]), st.one_of(values, deep), max_size=4),
    values, deep, weird_text, st.dictionaries(st.sampled_from(["query", "page"]), st.one_of(values, deep)).flatmap(as_text),
    st.integers(0, 200_000).map(lambda n: "[" * n), st.integers(0, 5000).map(lambda n: '{"query": ' + "[" * n + "]" * n + "}"),
))
def test_fuzz_never_raises(booking_env, name, arguments):
    for call in ({"name": name, "arguments": arguments}, (name, arguments)):
        result = booking_env.execute_detailed(call)
        assert result.error is None or result.error in ERROR_CODES
        assert isinstance(booking_env.execute(call), (dict, list))
        assert booking_env.render(result.response)

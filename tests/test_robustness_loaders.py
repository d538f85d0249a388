"""The streamed response-cache dump loader: every malformed part is an error naming file, function
and record index; nothing is skipped or invented silently."""

from __future__ import annotations

import json

import pytest

from toolrl.data.complexfuncbench import iter_cache_dump
from toolrl.data.validation import DataFormatError

GOOD = {"arguments": {"q": 1}, "response": {"status": True, "data": [1]}}


def load(tmp_path, text: str):
    path = tmp_path / "dump.json"
    path.write_text(text)
    return list(iter_cache_dump(path))


@pytest.mark.parametrize("entry, kind", [(1, "int"), ("x", "str"), (None, "NoneType"), ([GOOD], "list"), (True, "bool")])
def test_non_object_entries_are_errors(tmp_path, entry, kind):
    with pytest.raises(DataFormatError) as info:
        load(tmp_path, json.dumps({"F": [GOOD, entry, GOOD]}))
    message = str(info.value)
    assert "dump.json" in message and "F[1]" in message and "expected an object" in message and kind in message


def test_missing_arguments_is_an_error_not_an_empty_call(tmp_path):
    with pytest.raises(DataFormatError, match=r"dump.json.*record F\[1\].*'arguments'.*missing"):
        load(tmp_path, json.dumps({"F": [GOOD, {"response": {"data": 1}}]}))


@pytest.mark.parametrize("name", ["", "  "])
def test_empty_function_name_is_an_error(tmp_path, name):
    with pytest.raises(DataFormatError, match="empty function name"):
        load(tmp_path, json.dumps({"F": [GOOD], name: [GOOD]}))


@pytest.mark.parametrize("name", ["F\x1fG", "F\nG", "F\x00"])
def test_control_characters_in_function_names_are_errors(tmp_path, name):
    with pytest.raises(DataFormatError, match="control character"):
        load(tmp_path, json.dumps({name: [GOOD]}))


@pytest.mark.parametrize("tail", [" xyz", "{}", ', "G": []}', "]"])
def test_trailing_garbage_is_an_error(tmp_path, tail):
    with pytest.raises(DataFormatError, match=r"dump.json.*after the top-level object"):
        load(tmp_path, json.dumps({"F": [GOOD]}) + tail)
    assert len(load(tmp_path, json.dumps({"F": [GOOD]}) + " \n\t")) == 1  # trailing whitespace is fine


def test_function_value_not_a_list(tmp_path):
    for value in ({"a": 1}, 3, "x", None):
        with pytest.raises(DataFormatError, match=r"record F.*expected a list of entries"):
            load(tmp_path, json.dumps({"F": value}))


def test_top_level_must_be_an_object(tmp_path):
    for text in ("[]", "3", '"x"', ""):
        with pytest.raises(DataFormatError, match="dump.json"):
            load(tmp_path, text)


def test_names_with_dots_and_nested_entries_still_stream(tmp_path):
    dump = {"a.b": [GOOD], "item": [{"arguments": {"item": {"item": [1]}}, "response": {"item": [{"a": 1}]}}],
            "F": [GOOD, GOOD]}
    calls = load(tmp_path, json.dumps(dump))
    assert [(c.function, c.arguments) for c in calls] == [
        ("a.b", {"q": 1}), ("item", {"item": {"item": [1]}}), ("F", {"q": 1}), ("F", {"q": 1})]
    assert calls[1].response == {"item": [{"a": 1}]}

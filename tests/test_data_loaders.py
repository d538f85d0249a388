import json

import pytest

from toolrl.data import paths
from toolrl.data.complexfuncbench import iter_cache_dump, load_benchmark_jsonl
from toolrl.data.schemas import load_tool_schemas
from toolrl.data.traces import load_trace_file
from toolrl.data.validation import DataFormatError
from toolrl.data.workflows import load_workflow_templates


def test_real_trace_files_have_the_documented_sizes(trace_files):
    eval_100 = trace_files[paths.EVAL_100]
    training = trace_files[paths.BFCL_TRAINING]
    assert len(eval_100) == 100 and len(training) == 101
    calls = [step for samples in trace_files.values() for s in samples for step in s.steps]
    assert len(calls) == 907
    assert sum(step.has_response for step in calls) == 614
    assert sum(not step.has_response for s in eval_100 for step in s.steps) == 293
    domains = {s.domain for s in eval_100}
    assert domains == {"Car-Rental", "Hotels", "Flights", "Attraction", "Cross"}
    assert len({s.sample_id for s in training}) == 101  # repeated workflow ids are suffixed apart


def test_tool_schemas_and_templates(tool_schemas):
    assert len(tool_schemas) == 40
    legs = tool_schemas["Search_Flights_Multi_Stops"].parameters["legs"]
    assert legs.type == "array" and legs.items["type"] == "dict"
    templates = load_workflow_templates()
    assert len(templates) == 107
    assert sum(len(t.steps) for t in templates) == 559
    assert sum(len(s.dependency_args) for t in templates for s in t.steps) == 544
    assert sum(len(t.examples) for t in templates) == 490


def test_data_dir_env_override(monkeypatch, tmp_path):
    monkeypatch.setenv(paths.DATA_DIR_ENV, str(tmp_path))
    assert paths.default_data_dir() == tmp_path
    with pytest.raises(FileNotFoundError, match="eval_100.json"):
        paths.data_file(paths.EVAL_100)
    monkeypatch.setenv(paths.DATA_DIR_ENV, str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="TOOLRL_DATA_DIR"):
        paths.default_data_dir()


def test_malformed_json_names_the_file(tmp_path):
    bad = tmp_path / "traces.json"
    bad.write_text('[{"query": "x",')
    with pytest.raises(DataFormatError, match=r"traces.json.*malformed JSON"):
        load_trace_file(bad)


def test_missing_field_names_record_and_field(tmp_path, data_dir):
    samples = json.loads((data_dir / paths.EVAL_100).read_text())[:3]
    del samples[2]["steps"][1]["ground_truth"]["function"]
    path = tmp_path / "eval.json"
    path.write_text(json.dumps(samples))
    with pytest.raises(DataFormatError) as info:
        load_trace_file(path)
    assert info.value.record.startswith("2 (")
    assert info.value.field == "steps[1].ground_truth.function"
    assert "missing" in str(info.value)


def test_wrong_type_and_bad_dependency(tmp_path, data_dir):
    samples = json.loads((data_dir / paths.EVAL_100).read_text())[:1]
    samples[0]["steps"][0]["depends_on"] = [3]
    path = tmp_path / "eval.json"
    path.write_text(json.dumps(samples))
    with pytest.raises(DataFormatError, match="not an earlier step"):
        load_trace_file(path)
    samples[0]["steps"][0]["depends_on"] = []
    samples[0]["query"] = 7
    path.write_text(json.dumps(samples))
    with pytest.raises(DataFormatError, match=r"field 'query': expected str, got int"):
        load_trace_file(path)


def test_schema_errors(tmp_path):
    path = tmp_path / "api.json"
    path.write_text('{"name": "A", "parameters": {"properties": {"x": {"type": "strin"}}}}\n')
    with pytest.raises(DataFormatError, match="unknown type 'strin'"):
        load_tool_schemas(path)
    path.write_text('{"name": "A", "parameters": {"properties": {}, "required": ["x"]}}\n')
    with pytest.raises(DataFormatError, match="required parameter 'x'"):
        load_tool_schemas(path)
    path.write_text('{"name": "A"\n')
    with pytest.raises(DataFormatError, match="line 1"):
        load_tool_schemas(path)


def write_benchmark_fixture(samples, path):
    """Write trace samples in the original ComplexFuncBench conversation format (one call per turn,
    except independent leading calls, which share a turn as the benchmark does)."""
    with path.open("w") as handle:
        for sample in samples:
            turns, current = [], []
            for step in sample.steps:
                if step.depends_on and current:
                    turns.append(current)
                    current = []
                current.append(step)
            turns.append(current)
            conversation = [{"role": "user", "content": sample.query}]
            for turn in turns:
                conversation.append({"role": "assistant", "function_call": [
                    {"name": s.function, "arguments": s.arguments} for s in turn]})
                conversation.append({"role": "observation", "content": [s.response for s in turn]})
            conversation.append({"role": "assistant", "content": "Here is what I found."})
            handle.write(json.dumps({"id": sample.sample_id, "functions": [], "conversations": conversation}) + "\n")


def test_benchmark_jsonl_fixture_round_trip(tmp_path, trace_files):
    samples = trace_files[paths.EVAL_100][:20]
    path = tmp_path / "ComplexFuncBench.jsonl"
    write_benchmark_fixture(samples, path)
    loaded = list(load_benchmark_jsonl(path))
    assert [s.sample_id for s in loaded] == [s.sample_id for s in samples]
    for original, parsed in zip(samples, loaded):
        assert parsed.domain == original.domain
        assert parsed.query == original.query
        assert [(c.function, c.arguments, c.response) for c in parsed.calls] == [
            (s.function, s.arguments, s.response) for s in original.steps]
        assert parsed.final_answer == "Here is what I found."


def test_benchmark_jsonl_misaligned_observation(tmp_path):
    record = {"id": "Hotels-3", "conversations": [
        {"role": "user", "content": "q"},
        {"role": "assistant", "function_call": [{"name": "A", "arguments": "{}"}, {"name": "B", "arguments": {}}]},
        {"role": "observation", "content": [{"data": 1}]}]}
    path = tmp_path / "b.jsonl"
    path.write_text(json.dumps(record) + "\n")
    with pytest.raises(DataFormatError, match=r"line 1 \(Hotels-3\).*1 observations for 2 calls"):
        list(load_benchmark_jsonl(path))


def test_cache_dump_streams_entries(tmp_path):
    dump = {"Search_Hotels": [{"arguments": {"dest_id": "-2092174"}, "response": {"status": True, "data": [1]}},
                              {"arguments": '{"dest_id": "1"}', "response": ""}],
            "Get_Filter": []}
    path = tmp_path / "dump.json"
    path.write_text(json.dumps(dump))
    entries = list(iter_cache_dump(path))
    assert [(e.function, e.arguments) for e in entries] == [
        ("Search_Hotels", {"dest_id": "-2092174"}), ("Search_Hotels", {"dest_id": "1"})]
    path.write_text(json.dumps({"A": [{"arguments": {}}]}))
    with pytest.raises(DataFormatError, match=r"A\[0\].*response"):
        list(iter_cache_dump(path))
    path.write_text('{"A": [{"arguments": {}, "response": {"x"')
    with pytest.raises(DataFormatError, match="malformed JSON"):
        list(iter_cache_dump(path))

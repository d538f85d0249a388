import json
import multiprocessing
import shutil
import tracemalloc

import pytest

from toolrl.data.complexfuncbench import iter_cache_dump
from toolrl.env import cache as cache_module
from toolrl.env.cache import CacheError, ResponseCache, Source, build_cache
from toolrl.env.cache_format import is_success_response
from toolrl.env.canonical import cache_key, canonical_value


def test_canonical_form():
    assert canonical_value({"b": " 12 ", "a": ["3.50", 2.0, "007", "x "]}) == {"a": [3.5, 2, "007", "x"], "b": 12}
    assert cache_key("F", {"x": "1", "y": 2.0}) == cache_key("F", {"y": "2", "x": 1})
    assert cache_key("F", {"x": True}) != cache_key("F", {"x": 1})
    assert canonical_value("2024-11-25") == "2024-11-25"
    assert canonical_value("-2092174") == -2092174


def test_success_rule():
    assert is_success_response({"status": True, "data": []})
    assert is_success_response([{"id": 1}])
    assert not is_success_response("")
    assert not is_success_response({})
    assert not is_success_response({"status": False, "message": "x"})
    assert not is_success_response({"error": "boom"})


def test_real_cache_counts(response_cache):
    summary = response_cache.summary
    assert len(response_cache) == 467
    assert len(response_cache.functions()) == 30
    assert summary["recorded_calls"] == 907
    assert summary["skipped_empty"] == 293
    assert summary["conflicting_keys"] == 21


def test_every_recorded_response_replays(all_samples, booking_env, response_cache):
    """Each non-empty recorded call replays to its recorded response; where the benchmark recorded
    several different responses for one key, the cache answers the most frequent and keeps all."""
    exact = conflicting = 0
    for sample in all_samples:
        for step in sample.steps:
            if not step.has_response:
                continue
            variants = response_cache.variants(step.function, step.arguments)
            answer = booking_env.execute({"name": step.function, "arguments": step.arguments})
            assert step.response in variants
            assert answer == variants[0]
            if len(variants) == 1:
                assert answer == step.response
                exact += 1
            else:
                conflicting += 1
    assert exact + conflicting == 614
    assert conflicting > 0


def test_conflict_rule_and_error_responses_not_cached(tmp_path):
    dump = {"F": [
        {"arguments": {"q": "a"}, "response": {"status": True, "data": [1]}},
        {"arguments": {"q": "a"}, "response": {"status": True, "data": [2]}},
        {"arguments": {"q": " a"}, "response": {"data": [2], "status": True}},  # same as 2nd, other key order
        {"arguments": {"q": "b"}, "response": {"status": False, "message": "bad"}},
        {"arguments": {"q": "c"}, "response": {"error": "quota"}},
        {"arguments": {"q": "d"}, "response": ""},
    ]}
    source = tmp_path / "dump.json"
    source.write_text(json.dumps(dump))
    summary = build_cache(tmp_path / "c.sqlite", [Source("dump", source)])
    assert (summary.entries, summary.conflicting_keys, summary.skipped_error, summary.skipped_empty) == (1, 1, 2, 1)
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        assert cache.lookup("F", {"q": "a"}) == {"status": True, "data": [2]}  # recorded twice
        assert cache.variants("F", {"q": "a"})[1] == {"status": True, "data": [1]}
        assert cache.lookup("F", {"q": "b"}) is None


def test_source_kinds_are_detected(tmp_path, data_dir):
    assert Source.parse(str(data_dir / "eval_100.json")).kind == "traces"
    assert Source.parse("benchmark:/x.jsonl") == Source("benchmark", cache_module.Path("/x.jsonl"))
    (tmp_path / "d.json").write_text("{}")
    assert Source.parse(str(tmp_path / "d.json")).kind == "dump"


def test_cli_build_prints_summary(tmp_path, capsys, data_dir):
    out = tmp_path / "cli.sqlite"
    assert cache_module.main(["build", "--out", str(out), "--data-dir", str(data_dir)]) == 0
    text = capsys.readouterr().out
    assert "entries                       467" in text and "conflicting" in text


def test_missing_truncated_and_corrupted_files(tmp_path, cache_path):
    with pytest.raises(CacheError, match="does not exist"):
        ResponseCache(tmp_path / "none.sqlite")
    truncated = tmp_path / "truncated.sqlite"
    truncated.write_bytes(cache_path.read_bytes()[: 300_000])
    with pytest.raises(CacheError, match="truncated"):
        ResponseCache(truncated)
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(CacheError, match="not a readable toolrl cache"):
        ResponseCache(garbage)
    corrupted = tmp_path / "corrupted.sqlite"
    data = bytearray(cache_path.read_bytes())
    data[4096:len(data)] = b"\xff" * (len(data) - 4096)  # keep the header page, wipe the rest
    corrupted.write_bytes(bytes(data))
    with pytest.raises(CacheError):
        with ResponseCache(corrupted) as cache:
            cache.lookup("Search_Car_Location", {"query": "Zurich Airport"})


def test_interrupted_build_keeps_the_old_cache(tmp_path, cache_path, monkeypatch):
    target = tmp_path / "cache.sqlite"
    shutil.copy(cache_path, target)
    before = target.read_bytes()

    def exploding_calls(self):
        yield from list(iter_cache_dump(dump))[:1]
        raise KeyboardInterrupt("killed midway")

    dump = tmp_path / "dump.json"
    dump.write_text(json.dumps({"F": [{"arguments": {}, "response": {"data": 1}}]}))
    monkeypatch.setattr(Source, "calls", exploding_calls)
    with pytest.raises(KeyboardInterrupt):
        build_cache(target, [Source("dump", dump)])
    assert target.read_bytes() == before
    assert not list(tmp_path.glob("*.building"))
    with ResponseCache(target) as cache:
        assert len(cache) == 467


def _lookup_many(path):
    with ResponseCache(path) as cache:
        return sum(cache.lookup("Search_Car_Location", {"query": "Zurich Airport"}) is not None for _ in range(200))


def test_concurrent_readers(cache_path):
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        assert pool.map(_lookup_many, [cache_path] * 4) == [200] * 4


def test_dump_is_streamed_with_bounded_memory(tmp_path):
    path = tmp_path / "big.json"
    with path.open("w") as handle:
        handle.write('{"F": [')
        for i in range(20_000):
            handle.write(("," if i else "") + json.dumps({"arguments": {"i": i}, "response": {"data": "x" * 500}}))
        handle.write("]}")
    assert path.stat().st_size > 10_000_000
    tracemalloc.start()
    count = sum(1 for _ in iter_cache_dump(path))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert count == 20_000
    assert peak < 2_000_000  # far below the file size: entries are not accumulated


def test_default_cache_follows_the_data(tmp_path, monkeypatch, data_dir):
    from toolrl.data import paths
    from toolrl.env.cache import default_cache_path, open_default_cache

    monkeypatch.setenv(paths.HOME_ENV, str(tmp_path / "home"))
    with open_default_cache(data_dir) as cache:
        assert len(cache) == 467
    other = tmp_path / "data"
    other.mkdir()
    for name in paths.TRACE_FILES:
        (other / name).write_text((data_dir / name).read_text())
    assert default_cache_path(other) != default_cache_path(data_dir)
    assert default_cache_path(data_dir) == default_cache_path(data_dir)

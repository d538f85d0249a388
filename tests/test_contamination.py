"""Decontamination: the cache's --exclude, the overlap report, and the training-sample filter."""

import json

import pytest

from toolrl.data import paths
from toolrl.data.contamination import contamination_report, drop_overlapping, main, sample_keys
from toolrl.data.golden import load_samples
from toolrl.data.traces import load_trace_file
from toolrl.env.cache import ResponseCache, Source, build_cache
from toolrl.env.canonical import cache_key
from toolrl.eval.protocol import build_turn_tasks


@pytest.fixture(scope="module")
def eval_100():
    return load_samples("eval_100")


@pytest.fixture(scope="module")
def bfcl():
    return load_samples("bfcl_training")


def test_cache_exclude_leaves_out_every_key_of_the_excluded_source(tmp_path):
    bfcl_file, eval_file = paths.data_file(paths.BFCL_TRAINING), paths.data_file(paths.EVAL_100)
    eval_keys = {cache_key(s.function, s.arguments) for t in load_trace_file(eval_file) for s in t.steps}
    bfcl_calls = [cache_key(s.function, s.arguments) for t in load_trace_file(bfcl_file) for s in t.steps]
    out = tmp_path / "clean.sqlite"
    summary = build_cache(out, [Source("traces", bfcl_file)], exclude=[Source("traces", eval_file)])
    assert summary.excluded_keys == len(eval_keys)
    assert summary.skipped_excluded == sum(k in eval_keys for k in bfcl_calls) > 0
    with ResponseCache(out) as cache:
        for key in eval_keys:
            function, _, arguments = key.partition("\x1f")
            assert cache.lookup(function, json.loads(arguments)) is None
        kept = [k for k in set(bfcl_calls) if k not in eval_keys]
        function, _, arguments = kept[0].partition("\x1f")
        assert cache.lookup(function, json.loads(arguments)) is not None
    assert summary.entries <= len(set(bfcl_calls) - eval_keys)


def test_a_set_against_itself_overlaps_completely(eval_100):
    report = contamination_report(eval_100, eval_100)
    assert report.test_turns == sum(t.complete for s in eval_100 for t in build_turn_tasks(s)) > 0
    assert report.exact_turns == report.any_call_turns == report.test_turns
    assert report.calls == report.test_calls == sum(len(s.calls) for s in eval_100)


def test_one_shared_sample_is_counted(eval_100, bfcl):
    """Training = the decontaminated bfcl samples + one eval_100 sample: the overlap is that sample's
    turns and calls (and whatever other test samples share with it, counted by hand here)."""
    clean, _ = drop_overlapping(bfcl, sample_keys(eval_100))
    leaked = eval_100[0]
    report = contamination_report(clean + [leaked], eval_100)
    leaked_keys = sample_keys([leaked])
    expected_calls = sum(cache_key(c.function, c.arguments) in leaked_keys for s in eval_100 for c in s.calls)
    expected_any = sum(any(cache_key(c.function, c.arguments) in leaked_keys for c in t.golden)
                       for s in eval_100 for t in build_turn_tasks(s) if t.complete)
    assert report.calls == expected_calls >= len(leaked.calls)
    assert report.any_call_turns == expected_any
    assert report.exact_turns >= sum(t.complete for t in build_turn_tasks(leaked))


def test_filter_removes_every_overlapping_training_sample(eval_100, bfcl):
    report = contamination_report(bfcl, eval_100)
    assert report.calls > 0  # the authors' training file shares calls with eval_100 (location lookups, ...)
    clean, dropped = drop_overlapping(bfcl, sample_keys(eval_100))
    assert dropped == len(bfcl) - len(clean) > 0
    after = contamination_report(clean, eval_100)
    assert (after.exact_turns, after.any_call_turns, after.calls) == (0, 0, 0)


def test_training_loader_applies_the_filter_and_reads_several_sources():
    from configs import grpo
    from toolrl.rl.trainer import load_training_samples

    config = grpo.get_config()
    config.data.train_file = "bfcl_training,eval_100"
    config.data.max_steps_per_sample = 0
    config.data.max_samples = 0
    config.data.decontaminate = ""
    both = load_training_samples(config)
    assert len(both) == len(load_samples("bfcl_training")) + len(load_samples("eval_100"))
    config.data.decontaminate = "eval_100"
    clean = load_training_samples(config)
    test_keys = sample_keys(load_samples("eval_100"))
    assert clean and not (sample_keys(clean) & test_keys)


def test_cli_writes_the_report(tmp_path, capsys):
    out = tmp_path / "c.json"
    assert main(["--train", "bfcl_training", "--test", "eval_100", "--decontaminate", "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["calls"] == record["exact_turns"] == 0 and record["test_turns"] > 0
    assert "dropped" in capsys.readouterr().out

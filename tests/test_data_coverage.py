"""Study data report parts: entry-reserved splits, coverage tables, template families, eval summaries."""

import dataclasses

import pytest

from experiments.eval_start import summarize, wilson
from toolrl.data.coverage import family_key, query_overlap
from toolrl.data.golden import load_samples
from toolrl.env.canonical import cache_key
from toolrl.synth.build import split_by_entries
from toolrl.synth.phrasebook_clauses import LOOKUPS
from toolrl.synth.types import Call, Trace


def test_family_key_masks_values_but_keeps_the_sentence():
    a = family_key("Check out the most trending tourist spots in Manchester for my family trip.", ["Manchester"])
    b = family_key("Check out the most trending tourist spots in Oxford for my family trip.", [])
    assert a == b == "check out the most trending tourist spots in # for my family trip"
    c = family_key("Rent a car at Zurich Airport on November 25th, 2024 at 11 am.")
    assert c == "rent a car at # on # at # am"
    assert family_key("Find the cheapest hotels in Paris.") != b


@dataclasses.dataclass
class _Sample:
    sample_id: str
    query: str
    calls: tuple = ()


def test_query_overlap_by_hand():
    train = [_Sample("t1", "Check out the most trending tourist spots in Leeds for my family trip."),
             _Sample("t2", "Please find me a rental car near the station tomorrow.")]
    test = [_Sample("e1", "Check out the most trending tourist spots in Oxford for my family trip.")]
    overlap = query_overlap(train, test)
    assert overlap["training_queries_sharing_a_template_family"] == 1
    assert overlap["longest_shared_word_run"] == 8  # "check out the most trending tourist spots in"
    assert overlap["training_queries_sharing_a_word_5gram"] == 1


def _trace(name: str, args: dict, trace_id: str) -> Trace:
    lookup = Call("Search_Attraction_Location", {"query": "Paris"}, {})
    call = Call(name, args, {})
    return Trace("q", (), ((lookup,), (call,)), ((), (0,)), "wf", "Attraction", trace_id=trace_id)


def test_split_by_entries_keeps_reserved_calls_out_of_training():
    traces = [_trace("Search_Attractions", {"id": f"x{i}", "sortBy": "trending"}, f"t{i}") for i in range(40)]
    splits = split_by_entries(traces, heldout_fraction=0.25, validation_share=0.5, seed=0)
    assert sum(map(len, splits.values())) == 40
    held = splits["validation"] + splits["test"]
    assert len(held) == 10 and splits["validation"] and splits["test"]
    train_keys = {cache_key(c.name, c.arguments) for t in splits["train"] for c in t.calls if c.name not in LOOKUPS}
    assert not any(cache_key(c.name, c.arguments) in train_keys for t in held for c in t.calls
                   if c.name not in LOOKUPS)
    assert splits == split_by_entries(traces, 0.25, 0.5, seed=0)


def test_wilson_by_hand():
    low, high = wilson(0, 90)
    assert low == 0 and high == pytest.approx(3.8415 / (90 + 3.8415), abs=1e-4)
    low, high = wilson(45, 90)
    assert low == pytest.approx(0.3982, abs=1e-3) and high == pytest.approx(0.6018, abs=1e-3)
    assert wilson(0, 0) is None


def test_summarize_counts_per_domain():
    turns = [{"sample_id": "a", "domain": "Hotels", "turn": 0, "correct": True, "errors": [], "texts": ["x"]},
             {"sample_id": "b", "domain": "Hotels", "turn": 1, "correct": False, "errors": ["wrong_name"],
              "texts": ["<tool_call>..."]},
             {"sample_id": "c", "domain": "Flights", "turn": 0, "correct": False, "errors": ["stopped_early"],
              "texts": [""]}]
    record = summarize("eval_100", {"protocol": "turn", "turns": turns,
                                    "settings": {"source": "eval_100", "turn_ids": ["a#0", "b#1", "c#0"]}}, 1.0)
    assert record["summary"]["turns"] == 3 and record["summary"]["right"] == 1
    assert record["by_domain"]["Hotels"]["right"] == 1 and record["by_domain"]["Flights"]["n"] == 1
    assert record["errors"] == {"wrong_name": 1, "stopped_early": 1}
    assert record["turn_ids"] == ["a#0", "b#1", "c#0"] and len(record["examples"]) == 2


def test_eval_100_turns_all_novel_against_decontaminated_bfcl():
    from toolrl.data.contamination import drop_overlapping, sample_keys
    from toolrl.data.coverage import novel_counts

    test = load_samples("eval_100")
    train, _ = drop_overlapping(load_samples("bfcl_training"), sample_keys(test))
    counts = novel_counts(train, test, {})
    assert counts["turns"] == 90 and counts["novel"] == 90


def test_readme_natural_section_is_generated_from_the_committed_files():
    import json
    from pathlib import Path

    from experiments.data_report import README_END, README_START, load_starts, readme_section

    root = Path(__file__).resolve().parents[1]
    results = root / "experiments" / "results" / "natural"
    report = json.loads((results / "data_report.json").read_text())
    readme = (root / "experiments" / "natural" / "README.md").read_text()  # the study's log holds the section
    section = readme[readme.index(README_START) + len(README_START):readme.index(README_END)]
    assert section == "\n" + readme_section(report, load_starts(results))

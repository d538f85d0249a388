"""Queries a person would write: surface forms read back, the phrasebook writer, step-list detection."""

import json

import numpy as np
import pytest

from toolrl.data import paths
from toolrl.synth import surface
from toolrl.synth.phrasebook import PhrasebookWriter
from toolrl.synth.query import QueryRenderer
from toolrl.synth.query_writer import WriterChain, is_step_list, missing_values, names_a_tool
from toolrl.synth.sampler import ConstrainedSampler, CrossSampler, SynthKnobs
from toolrl.synth.types import Binding, Call, Trace


def test_dates_in_benchmark_query_by_hand():
    query = ("My friend is planning to rent a car at Zurich Airport at 11 o'clock in the morning on November 25th, "
             "2024, and return it in Geneva at 2 pm on November 30th.")
    assert surface.dates_in(query) == {"2024-11-25", "2024-11-30"}
    assert surface.times_in(query) == {"11:00", "14:00"}


def test_dates_ranges_relative_and_year_after():
    query = "I'm in Paris from November 10th to 17th, 2024 and fly on three days later; back on the 2nd of December."
    assert surface.dates_in(query) == {"2024-11-10", "2024-11-17", "2024-11-20", "2024-12-02"}
    assert surface.dates_in("leaving Dec 30, 2024 and returning the next day") == {"2024-12-30", "2024-12-31"}
    assert surface.dates_in("on November 5th") == set()  # no year anywhere: not recoverable


def test_times_forms():
    assert surface.times_in("at 9:15 a.m., at noon, 7 o'clock in the evening, 23:05 and 12 am") == {
        "09:15", "12:00", "19:00", "23:05", "00:00"}


@pytest.mark.parametrize("parameter,value,query,expected", [
    ("sortBy", "attr_book_score", "the highest-rated things to do", True),
    ("sortBy", "attr_book_score", "the cheapest things to do", False),
    ("cabinClass", "PREMIUM_ECONOMY", "in premium economy", True),
    ("adults", 2, "for two adults", True),
    ("adults", 3, "for two adults", False),
    ("children", "4, 6", "children aged 4 and six", True),
    ("query", "Zurich Airport", "at zurich airport tomorrow", True),
    ("query", "Paris, France", "in Paris", False),
    ("departDate", "2024-11-25", "on Nov 25, 2024", True),
    ("pick_up_time", "14:30", "at 2:30 pm", True),
])
def test_stated_by_hand(parameter, value, query, expected):
    assert surface.stated(parameter, value, query) is expected


def test_say_round_trips_through_stated():
    rng = np.random.default_rng(0)
    for _ in range(200):
        date = f"2024-{int(rng.integers(1, 13)):02d}-{int(rng.integers(1, 29)):02d}"
        clock = f"{int(rng.integers(0, 24)):02d}:{int(rng.choice([0, 15, 30, 45])):02d}"
        text = f"on {surface.say('date', date, rng)} at {surface.say('time', clock, rng)}"
        assert surface.stated("date", date, text), text
        assert surface.stated("time", clock, text), text
    for value in ("trending", "attr_book_score", "lowest_price"):
        assert surface.stated("sortBy", value, surface.say("sortBy", value, rng))


def _trace() -> Trace:
    lookup = Call("Search_Car_Location", {"query": "Zurich Airport"}, {"status": True, "data": [
        {"coordinates": {"latitude": 47.4519, "longitude": 8.56281}}]})
    rentals = Call("Search_Car_Rentals", {"pick_up_latitude": 47.4519, "pick_up_longitude": 8.56281,
                                          "drop_off_latitude": 47.4519, "drop_off_longitude": 8.56281,
                                          "pick_up_date": "2024-11-25", "pick_up_time": "11:00",
                                          "drop_off_date": "2024-11-30", "drop_off_time": "14:00"}, {"status": True})
    bindings = ((), tuple(Binding(p, 0, f"[0].coordinates.{p.split('_')[-1]}") for p in
                          ("pick_up_latitude", "pick_up_longitude", "drop_off_latitude", "drop_off_longitude")))
    return Trace("", ("Search_Car_Location", "Search_Car_Rentals"), ((lookup,), (rentals,)), ((), (0,)),
                 "wf", "Car-Rental", bindings)


def test_phrasebook_states_every_free_value_and_no_id():
    trace = _trace()
    for seed in range(20):
        query = PhrasebookWriter().write(trace, np.random.default_rng(seed))
        assert not missing_values(trace, query), query
        assert not is_step_list(query) and not names_a_tool(query, trace.candidate_tools)
        assert "47.4519" not in query  # a dependent value is never stated
        assert "Zurich Airport" in query


def test_missing_values_catches_a_dropped_value():
    trace = _trace()
    missing = missing_values(trace, "Rent a car at Zurich Airport on November 25th, 2024 at 11 am.")
    assert {path for _, path, _ in missing} == {"drop_off_date", "drop_off_time"}


def test_step_lists_recognised():
    old = QueryRenderer().template_query(_trace(), np.random.default_rng(0))
    assert old.startswith("(1)") and is_step_list(old)
    assert is_step_list("1) Find flights.\n2) Then get the seat map.")
    eval_100 = json.loads(paths.data_file(paths.EVAL_100).read_text())
    assert not any(is_step_list(sample["query"]) for sample in eval_100)


def test_chain_rejects_and_counts():
    class Bad:
        name = "bad"

        def write(self, trace, rng):
            return "Please rent me a car."

    chain = WriterChain([Bad(), PhrasebookWriter()])
    assert chain.render(_trace(), np.random.default_rng(0))
    assert chain.stats() == {"bad/rejected": 1, "phrasebook/written": 1, "unwritten": 0}
    alone = WriterChain([Bad()])
    assert alone.render(_trace(), np.random.default_rng(0)) is None and alone.unwritten == 1


@pytest.fixture(scope="module")
def pool():
    from toolrl.synth.build import load_pool

    return load_pool()


def test_real_traces_written_naturally(pool):
    chain = WriterChain([PhrasebookWriter()])
    traces = []
    for domain in ("Attraction", "Car-Rental", "Flights"):
        sampler = ConstrainedSampler(pool, SynthKnobs(n_calls=3, domains=(domain,), bind="opaque"), seed=3,
                                     renderer=chain)
        traces += [t for a in range(15) if (t := sampler.sample(a)) is not None]
    assert len(traces) >= 20
    for trace in traces:
        assert not missing_values(trace, trace.query) and not is_step_list(trace.query)
        # "opaque": only must-bind leaves (ids, tokens, coordinates) come from responses
        for index, call in enumerate(trace.bindings):
            for binding in call:
                assert binding.parameter not in ("query", "sortBy", "sort", "date"), (trace.calls[index], binding)


def test_cross_sampler_joins_two_domains(pool):
    sampler = CrossSampler(pool, SynthKnobs(n_calls=4, bind="opaque", domains=("Cross",)), seed=0,
                           renderer=WriterChain([PhrasebookWriter()]))
    traces = [t for a in range(30) if (t := sampler.sample(a)) is not None]
    assert traces
    for trace in traces:
        assert trace.domain == "Cross" and trace.n_calls == 4
        assert not missing_values(trace, trace.query)


def test_real_query_template_aligned_and_refilled_by_hand():
    from toolrl.synth.real_queries import RealQueryWriter, align

    query = ("I want to rent a car at Los Angeles International Airport at 10 am on November 20th, 2024, and return "
             "it in San Diego at 3 pm on November 25th. Give me some car rental information.")
    steps = [("Search_Car_Location", {"query": "Los Angeles International Airport"}, set()),
             ("Search_Car_Location", {"query": "San Diego"}, set()),
             ("Search_Car_Rentals", {"pick_up_latitude": 33.94, "pick_up_longitude": -118.4, "drop_off_latitude": 32.7,
                                     "drop_off_longitude": -117.1, "pick_up_date": "2024-11-20", "pick_up_time": "10:00",
                                     "drop_off_date": "2024-11-25", "drop_off_time": "15:00"},
              {"pick_up_latitude", "pick_up_longitude", "drop_off_latitude", "drop_off_longitude"})]
    sources = [(2, p, 0) for p in ("pick_up_latitude", "pick_up_longitude")] + \
        [(2, p, 1) for p in ("drop_off_latitude", "drop_off_longitude")]
    template = align("wf", query, steps, sources)
    assert [(s.kind, s.style, query[s.start:s.end]) for s in template.slots] == [
        ("text", "verbatim", "Los Angeles International Airport"), ("time", "12h", "10 am"),
        ("date", "long_year", "November 20th, 2024"), ("text", "verbatim", "San Diego"), ("time", "12h", "3 pm"),
        ("date", "long", "November 25th")]
    trace = _trace()  # one lookup only: another signature, no template
    assert RealQueryWriter([template]).write(trace, np.random.default_rng(0)) is None
    second = Call("Search_Car_Location", {"query": "Geneva"}, {"status": True, "data": [
        {"coordinates": {"latitude": 46.2, "longitude": 6.14}}]})
    rentals = trace.calls[1]
    same_place = Trace("", trace.candidate_tools, ((trace.calls[0], second), (rentals,)), ((), (), (0,)), "wf",
                       "Car-Rental", ((), (), trace.bindings[1]))
    # the trace drops off where it picks up: "return it in Geneva" would be false
    assert RealQueryWriter([template]).write(same_place, np.random.default_rng(0)) is None
    bindings = tuple(Binding(b.parameter, 1 if b.parameter.startswith("drop") else 0, b.from_path)
                     for b in trace.bindings[1])
    two = Trace("", trace.candidate_tools, ((trace.calls[0], second), (rentals,)), ((), (), (0, 1)), "wf",
                "Car-Rental", ((), (), bindings))
    written = RealQueryWriter([template]).write(two, np.random.default_rng(0))
    assert written == ("I want to rent a car at Zurich Airport at 11 am on November 25th, 2024, and return it in Geneva "
                       "at 2 pm on November 30th. Give me some car rental information.")
    assert not missing_values(two, written)


def test_benchmark_templates_never_an_eval_100_query_or_family():
    from toolrl.data.coverage import _values, family_key
    from toolrl.data.golden import load_samples
    from toolrl.synth.real_queries import benchmark_templates

    eval_100 = load_samples("eval_100")
    families = {family_key(s.query, _values(s)) for s in eval_100}
    templates = benchmark_templates()
    assert len(templates) >= 10
    assert not {t.query for t in templates} & {s.query for s in eval_100}
    assert not any(family_key(t.query) in families for t in templates)

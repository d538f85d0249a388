"""User queries for synthesized traces, rendered from the trace's free argument values.

A free value is an argument leaf no earlier response provides (the trace's bindings say which
leaves are provided). The query must state every free value, or the trace would not be solvable;
dependent values must *not* be stated (the model has to read them from responses). Rendering is by
templates: one lead phrase per tool ("search for flights") plus one phrase per parameter
("departing on {value}"); unknown tools and parameters fall back to generic phrases, so any tool
renders. Values are written verbatim (``str`` of the canonical value; lists of scalars
comma-joined), which :func:`missing_free_values` checks.

An optional paraphraser (:class:`OpenAIParaphraser`, off by default) rewrites the templated query
through an OpenAI-compatible chat endpoint; a paraphrase that drops a free value is discarded and
the templated query kept. Nothing here touches the network unless a paraphraser is configured.
"""

from __future__ import annotations

import dataclasses
import json
import re
import urllib.request
from collections.abc import Iterable
from typing import Any, Protocol

import numpy as np

from toolrl.env.graph import wildcard
from toolrl.synth.pool import argument_leaves
from toolrl.synth.types import Trace

# Lead phrase per tool: what the user wants done. Used as "<opener> <lead> <param phrases>".
TOOL_LEADS: dict[str, str] = {
    "Search_Flight_Location": "look up the airport or city code",
    "Search_Flights": "search one-way or return flights",
    "Search_Flights_Multi_Stops": "search multi-stop flights",
    "Get_Min_Price": "find the cheapest dates to fly",
    "Get_Min_Price_Multi_Stops": "find the cheapest dates for a multi-stop trip",
    "Get_Flight_Details": "get the full details of the flight",
    "Get_Seat_Map": "show the seat map of the flight",
    "Search_Hotel_Destination": "look up the hotel destination",
    "Search_Hotels": "search hotels",
    "Search_Hotels_By_Coordinates": "search hotels around the location",
    "Get_Filter": "list the available hotel filters",
    "Get_Hotel_Details": "get the hotel's details",
    "Get_Hotel_Policies": "get the hotel's policies",
    "Get_Hotel_Reviews_Tips": "read the hotel's reviews",
    "Get_Hotel_Reviews_Tips__Sort_Option": "list the ways to sort the hotel's reviews",
    "Get_Hotel_Review_Scores": "get the hotel's review scores",
    "Get_Description_And_Info": "get the hotel's description",
    "Get_Room_List_With_Availability": "list the rooms available at the hotel",
    "Get_Room_Availability": "check the hotel's room availability",
    "Get_Popular_Attraction_Near_By": "find popular attractions near the hotel",
    "Get_Nearby_Cities": "find cities nearby",
    "Get_Question_And_Answer": "read the questions and answers about the hotel",
    "Payment_features_of_the_Hotel": "check which payment methods the hotel accepts",
    "Property_Children_Policies": "check the hotel's policies for children",
    "Location_to_Lat_Long": "get the coordinates of a place",
    "Search_Car_Location": "look up the car rental location",
    "Search_Car_Rentals": "search rental cars",
    "Vehicle_Details": "get the details of the rental car",
    "Vehicle_Supplier_Details": "get the details of the car's supplier",
    "Vehicle_Supplier_Ratings": "get the ratings of the car's supplier",
    "Vehicle_Supplier_Review": "read reviews of the car's supplier",
    "Get_Packages": "list the insurance packages for the car",
    "Booking_Summary": "get the booking summary of the car",
    "Taxi_Search_Location": "look up the taxi location",
    "Search_Taxi": "search taxis",
    "Search_Attraction_Location": "look up attractions and destinations",
    "Search_Attractions": "search attractions there",
    "Get_Attraction_Details": "get the details of the attraction",
    "Get_Availability": "check the attraction's availability",
    "Get_Availability_Calendar": "check the attraction's availability calendar",
}

# Phrase per parameter (wildcarded leaf name); {value} is replaced verbatim.
PARAMETER_PHRASES: dict[str, str] = {
    "query": 'for "{value}"',
    "departDate": "departing on {value}",
    "returnDate": "returning on {value}",
    "date": "on {value}",
    "legs[*].date": "with a leg on {value}",
    "legs[*].fromId": "with a leg from {value}",
    "legs[*].toId": "with a leg to {value}",
    "fromId": "from {value}",
    "toId": "to {value}",
    "cabinClass": "in {value} class",
    "adults": "for {value} adults",
    "children": "with children aged {value}",
    "children_age": "with children aged {value}",
    "room_qty": "for {value} rooms",
    "sort": "sorted by {value}",
    "sortBy": "sorted by {value}",
    "sort_by": "sorted by {value}",
    "arrival_date": "arriving on {value}",
    "departure_date": "leaving on {value}",
    "pick_up_date": "picking up on {value}",
    "pick_up_time": "at {value}",
    "drop_off_date": "dropping off on {value}",
    "drop_off_time": "at {value}",
    "price_min": "from a price of {value}",
    "price_max": "up to a price of {value}",
    "radius": "within a radius of {value}",
    "currency_code": "with prices in {value}",
    "languagecode": "in language {value}",
    "page": "page {value}",
    "page_number": "page {value}",
}

OPENERS = ("First, please", "Please", "I'd like you to", "Start by asking to")
FOLLOWERS = ("Then", "After that,", "Next,", "Also")


def free_values(trace: Trace) -> list[tuple[int, str, Any]]:
    """(flat call index, leaf path, value) for every argument leaf not provided by an earlier response."""
    bound = [{b.parameter for b in call} for call in trace.bindings] if trace.bindings else [set()] * trace.n_calls
    out = []
    for index, call in enumerate(trace.calls):
        for leaf in argument_leaves(call.arguments):
            if leaf.path not in bound[index]:
                out.append((index, leaf.path, leaf.value))
    return out


def value_text(value: Any) -> str:
    """How a value is written in a query (and looked for by the solvability check)."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return "none"
    return str(value)


def missing_free_values(trace: Trace, query: str | None = None) -> list[tuple[int, str, Any]]:
    """Free values the query does not state (empty for a solvable trace)."""
    query = trace.query if query is None else query
    return [item for item in free_values(trace) if value_text(item[2]) not in query]


class Paraphraser(Protocol):
    def paraphrase(self, query: str) -> str: ...


@dataclasses.dataclass(frozen=True)
class OpenAIParaphraser:
    """Rewrites a query through an OpenAI-compatible ``/chat/completions`` endpoint (opt-in)."""

    base_url: str  # e.g. "http://localhost:8000/v1"
    model: str
    api_key: str = ""
    temperature: float = 0.7
    timeout_s: float = 30.0

    def paraphrase(self, query: str) -> str:
        body = {
            "model": self.model,
            "temperature": self.temperature,
            "messages": [
                {"role": "system", "content": "Rewrite the user's travel request so it reads like one natural "
                 "message from a traveller. Keep every value (names, dates, times, numbers, codes) exactly as "
                 "written. Answer with the rewritten request only."},
                {"role": "user", "content": query},
            ],
        }
        request = urllib.request.Request(
            self.base_url.rstrip("/") + "/chat/completions", data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json",
                     **({"Authorization": f"Bearer {self.api_key}"} if self.api_key else {})})
        with urllib.request.urlopen(request, timeout=self.timeout_s) as reply:
            answer = json.loads(reply.read())
        return answer["choices"][0]["message"]["content"].strip()


class QueryRenderer:
    """Templated queries (always solvable), optionally paraphrased."""

    def __init__(self, paraphraser: Paraphraser | None = None):
        self.paraphraser = paraphraser  # None (the default): no network, templates only
        self.paraphrase_rejected = 0

    def render(self, trace: Trace, rng: np.random.Generator) -> str:
        query = self.template_query(trace, rng)
        if self.paraphraser is not None:
            try:
                candidate = self.paraphraser.paraphrase(query)
            except (OSError, ValueError, KeyError) as err:  # an unreachable endpoint must not stop synthesis
                candidate = ""
                del err
            if candidate and not missing_free_values(trace, candidate):
                return candidate
            self.paraphrase_rejected += 1
        return query

    def template_query(self, trace: Trace, rng: np.random.Generator) -> str:
        """One numbered sentence per call: the tool's lead phrase, its free values, and which earlier
        step's result each dependent argument comes from (named, never its value)."""
        by_call: dict[int, list[tuple[str, Any]]] = {}
        for index, path, value in free_values(trace):
            by_call.setdefault(index, []).append((path, value))
        sentences = []
        for index, call in enumerate(trace.calls):
            lead = TOOL_LEADS.get(call.name, "use " + call.name.replace("_", " ").lower())
            phrases = [self._phrase(path, value) for path, value in by_call.get(index, [])]
            if index == 0:
                opener = OPENERS[int(rng.integers(len(OPENERS)))]
            else:
                opener = FOLLOWERS[int(rng.integers(len(FOLLOWERS)))]
            text = f"({index + 1}) {opener} {lead}"
            if phrases:
                text += " " + ", ".join(phrases)
            sources: dict[int, list[str]] = {}
            for binding in (trace.bindings[index] if trace.bindings else ()):
                sources.setdefault(binding.from_call, []).append(_parameter_words(binding.parameter))
            if sources:
                text += ", " + " and ".join(
                    f"with the {', '.join(dict.fromkeys(names))} from the result of step {source + 1}"
                    for source, names in sorted(sources.items()))
            sentences.append(text.rstrip(".") + ".")
        return " ".join(sentences)

    @staticmethod
    def _phrase(path: str, value: Any) -> str:
        parameter = wildcard(path)
        template = PARAMETER_PHRASES.get(parameter) or PARAMETER_PHRASES.get(parameter.split(".")[-1])
        if template is None:
            template = "with " + _parameter_words(parameter) + " {value}"
        return template.replace("{value}", value_text(value))


def _parameter_words(parameter: str) -> str:
    """``legs[0].fromId`` -> ``legs fromId``; ``pick_up_latitude`` -> ``pick up latitude``."""
    return re.sub(r"\[\d+\]|\[\*\]", "", parameter).replace("_", " ").replace(".", " ")


def all_solvable(traces: Iterable[Trace]) -> bool:
    return all(not missing_free_values(trace) for trace in traces)

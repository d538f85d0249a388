"""The phrasebook's clauses (docs/design.md, "User queries"): one verb phrase per tool, written by us,
that says a call's free values in the forms people use (:mod:`toolrl.synth.surface`), refers to places
by the lookup strings that feed the call ("flights from Berlin to Barcelona") and to earlier results by
position ("the second car in the results").

:class:`_Context` is what a clause may use of one call; :data:`CLAUSES` maps a tool to its clause
(:func:`_generic` serves tools without one, :func:`_lookup` a lookup call nothing reads).
:class:`toolrl.synth.phrasebook.PhrasebookWriter` joins the clauses into one request.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from toolrl.synth import surface
from toolrl.synth.types import Binding, Call, Trace


LOOKUPS = frozenset({"Search_Attraction_Location", "Search_Flight_Location", "Search_Car_Location",
                     "Search_Hotel_Destination", "Taxi_Search_Location", "Location_to_Lat_Long"})

# What an item of a tool's results is called, for "the second car in the results".
RESULT_NOUNS = {"Search_Attractions": "attraction", "Search_Car_Rentals": "car", "Search_Flights": "flight",
                "Search_Flights_Multi_Stops": "flight", "Search_Hotels": "hotel",
                "Search_Hotels_By_Coordinates": "hotel", "Get_Nearby_Cities": "city", "Search_Taxi": "taxi",
                "Get_Min_Price": "date", "Get_Min_Price_Multi_Stops": "date",
                "Get_Hotel_Reviews_Tips__Sort_Option": "sort option", "Search_Attraction_Location": "place",
                "Get_Room_List_With_Availability": "room"}

_INDEX = re.compile(r"\[(\d+)\]")


@dataclasses.dataclass
class _Context:
    """What a clause may use of one call: its free values (said once), places and result positions."""

    trace: Trace
    index: int
    rng: np.random.Generator
    free: dict[str, Any]  # leaf path -> value, free leaves of this call
    bindings: dict[str, Binding]  # leaf path -> binding, dependent leaves of this call
    state: dict[str, Any]  # shared across the calls of one query (e.g. the year already written)

    @property
    def call(self) -> Call:
        return self.trace.calls[self.index]

    def has(self, path: str) -> bool:
        return path in self.free or path in self.bindings

    def say(self, path: str) -> str | None:
        """The free value at ``path`` as a person writes it (None when not free); a date carries its
        year the first time a year is written and whenever the year changes."""
        if path not in self.free:
            return None
        self.state.setdefault("said", set()).add((self.index, path))
        value = self.free[path]
        date = surface.parse_iso_date(value)
        if date is not None:
            with_year = self.state.get("year") != date.year or self.state.get("mixed_years", False)
            self.state["year"] = date.year
            return surface.say(path, value, self.rng, with_year=with_year)
        return surface.say(path, value, self.rng)

    def place(self, path: str) -> str | None:
        """The lookup string of the lookup call that feeds ``path`` ("Zurich Airport"), if one does."""
        binding = self.bindings.get(path)
        if binding is None:
            return None
        source = self.trace.calls[binding.from_call]
        if source.name in LOOKUPS and isinstance(source.arguments.get("query"), str):
            self.state.setdefault("places_said", set()).add(binding.from_call)
            return source.arguments["query"]
        return None

    def item(self, path: str) -> str:
        """"the second car in the results" for a value taken from the results of another call; "it"
        when the source is not a list."""
        binding = self.bindings.get(path)
        if binding is None:
            return "it"
        source = self.trace.calls[binding.from_call].name
        noun = RESULT_NOUNS.get(source, "result")
        positions = _INDEX.findall(binding.from_path)
        if not positions:
            return {"car": "that car", "flight": "that flight", "hotel": "that hotel"}.get(noun, "it")
        position = int(positions[0])
        if position == 0 and self.rng.random() < 0.5:
            return f"the top {noun}"
        return f"the {surface.ordinal(position)} {noun}" + (" in the results" if self.rng.random() < 0.5 else "")

    def pick(self, *options: str) -> str:
        return options[int(self.rng.integers(len(options)))]

    def rest(self, skip: Sequence[str] = ()) -> str:
        """Free values not used by the clause itself, as modifiers ("for 2 adults")."""
        parts = []
        for path in self.free:
            if path in skip or (self.index, path) in self.state.setdefault("said", set()):
                continue
            parts.append(_modifier(path, self.say(path)))
        return (" " + ", ".join(parts)) if parts else ""


def _leaf_name(path: str) -> str:
    return re.split(r"[.\]\[*]+", path.rstrip("]"))[-1] or path


_MODIFIERS = {
    "adults": "for {v} adults", "children_age": "with children aged {v}", "children": "with children aged {v}",
    "room_qty": "for {v} rooms", "price_min": "costing at least {v}", "price_max": "costing at most {v}",
    "radius": "within {v} km", "currency_code": "with prices in {v}", "languagecode": "in the language {v}",
    "cabinClass": "in {v}", "sort": "the {v} options", "sortBy": "sorted by {v}", "sort_by": "sorted by {v}",
    "page_number": "on page {v}", "page": "on page {v}", "date": "on {v}", "departDate": "leaving {v}",
    "returnDate": "coming back {v}", "arrival_date": "arriving {v}", "departure_date": "leaving {v}",
    "units": "in {v} units", "temperature_unit": "with temperatures in {v}",
}


def _modifier(path: str, text: str | None) -> str:
    name = _leaf_name(path)
    template = _MODIFIERS.get(name)
    if template is None:
        words = re.sub(r"\[\d+\]|\[\*\]", "", path).replace("_", " ").replace(".", " ")
        template = "with " + words + " {v}"
    if name in ("departDate", "returnDate", "arrival_date", "departure_date", "date") and text and \
            not text.startswith("the "):
        template = template.replace("{v}", "on {v}")
    return template.replace("{v}", text or "")


def _dates(ctx: _Context, start: str, end: str, joiner: str = "to") -> str:
    """"from November 10th, 2024 to November 17th" for two free date leaves (either may be absent)."""
    first, last = ctx.say(start), ctx.say(end)
    if first and last:
        return f" from {first} {joiner} {last}"
    if first:
        return f" on {first}"
    if last:
        return f" until {last}"
    return ""


def _where(ctx: _Context, path: str, fallback: str = "there") -> str:
    place = ctx.place(path)
    return place if place else fallback


# One clause per tool: a verb phrase in the base form ("find ...", "show me ..."). Each receives the
# call's context and says its free values through ctx.say (rest() adds any the clause did not use).
def _attraction_location(ctx: _Context) -> str:
    return ctx.pick("find attractions and places to visit matching {q}", "look up what {q} has to offer",
                    "see which destinations come up for {q}").replace("{q}", ctx.call.arguments.get("query", ""))


def _attractions(ctx: _Context) -> str:
    place = _where(ctx, "id")
    sort = ctx.say("sortBy")
    if sort:
        return ctx.pick(f"find the {sort} attractions in {place}", f"show me the {sort} things to do in {place}",
                        f"list the {sort} tours and activities in {place}")
    return ctx.pick(f"find attractions in {place}", f"show me things to do in {place}",
                    f"see what tours and activities {place} has")


def _attraction(ctx: _Context, path: str) -> str:
    """How a clause names the attraction whose id feeds ``path``: the place itself when a location lookup
    gives a destination, "the first attraction that comes up for X" when it gives one of its products."""
    binding = ctx.bindings.get(path)
    source = ctx.trace.calls[binding.from_call] if binding else None
    if source is not None and source.name in LOOKUPS and binding.from_path.startswith("products"):
        query = ctx.place(path)
        position = int((_INDEX.findall(binding.from_path) or ["0"])[0])
        return ctx.pick(f"the {surface.ordinal(position)} attraction that comes up for {query}",
                        f"the {surface.ordinal(position)} attraction listed for {query}")
    return ctx.place(path) or ctx.item(path)


def _attraction_details(ctx: _Context) -> str:
    target = _attraction(ctx, "slug")
    return ctx.pick(f"give me the details of {target}", f"tell me more about {target}",
                    f"get detailed information on {target}")


def _availability(ctx: _Context) -> str:
    target = _attraction(ctx, "slug")
    date = ctx.say("date")
    when = f" on {date}" if date else ""
    return ctx.pick(f"check whether {target} is available{when}", f"see if {target} has openings{when}",
                    f"check the availability of {target}{when}")


def _availability_calendar(ctx: _Context) -> str:
    target = _attraction(ctx, "id")
    return ctx.pick(f"show me the availability calendar of {target}", f"check which dates {target} is open",
                    f"see the calendar of available dates for {target}")


def _car_rentals(ctx: _Context) -> str:
    pick_up = _where(ctx, "pick_up_latitude", "the pick-up point")
    drop_off = ctx.place("drop_off_latitude")
    pick_date, pick_time = ctx.say("pick_up_date"), ctx.say("pick_up_time")
    drop_date, drop_time = ctx.say("drop_off_date"), ctx.say("drop_off_time")
    text = ctx.pick("rent a car", "find a rental car", "book a rental car") + f" at {pick_up}"
    if pick_date:
        text += f" on {pick_date}"
    if pick_time:
        text += f" at {pick_time}"
    if drop_off and drop_off != pick_up:
        text += f" and return it at {drop_off}"
    else:
        text += ctx.pick(" and return it there", " and drop it off at the same place")
    if drop_date:
        text += f" on {drop_date}"
    if drop_time:
        text += f" at {drop_time}"
    return text


def _car_item_clause(kind: str) -> Callable[[_Context], str]:
    def clause(ctx: _Context) -> str:
        car = ctx.item("vehicle_id")
        return {
            "details": ctx.pick(f"show me the details of {car}", f"tell me more about {car}"),
            "supplier": ctx.pick(f"tell me about the supplier of {car}", f"get the supplier details for {car}"),
            "ratings": ctx.pick(f"show me the supplier ratings for {car}", f"tell me how the supplier of {car} is rated"),
            "review": ctx.pick(f"show me reviews of the supplier of {car}", f"find what customers say about the supplier of {car}"),
            "packages": ctx.pick(f"list the insurance packages for {car}", f"tell me the prices of the insurance packages for {car}"),
            "summary": ctx.pick(f"give me the booking summary for {car}", f"prepare the booking summary of {car}"),
        }[kind]
    return clause


def _flight_ends(ctx: _Context, from_path: str = "fromId", to_path: str = "toId") -> str:
    origin, destination = ctx.place(from_path), ctx.place(to_path)
    text = ""
    if origin:
        text += f" from {origin}"
    if destination:
        text += f" to {destination}"
    return text


def _flights(ctx: _Context) -> str:
    sort, cabin = ctx.say("sort"), ctx.say("cabinClass")
    adjectives = " ".join(a for a in (sort, cabin) if a)
    noun = ctx.pick("flights", "flight options", "plane tickets")
    text = ctx.pick("find", "search for", "look for") + (f" the {adjectives} {noun}" if adjectives else f" {noun}")
    text += _flight_ends(ctx)
    depart, back = ctx.say("departDate"), ctx.say("returnDate")
    if depart and back:
        text += f", leaving on {depart} and coming back on {back}"
    elif depart:
        text += f" on {depart}"
    elif back:
        text += f", coming back on {back}"
    return text + ctx.rest(("sort", "cabinClass", "departDate", "returnDate"))


def _min_price(ctx: _Context) -> str:
    cabin = ctx.say("cabinClass")
    text = ctx.pick("find the cheapest dates to fly", "check which days have the lowest fares") + _flight_ends(ctx)
    if cabin:
        text += f" in {cabin}"
    depart, back = ctx.say("departDate"), ctx.say("returnDate")
    if depart and back:
        text += f" around {depart}, returning around {back}"
    elif depart:
        text += f" around {depart}"
    return text + ctx.rest(("cabinClass", "departDate", "returnDate"))


def _legs(ctx: _Context) -> str:
    legs = sorted({int(m) for path in list(ctx.free) + list(ctx.bindings) for m in re.findall(r"legs\[(\d+)\]", path)})
    parts = []
    for leg in legs:
        origin, destination = ctx.place(f"legs[{leg}].fromId"), ctx.place(f"legs[{leg}].toId")
        date = ctx.say(f"legs[{leg}].date")
        piece = ""
        if origin:
            piece += f"from {origin} "
        if destination:
            piece += f"to {destination} "
        if date:
            piece += f"on {date}"
        if piece.strip():
            parts.append(piece.strip())
    return ", then ".join(parts)


def _multi_stop_flights(ctx: _Context) -> str:
    sort, cabin = ctx.say("sort"), ctx.say("cabinClass")
    adjectives = " ".join(a for a in (sort, cabin) if a)
    text = ctx.pick("find", "search for") + (f" the {adjectives} multi-stop flights" if adjectives
                                              else " multi-stop flights")
    legs = _legs(ctx)
    if legs:
        text += f" flying {legs}"
    skip = ["sort", "cabinClass"] + [p for p in ctx.free if p.startswith("legs[")]
    return text + ctx.rest(skip)


def _min_price_multi(ctx: _Context) -> str:
    cabin = ctx.say("cabinClass")
    text = "find the cheapest dates for a multi-stop trip" + (f" in {cabin}" if cabin else "")
    legs = _legs(ctx)
    if legs:
        text += f" flying {legs}"
    return text + ctx.rest(["cabinClass"] + [p for p in ctx.free if p.startswith("legs[")])


def _flight_item(kind: str) -> Callable[[_Context], str]:
    def clause(ctx: _Context) -> str:
        path = "token" if kind == "details" else "offerToken"
        flight = ctx.item(path)
        if kind == "details":
            return ctx.pick(f"show me the details of {flight}", f"give me the full information on {flight}")
        return ctx.pick(f"show me the seat map of {flight}", f"check which seats are available on {flight}")
    return clause


def _hotel_search(ctx: _Context) -> str:
    place = _where(ctx, "dest_id")
    text = ctx.pick("find hotels in", "look for places to stay in", "search for hotels in") + f" {place}"
    text += _dates(ctx, "arrival_date", "departure_date")
    return text + ctx.rest(("arrival_date", "departure_date"))


def _hotels_by_coordinates(ctx: _Context) -> str:
    place = ctx.place("latitude")
    radius = ctx.say("radius")
    near = f"within {radius} km of {place}" if radius and place else (f"near {place}" if place else "near there")
    text = ctx.pick("find hotels", "look for places to stay") + f" {near}"
    text += _dates(ctx, "arrival_date", "departure_date")
    return text + ctx.rest(("radius", "arrival_date", "departure_date"))


def _filters(ctx: _Context) -> str:
    place = _where(ctx, "dest_id")
    text = f"tell me which filters I can use for hotels in {place}" + _dates(ctx, "arrival_date", "departure_date")
    return text + ctx.rest(("arrival_date", "departure_date"))


def _nearby_cities(ctx: _Context) -> str:
    place = ctx.place("latitude")
    latitude, longitude = ctx.say("latitude"), ctx.say("longitude")
    if latitude and longitude:
        return f"find cities near latitude {latitude} and longitude {longitude}"
    return f"find the cities near {place or 'there'}"


def _hotel_item(kind: str) -> Callable[[_Context], str]:
    phrases = {"Get_Hotel_Reviews_Tips": "show me the reviews of {h}", "Get_Hotel_Policies": "tell me the policies of {h}",
               "Get_Description_And_Info": "describe {h}", "Property_Children_Policies": "tell me the children's policy of {h}",
               "Get_Popular_Attraction_Near_By": "find popular attractions near {h}",
               "Get_Hotel_Reviews_Tips__Sort_Option": "tell me how I can sort the reviews of {h}",
               "Payment_features_of_the_Hotel": "tell me which payment methods {h} accepts",
               "Get_Hotel_Details": "show me the details of {h}", "Get_Hotel_Review_Scores": "show me the review scores of {h}",
               "Get_Question_And_Answer": "show me questions and answers about {h}",
               "Get_Room_List_With_Availability": "list the available rooms at {h}",
               "Get_Room_Availability": "check room availability at {h}"}

    def clause(ctx: _Context) -> str:
        hotel = ctx.place("hotel_id") or ctx.item("hotel_id")
        text = phrases[kind].replace("{h}", hotel)
        return text + _dates(ctx, "arrival_date", "departure_date") + ctx.rest(("arrival_date", "departure_date"))
    return clause


def _taxi(ctx: _Context) -> str:
    origin, destination = ctx.place("pick_up_place_id"), ctx.place("drop_off_place_id")
    text = "book a taxi" + (f" from {origin}" if origin else "") + (f" to {destination}" if destination else "")
    date, time = ctx.say("pick_up_date"), ctx.say("pick_up_time")
    if date:
        text += f" on {date}"
    if time:
        text += f" at {time}"
    return text + ctx.rest(("pick_up_date", "pick_up_time"))


CLAUSES: dict[str, Callable[[_Context], str]] = {
    "Search_Attractions": _attractions,
    "Get_Attraction_Details": _attraction_details,
    "Get_Availability": _availability,
    "Get_Availability_Calendar": _availability_calendar,
    "Search_Car_Rentals": _car_rentals,
    "Vehicle_Details": _car_item_clause("details"),
    "Vehicle_Supplier_Details": _car_item_clause("supplier"),
    "Vehicle_Supplier_Ratings": _car_item_clause("ratings"),
    "Vehicle_Supplier_Review": _car_item_clause("review"),
    "Get_Packages": _car_item_clause("packages"),
    "Booking_Summary": _car_item_clause("summary"),
    "Search_Flights": _flights,
    "Get_Min_Price": _min_price,
    "Search_Flights_Multi_Stops": _multi_stop_flights,
    "Get_Min_Price_Multi_Stops": _min_price_multi,
    "Get_Flight_Details": _flight_item("details"),
    "Get_Seat_Map": _flight_item("seats"),
    "Search_Hotels": _hotel_search,
    "Search_Hotels_By_Coordinates": _hotels_by_coordinates,
    "Get_Filter": _filters,
    "Get_Nearby_Cities": _nearby_cities,
    "Search_Taxi": _taxi,
    **{name: _hotel_item(name) for name in (
        "Get_Hotel_Reviews_Tips", "Get_Hotel_Policies", "Get_Description_And_Info", "Property_Children_Policies",
        "Get_Popular_Attraction_Near_By", "Get_Hotel_Reviews_Tips__Sort_Option", "Payment_features_of_the_Hotel",
        "Get_Hotel_Details", "Get_Hotel_Review_Scores", "Get_Question_And_Answer",
        "Get_Room_List_With_Availability", "Get_Room_Availability")},
}


def _lookup(ctx: _Context) -> str:
    query = ctx.call.arguments.get("query", "")
    return {
        "Search_Flight_Location": ctx.pick(f"find the airports serving {query}", f"check which airports {query} has"),
        "Search_Car_Location": ctx.pick(f"find car rental locations at {query}", f"check where I can pick up a car at {query}"),
        "Search_Hotel_Destination": ctx.pick(f"find {query} as a hotel destination", f"check what places to stay {query} offers"),
        "Taxi_Search_Location": f"find taxi pick-up points at {query}",
        "Location_to_Lat_Long": ctx.pick(f"find the coordinates of {query}", f"tell me where exactly {query} is"),
        "Search_Attraction_Location": _attraction_location(ctx),
    }.get(ctx.call.name, f"look up {query}")


def _generic(ctx: _Context) -> str:
    words = ctx.call.name.replace("_", " ").lower()
    targets = [ctx.place(path) or ctx.item(path) for path in ctx.bindings]
    text = f"get the {words}" + (f" for {targets[0]}" if targets else "")
    return text + ctx.rest()

"""How people write argument values in a request, and reading them back out of one.

A query states the values a user gives (the trace's *free* values) the way a person writes them, not
the way the API takes them: ``2024-11-25`` as "November 25th, 2024" or "Nov 25", ``11:00`` as
"11 o'clock in the morning" or "11 am", ``attr_book_score`` as "highest-rated", ``2`` adults as "two
adults". :func:`say` renders a value in one such form; :func:`stated` decides whether a query states
a value in any form this module knows, by parsing the query's dates, times and numbers into the API's
own forms (``2024-11-25``, ``11:00``, ``2``) and comparing. A date written without its year takes the
year written nearest after it (else before it) in the query: "from November 10th to 17th, 2024".
Relative dates ("three days later", "the next day", "a week later") count from the date written just
before them.

Pure functions of their inputs; no I/O.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable
from typing import Any

import numpy as np

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
_MONTH_INDEX = {name.lower(): i + 1 for i, name in enumerate(MONTHS)}
_MONTH_INDEX.update({name[:3].lower(): i + 1 for i, name in enumerate(MONTHS)})
_MONTH_INDEX["sept"] = 9
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
                "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen",
                "twenty")
_WORD_VALUE = {word: i for i, word in enumerate(NUMBER_WORDS)}
_WORD_VALUE.update({"a": 1, "an": 1})

# Values of enumerated parameters as people say them. Keyed by the parameter's last name; the first
# phrase of each list is the most common one. `stated` accepts any phrase of the list (or the raw value).
ENUM_PHRASES: dict[str, dict[str, tuple[str, ...]]] = {
    "sortBy": {"trending": ("trending", "currently trending", "most popular"),
               "attr_book_score": ("highest-rated", "best-rated", "top-rated"),
               "lowest_price": ("cheapest", "lowest-priced", "least expensive")},
    "sort": {"BEST": ("best", "best overall", "recommended"),
             "CHEAPEST": ("cheapest", "lowest-priced", "least expensive"),
             "FASTEST": ("fastest", "quickest", "shortest")},
    "cabinClass": {"ECONOMY": ("economy", "economy class"),
                   "PREMIUM_ECONOMY": ("premium economy",),
                   "BUSINESS": ("business class", "business"),
                   "FIRST": ("first class",)},
}

_ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth")


def ordinal(index: int) -> str:
    """0 -> "first", 1 -> "second", ...; beyond ten "number 11"."""
    return _ORDINALS[index] if 0 <= index < len(_ORDINALS) else f"number {index + 1}"


def day_suffix(day: int) -> str:
    if 11 <= day % 100 <= 13:
        return "th"
    return {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")


def number_word(value: int) -> str:
    return NUMBER_WORDS[value] if 0 <= value < len(NUMBER_WORDS) else str(value)


# ---------------------------------------------------------------------- kinds of values
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def parse_iso_date(value: Any) -> datetime.date | None:
    if isinstance(value, str) and _ISO_DATE.match(value):
        try:
            return datetime.date.fromisoformat(value)
        except ValueError:
            return None
    return None


def parse_clock(value: Any) -> tuple[int, int] | None:
    match = _CLOCK.match(value) if isinstance(value, str) else None
    return (int(match.group(1)), int(match.group(2))) if match else None


def enum_phrases(parameter: str, value: Any) -> tuple[str, ...]:
    """The phrases of an enumerated value (empty when the parameter or value is not enumerated)."""
    last = re.split(r"[.\]\[*]+", parameter)[-1] or parameter
    return ENUM_PHRASES.get(last, {}).get(str(value), ())


# ---------------------------------------------------------------------- rendering
DATE_STYLES = ("long_year", "long", "short", "day_of_month")


def say_date(date: datetime.date, style: str) -> str:
    """One written form of a date. ``long_year``: "November 25th, 2024"; ``long``: "November 25th";
    ``short``: "Nov 25"; ``day_of_month``: "the 25th of November"."""
    month = MONTHS[date.month - 1]
    day = f"{date.day}{day_suffix(date.day)}"
    if style == "long_year":
        return f"{month} {day}, {date.year}"
    if style == "long":
        return f"{month} {day}"
    if style == "short":
        return f"{month[:3]} {date.day}"
    if style == "day_of_month":
        return f"the {day} of {month}"
    raise ValueError(f"unknown date style {style!r}; known: {DATE_STYLES}")


def say_time(hour: int, minute: int, rng: np.random.Generator) -> str:
    """"11 am", "11 o'clock in the morning", "2:30 pm", "noon", or "14:00" (chosen by ``rng``)."""
    if (hour, minute) == (12, 0) and rng.random() < 0.5:
        return "noon"
    twelve = hour % 12 or 12
    half = "am" if hour < 12 else "pm"
    choice = rng.random()
    if minute == 0 and choice < 0.3:
        part = "in the morning" if hour < 12 else ("in the afternoon" if hour < 18 else "in the evening")
        return f"{twelve} o'clock {part}"
    if choice < 0.85:
        return f"{twelve}:{minute:02d} {half}" if minute else f"{twelve} {half}"
    return f"{hour:02d}:{minute:02d}"


def say(parameter: str, value: Any, rng: np.random.Generator, *, with_year: bool = True) -> str:
    """A value as a person writes it; ``stated`` recognises every form this returns."""
    date = parse_iso_date(value)
    if date is not None:
        style = "long_year" if with_year else ("long", "long", "short", "day_of_month")[int(rng.integers(4))]
        return say_date(date, style)
    clock = parse_clock(value)
    if clock is not None:
        return say_time(*clock, rng)
    phrases = enum_phrases(parameter, value)
    if phrases:
        return phrases[int(rng.integers(len(phrases)))]
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int) and 0 < value <= 10 and rng.random() < 0.5:
        return number_word(value)
    if isinstance(value, list):
        return " and ".join(str(v) for v in value)
    return str(value)


# ---------------------------------------------------------------------- reading back
_MONTH_RE = r"(jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sept?(?:ember)?|" \
            r"oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
_DAY_RE = r"(\d{1,2})(?:st|nd|rd|th)?"
_MONTH_DAY = re.compile(rf"\b{_MONTH_RE}\s+{_DAY_RE}\b(?:,?\s+(\d{{4}}))?", re.I)
_DAY_MONTH = re.compile(rf"\b(?:the\s+)?{_DAY_RE}\s+(?:of\s+)?{_MONTH_RE}\b(?:,?\s+(\d{{4}}))?", re.I)
_ISO_IN_TEXT = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
# "from November 10th to 17th": a bare day after a range word, in the month written before it.
_BARE_DAY = re.compile(r"\b(?:to|until|till|through|and|-|–)\s+(?:the\s+)?(\d{1,2})(?:st|nd|rd|th)\b(?!\s+of)", re.I)
_YEAR = re.compile(r"\b(20\d{2})\b")
_RELATIVE = re.compile(r"\b(?:(\d+|" + "|".join(NUMBER_WORDS[1:]) + r"|a|an)\s+(day|days|week|weeks)\s+later"
                       r"|the\s+(next|following)\s+day)\b", re.I)


def _year_near(query: str, position: int) -> int | None:
    years = [(m.start(), int(m.group(1))) for m in _YEAR.finditer(query)]
    after = [year for start, year in years if start >= position]
    before = [year for start, year in years if start < position]
    if after:
        return after[0]
    return before[-1] if before else None


def _date(year: int | None, month: int, day: int) -> datetime.date | None:
    if year is None:
        return None
    try:
        return datetime.date(year, month, day)
    except ValueError:
        return None


def date_spans(query: str) -> list[tuple[int, int, str, str]]:
    """(start, end, ``YYYY-MM-DD``, style) of every date the query states (rules: module docstring).
    Styles: ``long_year`` / ``long`` / ``short_year`` / ``short`` (month first, full or cut month name,
    with or without a year), ``day_of_month`` (day first), ``iso``, ``bare_day`` ("to 17th", in the month
    written before), ``relative`` ("three days later")."""
    found: list[tuple[int, int, datetime.date, str]] = []
    month_at: list[tuple[int, int]] = []  # (position, month) of every month-bearing mention
    for match in _MONTH_DAY.finditer(query):
        month, day = _MONTH_INDEX[_month_key(match.group(1))], int(match.group(2))
        year = int(match.group(3)) if match.group(3) else _year_near(query, match.end())
        month_at.append((match.start(), month))
        full = match.group(1).lower().rstrip(".") in {m.lower() for m in MONTHS}
        style = ("long" if full else "short") + ("_year" if match.group(3) else "")
        if (date := _date(year, month, day)) is not None:
            found.append((match.start(), match.end(), date, style))
    for match in _DAY_MONTH.finditer(query):
        day, month = int(match.group(1)), _MONTH_INDEX[_month_key(match.group(2))]
        year = int(match.group(3)) if match.group(3) else _year_near(query, match.end())
        month_at.append((match.start(), month))
        if (date := _date(year, month, day)) is not None:
            found.append((match.start(), match.end(), date, "day_of_month"))
    for match in _ISO_IN_TEXT.finditer(query):
        if (date := _date(int(match.group(1)), int(match.group(2)), int(match.group(3)))) is not None:
            found.append((match.start(), match.end(), date, "iso"))
    for match in _BARE_DAY.finditer(query):
        earlier = [month for position, month in month_at if position < match.start()]
        if earlier:
            date = _date(_year_near(query, match.end()), earlier[-1], int(match.group(1)))
            if date is not None:
                found.append((match.start(1), match.end(), date, "bare_day"))
    for match in _RELATIVE.finditer(query):
        earlier = [date for position, _, date, _ in sorted(found, key=lambda f: f[0]) if position < match.start()]
        if not earlier:
            continue
        if match.group(3):
            days = 1
        else:
            count = match.group(1).lower()
            amount = int(count) if count.isdigit() else _WORD_VALUE[count]
            days = amount * (7 if match.group(2).lower().startswith("week") else 1)
        found.append((match.start(), match.end(), earlier[-1] + datetime.timedelta(days=days), "relative"))
    return [(start, end, date.isoformat(), style) for start, end, date, style in sorted(found, key=lambda f: f[0])]


def dates_in(query: str) -> set[str]:
    """Every date the query states, as ``YYYY-MM-DD`` (see the module docstring for the rules)."""
    return {iso for _, _, iso, _ in date_spans(query)}


def say_date_as(date: datetime.date, style: str) -> str | None:
    """A date in one of :func:`date_spans`' styles (None for ``relative``, which needs an anchor)."""
    month = MONTHS[date.month - 1]
    day = f"{date.day}{day_suffix(date.day)}"
    return {"long_year": f"{month} {day}, {date.year}", "long": f"{month} {day}",
            "short_year": f"{month[:3]} {date.day}, {date.year}", "short": f"{month[:3]} {date.day}",
            "day_of_month": f"{day} of {month}", "iso": date.isoformat(), "bare_day": day}.get(style)


def _month_key(text: str) -> str:
    text = text.lower().rstrip(".")
    return text if text in _MONTH_INDEX else text[:3]


_TIME_12 = re.compile(r"\b(\d{1,2})(?::(\d{2}))?\s*(a\.?m\.?|p\.?m\.?)(?![a-z])", re.I)
_TIME_OCLOCK = re.compile(r"\b(\d{1,2}|" + "|".join(NUMBER_WORDS[1:13]) + r")\s+o'clock"
                          r"(?:\s+in\s+the\s+(morning|afternoon|evening)|\s+at\s+night)?", re.I)
_TIME_AT = re.compile(r"\bat\s+(\d{1,2})\s+in\s+the\s+(morning|afternoon|evening)\b", re.I)
_TIME_24 = re.compile(r"\b([01]?\d|2[0-3]):([0-5]\d)\b(?!\s*(?:a\.?m|p\.?m))", re.I)


def time_spans(query: str) -> list[tuple[int, int, str, str]]:
    """(start, end, ``HH:MM``, style) of every clock time the query states; styles ``12h`` ("2 pm",
    "2:30 pm"), ``oclock`` ("2 o'clock in the afternoon"), ``24h`` ("14:00"), ``noon``, ``midnight``."""
    found: list[tuple[int, int, str, str]] = []

    def add(match: re.Match, hour: int, minute: int, part: str | None, style: str) -> None:
        part = (part or "").lower().replace(".", "")
        if part in ("pm", "afternoon", "evening", "night") and hour < 12:
            hour += 12
        if part in ("am", "morning") and hour == 12:
            hour = 0
        if 0 <= hour < 24:
            found.append((match.start(), match.end(), f"{hour:02d}:{minute:02d}", style))

    for match in _TIME_12.finditer(query):
        add(match, int(match.group(1)), int(match.group(2) or 0), match.group(3), "12h")
    for match in _TIME_OCLOCK.finditer(query):
        word = match.group(1).lower()
        hour = int(word) if word.isdigit() else _WORD_VALUE[word]
        night = "night" if match.group(0).lower().endswith("night") else None
        add(match, hour, 0, match.group(2) or night, "oclock")
    for match in _TIME_AT.finditer(query):
        add(match, int(match.group(1)), 0, match.group(2), "oclock")
    for match in _TIME_24.finditer(query):
        add(match, int(match.group(1)), int(match.group(2)), None, "24h")
    for match in re.finditer(r"\b(noon|midday)\b", query, re.I):
        found.append((match.start(), match.end(), "12:00", "noon"))
    for match in re.finditer(r"\bmidnight\b", query, re.I):
        found.append((match.start(), match.end(), "00:00", "midnight"))
    return sorted(found)


def times_in(query: str) -> set[str]:
    """Every clock time the query states, as ``HH:MM``."""
    return {clock for _, _, clock, _ in time_spans(query)}


def say_time_as(hour: int, minute: int, style: str) -> str | None:
    """A time in one of :func:`time_spans`' styles (None when the style cannot write it: noon at 3 pm)."""
    twelve, half = hour % 12 or 12, ("am" if hour < 12 else "pm")
    if style == "12h":
        return f"{twelve}:{minute:02d} {half}" if minute else f"{twelve} {half}"
    if style == "oclock":
        if minute:
            return None
        return f"{twelve} o'clock " + ("in the morning" if hour < 12 else "in the afternoon" if hour < 18 else "in the evening")
    if style == "24h":
        return f"{hour:02d}:{minute:02d}"
    if style == "noon":
        return "noon" if (hour, minute) == (12, 0) else None
    if style == "midnight":
        return "midnight" if (hour, minute) == (0, 0) else None
    return None


def numbers_in(query: str) -> set[int]:
    """Integers the query writes as digits or as words up to twenty."""
    found = {int(m) for m in re.findall(r"(?<![\d.])\d+(?![\d.]\d)", query)}
    for word in re.findall(r"[a-z]+", query.lower()):
        if word in _WORD_VALUE and word not in ("a", "an"):
            found.add(_WORD_VALUE[word])
    return found


def _normal(text: str) -> str:
    return re.sub(r"\s+", " ", text.lower()).strip()


def stated(parameter: str, value: Any, query: str) -> bool:
    """Whether ``query`` states ``value`` (of ``parameter``) verbatim or in a form this module knows."""
    if isinstance(value, list):
        return all(stated(parameter, item, query) for item in value)
    if isinstance(value, dict):
        return all(stated(f"{parameter}.{k}", v, query) for k, v in value.items())
    text = _normal(query)
    raw = value if isinstance(value, str) else None
    if raw is not None and raw.strip() and _normal(raw) in text:
        return True
    if parse_iso_date(value) is not None:
        return value in dates_in(query)
    if parse_clock(value) is not None:
        hour, minute = parse_clock(value)
        return f"{hour:02d}:{minute:02d}" in times_in(query)
    phrases = enum_phrases(parameter, value)
    if phrases:
        return any(re.search(rf"\b{re.escape(p)}\b", text) for p in phrases) or \
            _normal(str(value).replace("_", " ")) in text
    if isinstance(value, bool):
        return True  # a flag is implied by the request; no surface form to check
    if isinstance(value, int):
        return value in numbers_in(query)
    if isinstance(value, float):
        return _normal(repr(value)) in text or _normal(str(value)) in text
    if isinstance(value, str) and re.fullmatch(r"\d+(\s*,\s*\d+)*", value.strip()):
        ages = [int(v) for v in re.findall(r"\d+", value)]
        return all(age in numbers_in(query) for age in ages)
    if value is None:
        return True
    return False


def all_stated(items: Iterable[tuple[str, Any]], query: str) -> list[tuple[str, Any]]:
    """The (parameter, value) pairs ``query`` does not state."""
    return [(parameter, value) for parameter, value in items if not stated(parameter, value, query)]

"""Birth dates: ISO and the common written forms, impossible and implausible dates refused, young
buyers flagged. Pure: the reference date is always passed in, never read from a clock."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

from consentry.quality.problems import Normalised, Outcome, Problem, problem, warning
from consentry.quality.text import clean_text

EARLIEST_YEAR = 1900
MAX_AGE = 120
MIN_AGE = 16

MONTHS = {
    name: number
    for number, names in enumerate(
        [
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sep", "sept"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ],
        start=1,
    )
    for name in names
}

_TIME = r"(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?: ?(?:Z|[+-]\d{2}:?\d{2}))?)?"
_YMD = re.compile(rf"^(\d{{4}})([-/.])(\d{{1,2}})\2(\d{{1,2}}){_TIME}$", re.IGNORECASE)
_COMPACT = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_DOTTED = re.compile(r"^(\d{1,2})\.(\d{1,2})\.(\d{4})$")  # day first wherever dots are used
_SLASHED = re.compile(r"^(\d{1,2})([-/])(\d{1,2})\2(\d{4})$")
_TWO_DIGIT_YEAR = re.compile(r"^\d{1,2}[-/.]\d{1,2}[-/.]\d{2}$")
_DAY_MONTH = re.compile(r"^(\d{1,2})(?:st|nd|rd|th)? ([a-z]+) (\d{4})$")
_MONTH_DAY = re.compile(r"^([a-z]+) (\d{1,2})(?:st|nd|rd|th)? (\d{4})$")
_WORD_SEPARATORS = re.compile(r"[\s,./-]+")


def _p(code: str, message: str) -> Problem:
    return problem(f"date.{code}", message)


_UNPARSEABLE = _p("unparseable", "The value is not a date in a recognised format.")
_AMBIGUOUS = _p("ambiguous", "The date could be day/month or month/day.")


def _make(year: int, month: int, day: int) -> date | Problem:
    try:
        return date(year, month, day)
    except ValueError:
        return _p("impossible", "No such day exists in the calendar.")


def parse_date(text: str, *, day_first: bool | None = None) -> date | Problem:
    """A calendar date from ISO 8601 (optionally with a time, whose date part is taken as
    written), ``YYYYMMDD``, ``DD.MM.YYYY``, ``DD/MM/YYYY`` or ``MM/DD/YYYY`` (``day_first``
    decides; None refuses an ambiguous one), or an English month name ("17 May 1990",
    "May 17, 1990")."""
    if m := _YMD.match(text):
        return _make(int(m[1]), int(m[3]), int(m[4]))
    if m := _COMPACT.match(text):
        return _make(int(m[1]), int(m[2]), int(m[3]))
    if m := _DOTTED.match(text):
        return _make(int(m[3]), int(m[2]), int(m[1]))
    if m := _SLASHED.match(text):
        a, b, year = int(m[1]), int(m[3]), int(m[4])
        if a > 12 or (day_first and b <= 12):
            return _make(year, b, a)
        if b > 12 or day_first is False or a == b:
            return _make(year, a, b)
        return _AMBIGUOUS
    if _TWO_DIGIT_YEAR.match(text):
        return _p("two_digit_year", "The year has two digits: the century is unknown.")
    words = " ".join(_WORD_SEPARATORS.split(text.lower())).strip()
    if m := _DAY_MONTH.match(words):
        day, month, year = int(m[1]), MONTHS.get(m[2]), int(m[3])
    elif m := _MONTH_DAY.match(words):
        month, day, year = MONTHS.get(m[1]), int(m[2]), int(m[3])
    else:
        return _UNPARSEABLE
    if month is None:
        return _UNPARSEABLE
    return _make(year, month, day)


def age_on(born: date, today: date) -> int:
    """Completed years of age on ``today`` (a 29 February birthday counts from 1 March)."""
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


def validate_birth_date(
    value: Any,
    *,
    today: date,
    min_age: int = MIN_AGE,
    max_age: int = MAX_AGE,
    day_first: bool | None = None,
) -> Outcome[date]:
    """A plausible date of birth on the reference date ``today``.

    Errors: ``date.unparseable``, ``date.ambiguous``, ``date.two_digit_year``,
    ``date.impossible`` (30 February), ``date.before_1900``, ``date.in_future``,
    ``date.too_old`` (older than ``max_age``). Warning: ``date.under_min_age`` (a buyer younger
    than ``min_age``, kept but flagged).
    """
    if isinstance(value, datetime):
        parsed: date | Problem = value.date()
    elif isinstance(value, date):
        parsed = value
    elif isinstance(value, str):
        text = clean_text(value)
        if not text:
            return _p("empty", "The date is empty.")
        parsed = _UNPARSEABLE if len(text) > 64 else parse_date(text, day_first=day_first)
    else:
        return _p("not_text", "The date is not text or a date.")
    if isinstance(parsed, Problem):
        return parsed
    if parsed.year < EARLIEST_YEAR:
        return _p("before_1900", f"The date is before {EARLIEST_YEAR}.")
    if parsed > today:
        return _p("in_future", "The date of birth is in the future.")
    age = age_on(parsed, today)
    if age > max_age:
        return _p("too_old", f"The date of birth makes the person older than {max_age}.")
    if age < min_age:
        return Normalised(
            parsed,
            (warning("date.under_min_age", f"The person would be younger than {min_age}."),),
        )
    return Normalised(parsed)

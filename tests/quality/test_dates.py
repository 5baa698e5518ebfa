"""Birth dates: formats, impossible and implausible dates."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consentry.quality import Normalised, Problem, age_on, parse_date, validate_birth_date
from tests.quality.strategies import any_text, anything, near

TODAY = date(2026, 6, 15)
MONTH_NAMES = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]


@pytest.mark.parametrize(
    "raw",
    [
        "1990-05-17",
        "1990-5-17",
        "1990/05/17",
        "1990.05.17",
        "19900517",
        "1990-05-17T00:00:00Z",
        "1990-05-17T00:00:00.000Z",
        "1990-05-17 13:45:10+02:00",
        "17.05.1990",
        "17/05/1990",
        "05/17/1990",
        "17-05-1990",
        "17 May 1990",
        "17th May 1990",
        "May 17, 1990",
        "may 17 1990",
        "17-May-1990",
        " 1990-05-17 ",
        date(1990, 5, 17),
        datetime(1990, 5, 17, 23, 59),
    ],
)
def test_formats(raw: str | date) -> None:
    outcome = validate_birth_date(raw, today=TODAY)
    assert isinstance(outcome, Normalised), outcome
    assert outcome.value == date(1990, 5, 17)
    assert outcome.warnings == ()


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("1990-02-30", "date.impossible"),
        ("30.02.1990", "date.impossible"),
        ("1990-04-31", "date.impossible"),
        ("2001-02-29", "date.impossible"),  # not a leap year
        ("1900-02-29", "date.impossible"),  # centuries are not, unless divisible by 400
        ("1990-13-01", "date.impossible"),
        ("1990-00-10", "date.impossible"),
        ("31 Feb 1990", "date.impossible"),
        ("2026-06-16", "date.in_future"),
        ("2090-01-01", "date.in_future"),
        ("1899-12-31", "date.before_1900"),
        ("1066-10-14", "date.before_1900"),
        ("1905-06-15", "date.too_old"),  # 121 today
        ("1880-01-01", "date.before_1900"),
        ("05/06/1990", "date.ambiguous"),
        ("17/05/90", "date.two_digit_year"),
        ("yesterday", "date.unparseable"),
        ("17 Mai 1990", "date.unparseable"),
        ("1990", "date.unparseable"),
        ("", "date.empty"),
        (None, "date.not_text"),
        (19900517, "date.not_text"),
    ],
)
def test_impossible_and_implausible_dates(raw: object, code: str) -> None:
    outcome = validate_birth_date(raw, today=TODAY)
    assert isinstance(outcome, Problem)
    assert outcome.code == code
    assert not isinstance(raw, str) or not raw or raw not in outcome.message


def test_age_limits_are_inclusive() -> None:
    turns_121_today = date(TODAY.year - 121, TODAY.month, TODAY.day)
    oldest = turns_121_today + timedelta(days=1)  # 120 years and 364 days old
    assert age_on(oldest, TODAY) == 120
    assert isinstance(validate_birth_date(oldest, today=TODAY), Normalised)
    too_old = validate_birth_date(turns_121_today, today=TODAY)
    assert isinstance(too_old, Problem) and too_old.code == "date.too_old"
    assert isinstance(validate_birth_date(TODAY, today=TODAY), Normalised)  # born today: flagged


def test_young_buyers_are_flagged_not_refused() -> None:
    sixteen = date(TODAY.year - 16, TODAY.month, TODAY.day)
    assert validate_birth_date(sixteen, today=TODAY) == Normalised(sixteen)
    young = validate_birth_date(sixteen + timedelta(days=1), today=TODAY)
    assert isinstance(young, Normalised)
    assert young.codes == ("date.under_min_age",)
    # The minimum is configurable.
    assert validate_birth_date(sixteen, today=TODAY, min_age=18).codes == ("date.under_min_age",)  # type: ignore[union-attr]
    assert validate_birth_date(sixteen, today=TODAY, min_age=0) == Normalised(sixteen)


def test_leap_day_birthdays_age_on_the_first_of_march() -> None:
    born = date(2008, 2, 29)
    assert age_on(born, date(2026, 2, 28)) == 17
    assert age_on(born, date(2026, 3, 1)) == 18


def test_month_abbreviations() -> None:
    assert parse_date("17 Sept. 1990") == date(1990, 9, 17)
    assert parse_date("Dec 1st, 1999") == date(1999, 12, 1)
    assert parse_date("1 Smarch 1999") == parse_date("nonsense")


def test_day_first_settles_ambiguous_dates() -> None:
    assert parse_date("05/06/1990", day_first=True) == date(1990, 6, 5)
    assert parse_date("05/06/1990", day_first=False) == date(1990, 5, 6)
    assert parse_date("06/06/1990") == date(1990, 6, 6)  # both readings agree
    assert parse_date("13/06/1990", day_first=False) == date(1990, 6, 13)  # only one reading


@given(
    anything | any_text | near("0123456789/-.: TZMayJunSeptember", 24), st.booleans() | st.none()
)
def test_never_raises(value: object, day_first: bool | None) -> None:
    outcome = validate_birth_date(value, today=TODAY, day_first=day_first)
    assert isinstance(outcome, Normalised | Problem)


@given(any_text | near("0123456789/-.: TZMayJunSeptember", 24))
def test_idempotent(value: str) -> None:
    first = validate_birth_date(value, today=TODAY)
    if isinstance(first, Normalised):
        assert validate_birth_date(first.value, today=TODAY) == first
        assert validate_birth_date(first.value.isoformat(), today=TODAY) == first


FORMATS = [
    lambda d: d.isoformat(),
    lambda d: f"{d:%Y%m%d}",
    lambda d: f"{d.year}/{d.month}/{d.day}",
    lambda d: f"{d:%d.%m.%Y}",
    lambda d: f"{d.day} {MONTH_NAMES[d.month - 1]} {d.year}",
    lambda d: f"{MONTH_NAMES[d.month - 1][:3]} {d.day}, {d.year}",
    lambda d: f"{d.isoformat()}T12:30:00Z",
]


@given(
    st.dates(min_value=date(1906, 6, 15), max_value=TODAY),
    st.sampled_from(FORMATS),
    st.booleans(),
)
def test_round_trip_through_written_forms(born: date, fmt: object, day_first: bool) -> None:
    written = fmt(born)  # type: ignore[operator]
    outcome = validate_birth_date(written, today=TODAY, min_age=0)
    assert outcome == Normalised(born), written
    slashed = f"{born:%d/%m/%Y}" if day_first else f"{born:%m/%d/%Y}"
    assert validate_birth_date(slashed, today=TODAY, min_age=0, day_first=day_first) == Normalised(
        born
    )


@given(st.dates(min_value=date(1900, 1, 1), max_value=date(2100, 1, 1)))
def test_every_accepted_date_is_plausible(born: date) -> None:
    outcome = validate_birth_date(born, today=TODAY)
    plausible = date(1900, 1, 1) <= born <= TODAY and age_on(born, TODAY) <= 120
    assert isinstance(outcome, Normalised) == plausible

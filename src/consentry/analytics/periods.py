"""Periods of the KPIs: a checked date range cut into days, Monday weeks or calendar months,
and the period numbers ``analytics.metrics`` gives them. Pure and light: the pages and routes
check a request with it before ``analytics.kpi_service`` (the engine) is loaded."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal

from consentry.analytics.cohorts import EPOCH, month_of_day
from consentry.errors import FieldError, Invalid
from consentry.platform.db import utcnow

Interval = Literal["day", "week", "month"]
INTERVALS: tuple[Interval, ...] = ("day", "week", "month")


def day_of(moment: datetime) -> int:
    """The UTC day number (days since 1970-01-01) of a moment."""
    return math.floor(moment.timestamp() / 86_400)


MAX_RANGE = timedelta(days=3 * 366)
MAX_PERIODS = 400
DEFAULT_SPAN = timedelta(days=365)


@dataclass(frozen=True, slots=True)
class Range:
    """A checked request: ``[since, until)`` in UTC, cut into periods of ``interval``."""

    since: datetime
    until: datetime
    interval: Interval

    @classmethod
    def of(cls, since: datetime, until: datetime, interval: Interval) -> Range:
        """Refuse an empty, reversed, too long or too finely cut range (naming the field)."""
        since, until = _utc(since), _utc(until)
        if since >= until:
            raise Invalid("since must be before until", [FieldError("since", "not before until")])
        if until - since > MAX_RANGE:
            raise Invalid("the range is too long", [FieldError("since", "at most three years")])
        found = cls(since, until, interval)
        if len(found.periods()) > MAX_PERIODS:
            raise Invalid(
                "too many periods", [FieldError("interval", f"at most {MAX_PERIODS} periods")]
            )
        return found

    @classmethod
    def default(cls, since: datetime | None, until: datetime | None, interval: Interval) -> Range:
        """``of`` with the defaults: until now, since a year before ``until``."""
        end = until or utcnow()
        return cls.of(since or end - DEFAULT_SPAN, end, interval)

    @property
    def first_day(self) -> int:
        return day_of(self.since)

    @property
    def last_day(self) -> int:
        return day_of(self.until - timedelta(microseconds=1))

    def periods(self) -> list[int]:
        """The period numbers the range touches, in order."""
        first = period_of_day(self.first_day, self.interval)
        last = period_of_day(self.last_day, self.interval)
        return list(range(first, last + 1))


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def period_of_day(day: int, interval: Interval) -> int:
    """The period number (as ``metrics.period_number`` computes it) of a day number."""
    if interval == "month":
        return month_of_day(day)
    if interval == "week":
        return (day + 3) // 7
    return day


def period_start(period: int, interval: Interval) -> date:
    """The first day of a period number."""
    if interval == "month":
        return date(period // 12, period % 12 + 1, 1)
    if interval == "week":
        return EPOCH + timedelta(days=period * 7 - 3)
    return EPOCH + timedelta(days=period)

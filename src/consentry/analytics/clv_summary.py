"""Per-customer purchase summaries (frequency, recency, T, monetary value) from transactions.

The input is three plain, equally long arrays: who bought (any sortable ids: integers or
strings), when (``datetime64`` of any resolution, naive UTC, or float days since an epoch) and
how much; Arrow or DuckDB columns convert to these without copying much. Everything is
vectorised (one sort), no Python loop over customers.

Conventions (those of Fader & Hardie's CDNOW analyses, and of the ``lifetimes`` library with
daily periods):

- purchases on the same calendar day are one purchase (a period): their amounts are summed;
  float days are floored to whole days;
- ``frequency`` = distinct purchase days - 1 (the repeat purchases);
- ``recency`` = time from the first to the last purchase day, ``T`` = time from the first
  purchase day to the end of calibration, both in days or weeks (days / 7);
- ``monetary_value`` = the mean value of the repeat purchases (the first day's purchase is left
  out, as the spend model requires), 0.0 for customers without a repeat purchase. Amounts are
  taken as they are: zero and negative values (refunds) pull the mean down; the spend model
  leaves customers whose mean is <= 0 out of its fit (see ``clv_spend``).

Purchases after ``calibration_end`` are ignored by ``summary``; ``calibration_holdout`` counts
them per customer for back-testing. Customers whose first purchase is after the calibration end
are not in the calibration summary.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from consentry.analytics.clv_base import DAYS_PER_UNIT, FloatArray, TimeUnit

Moment = np.datetime64 | dt.datetime | dt.date | str | float | int
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class CustomerSummary:
    """One row per customer, sorted by ``customer``; times in ``unit``."""

    customer: npt.NDArray[Any]
    frequency: FloatArray
    recency: FloatArray
    T: FloatArray
    monetary_value: FloatArray
    unit: TimeUnit

    def __len__(self) -> int:
        return len(self.customer)


@dataclass(frozen=True, slots=True)
class Backtest:
    """A calibration summary and what each of its customers did in the holdout period.

    ``holdout_frequency`` counts distinct purchase days in (calibration_end, holdout_end];
    ``holdout_value`` sums their amounts; ``duration`` is the holdout's length in ``unit``.
    """

    calibration: CustomerSummary
    holdout_frequency: FloatArray
    holdout_value: FloatArray
    duration: float


def _days(when: npt.ArrayLike) -> IntArray:
    """Whole day numbers (days since 1970-01-01 for datetimes; floor of float days)."""
    array = np.asarray(when)
    if np.issubdtype(array.dtype, np.datetime64):
        if np.any(np.isnat(array)):
            raise ValueError("timestamps hold NaT")
        return array.astype("datetime64[D]").astype(np.int64)
    values = np.asarray(array, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError("timestamps hold NaN or infinite values")
    return np.floor(values).astype(np.int64)


def _day(moment: Moment, datetimes: bool) -> int:
    """One moment as a day number, in the same scale as ``_days`` of the timestamps."""
    if isinstance(moment, dt.datetime) and moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
    if isinstance(moment, dt.date | str | np.datetime64):
        if not datetimes:
            raise ValueError("timestamps are float days: give the end as a number of days too")
        day = moment.astype("datetime64[D]") if isinstance(moment, np.datetime64) else moment
        return int(np.datetime64(day, "D").astype(np.int64))
    return int(np.floor(float(moment)))


def _inputs(
    customer: npt.ArrayLike, when: npt.ArrayLike, amount: npt.ArrayLike | None
) -> tuple[npt.NDArray[Any], IntArray, FloatArray, bool]:
    ids = np.asarray(customer)
    days = _days(when)
    datetimes = np.issubdtype(np.asarray(when).dtype, np.datetime64)
    values = np.zeros(len(days)) if amount is None else np.asarray(amount, dtype=np.float64)
    if not (ids.ndim == days.ndim == values.ndim == 1) or not (
        len(ids) == len(days) == len(values)
    ):
        raise ValueError("customer, when and amount must be one-dimensional and equally long")
    if not np.all(np.isfinite(values)):
        raise ValueError("amount holds NaN or infinite values")
    return ids, days, values, datetimes


def summary(
    customer: npt.ArrayLike,
    when: npt.ArrayLike,
    amount: npt.ArrayLike | None = None,
    *,
    calibration_end: Moment | None = None,
    unit: TimeUnit = "weeks",
) -> CustomerSummary:
    """Frequency, recency, T and monetary value of every customer who bought by ``calibration_end``.

    ``calibration_end`` is a day that is part of calibration (purchases on it count); it defaults
    to the last purchase day. ``amount`` may be omitted (monetary values are then 0).
    """
    ids, days, values, datetimes = _inputs(customer, when, amount)
    if calibration_end is not None:
        end = _day(calibration_end, datetimes)
    else:
        end = int(days.max()) if len(days) else 0
    keep = days <= end
    return _summarise(ids[keep], days[keep], values[keep], end, unit)


def _summarise(
    ids: npt.NDArray[Any], days: IntArray, values: FloatArray, end: int, unit: TimeUnit
) -> CustomerSummary:
    per_unit = DAYS_PER_UNIT[unit]
    customers, inverse = np.unique(ids, return_inverse=True)
    inverse = inverse.reshape(-1).astype(np.int64)
    n = len(customers)
    if n == 0:
        empty = np.zeros(0)
        return CustomerSummary(customers, empty, empty, empty, empty, unit)
    first_day = int(days.min())
    key = inverse * (int(days.max()) - first_day + 1) + (days - first_day)  # (customer, day)
    order = np.argsort(key)
    who, day, value = inverse[order], days[order], values[order]
    starts = np.flatnonzero(np.r_[True, (who[1:] != who[:-1]) | (day[1:] != day[:-1])])
    period_who = who[starts]
    period_day = day[starts]
    period_value = np.add.reduceat(value, starts)
    firsts = np.flatnonzero(np.r_[True, period_who[1:] != period_who[:-1]])
    lasts = np.r_[firsts[1:] - 1, len(period_who) - 1]
    frequency = (np.bincount(period_who, minlength=n) - 1).astype(np.float64)
    repeat_value = np.bincount(period_who, weights=period_value, minlength=n) - period_value[firsts]
    monetary = np.divide(
        repeat_value, frequency, out=np.zeros(n, dtype=np.float64), where=frequency > 0
    )
    return CustomerSummary(
        customer=customers,
        frequency=frequency,
        recency=(period_day[lasts] - period_day[firsts]) / per_unit,
        T=(end - period_day[firsts]) / per_unit,
        monetary_value=monetary,
        unit=unit,
    )


def calibration_holdout(
    customer: npt.ArrayLike,
    when: npt.ArrayLike,
    amount: npt.ArrayLike | None = None,
    *,
    calibration_end: Moment,
    holdout_end: Moment,
    unit: TimeUnit = "weeks",
) -> Backtest:
    """The calibration summary up to ``calibration_end`` and each of those customers' purchase
    days (and value) in (calibration_end, holdout_end], for back-testing a model."""
    ids, days, values, datetimes = _inputs(customer, when, amount)
    end = _day(calibration_end, datetimes)
    stop = _day(holdout_end, datetimes)
    if stop <= end:
        raise ValueError("holdout_end must come after calibration_end")
    keep = days <= end
    calibration = _summarise(ids[keep], days[keep], values[keep], end, unit)
    n = len(calibration)
    later = (days > end) & (days <= stop)
    h_ids, h_days, h_values = ids[later], days[later], values[later]
    position = np.searchsorted(calibration.customer, h_ids) if n else np.zeros(0, np.int64)
    known = position < n
    known[known] = calibration.customer[position[known]] == h_ids[known]
    who, day = position[known].astype(np.int64), h_days[known]
    pairs = np.unique(np.column_stack([who, day]), axis=0) if len(who) else np.zeros((0, 2))
    counts = np.bincount(pairs[:, 0].astype(np.int64), minlength=n).astype(np.float64)
    spent = np.bincount(who, weights=h_values[known], minlength=n).astype(np.float64)
    return Backtest(calibration, counts, spent, (stop - end) / DAYS_PER_UNIT[unit])

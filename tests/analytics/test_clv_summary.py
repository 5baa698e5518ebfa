"""Purchase summaries for the CLV models: a hand-computed shop, and properties of any purchases."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consentry.analytics.clv import calibration_holdout, summary

# Three customers, worked out by hand (days since the first purchase; calibration ends Jan 31):
#   "ann": Jan 1 (10 + 5, same day: one purchase of 15), Jan 15 (20), Jan 29 (-4, a refund)
#          -> 2 repeat purchases, recency 28 days, T 30 days, repeat mean (20 - 4) / 2 = 8
#   "bob": Jan 3 (7) only in calibration; Feb 1 and Feb 2 (holdout)
#          -> 0 repeat purchases, recency 0, T 28, monetary 0; holdout 2 days, 9 spent
#   "cy":  first purchase Feb 10, after calibration -> not in the calibration summary
CUSTOMER = np.array(["ann", "ann", "ann", "ann", "bob", "bob", "bob", "cy"])
WHEN = np.array(
    [
        "2024-01-01T09:00",
        "2024-01-01T21:30",
        "2024-01-15T12:00",
        "2024-01-29T00:00",
        "2024-01-03T23:59",
        "2024-02-01T08:00",
        "2024-02-02T08:00",
        "2024-02-10T10:00",
    ],
    dtype="datetime64[m]",
)
AMOUNT = np.array([10.0, 5.0, 20.0, -4.0, 7.0, 4.0, 5.0, 99.0])


def test_summary_matches_the_hand_computed_shop_in_days() -> None:
    s = summary(CUSTOMER, WHEN, AMOUNT, calibration_end="2024-01-31", unit="days")
    assert s.customer.tolist() == ["ann", "bob"]
    assert s.frequency.tolist() == [2.0, 0.0]
    assert s.recency.tolist() == [28.0, 0.0]
    assert s.T.tolist() == [30.0, 28.0]
    assert s.monetary_value.tolist() == [8.0, 0.0]
    assert s.unit == "days"
    assert len(s) == 2


def test_summary_in_weeks_divides_days_by_seven() -> None:
    s = summary(CUSTOMER, WHEN, AMOUNT, calibration_end=np.datetime64("2024-01-31"))
    assert s.unit == "weeks"
    np.testing.assert_allclose(s.recency, [4.0, 0.0])
    np.testing.assert_allclose(s.T, [30 / 7, 4.0])


def test_calibration_end_accepts_dates_and_aware_datetimes() -> None:
    plain = summary(CUSTOMER, WHEN, AMOUNT, calibration_end="2024-01-31", unit="days")
    for end in (
        dt.date(2024, 1, 31),
        dt.datetime(2024, 1, 31, 18, 0),
        dt.datetime(2024, 2, 1, 1, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))),
    ):
        other = summary(CUSTOMER, WHEN, AMOUNT, calibration_end=end, unit="days")
        assert other.T.tolist() == plain.T.tolist()


def test_default_end_is_the_last_purchase_day() -> None:
    s = summary(CUSTOMER, WHEN, AMOUNT, unit="days")
    assert s.customer.tolist() == ["ann", "bob", "cy"]
    assert s.T.tolist() == [40.0, 38.0, 0.0]
    assert s.frequency.tolist() == [2.0, 2.0, 0.0]
    assert s.monetary_value[1] == pytest.approx(4.5)


def test_float_days_are_floored_to_days() -> None:
    s = summary([1, 1, 1], [0.2, 0.9, 3.5], [1.0, 2.0, 6.0], calibration_end=7.0, unit="days")
    assert (s.frequency[0], s.recency[0], s.T[0], s.monetary_value[0]) == (1.0, 3.0, 7.0, 6.0)
    with pytest.raises(ValueError, match="float days"):
        summary([1], [0.5], [1.0], calibration_end="2024-01-01")


def test_amount_is_optional() -> None:
    s = summary(CUSTOMER, WHEN, calibration_end="2024-01-31", unit="days")
    assert s.monetary_value.tolist() == [0.0, 0.0]
    assert s.frequency.tolist() == [2.0, 0.0]


def test_empty_input_gives_an_empty_summary() -> None:
    s = summary(np.array([], dtype=np.int64), np.array([], dtype="datetime64[D]"), [])
    assert len(s) == 0


def test_calibration_holdout_counts_distinct_holdout_days() -> None:
    bt = calibration_holdout(
        CUSTOMER, WHEN, AMOUNT, calibration_end="2024-01-31", holdout_end="2024-02-29", unit="days"
    )
    assert bt.calibration.customer.tolist() == ["ann", "bob"]
    assert bt.holdout_frequency.tolist() == [0.0, 2.0]
    assert bt.holdout_value.tolist() == [0.0, 9.0]
    assert bt.duration == 29.0
    with pytest.raises(ValueError, match="after"):
        calibration_holdout(CUSTOMER, WHEN, calibration_end="2024-01-31", holdout_end="2024-01-31")


@pytest.mark.parametrize(
    ("customer", "when", "amount", "message"),
    [
        ([1, 2], np.array(["2024-01-01"], dtype="datetime64[D]"), [1.0, 2.0], "equally long"),
        ([1], np.array(["NaT"], dtype="datetime64[D]"), [1.0], "NaT"),
        ([1], [float("nan")], [1.0], "NaN"),
        ([1], [1.0], [float("inf")], "amount"),
    ],
)
def test_bad_inputs_are_refused(
    customer: list[int], when: object, amount: list[float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        summary(customer, when, amount)  # type: ignore[arg-type]


purchases = st.lists(
    st.tuples(
        st.integers(0, 5),  # customer
        st.integers(0, 400),  # day
        st.floats(-50, 500, allow_nan=False, allow_infinity=False),
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(purchases, st.integers(0, 450), st.sampled_from(["days", "weeks"]))
def test_summary_properties_on_any_purchases(
    rows: list[tuple[int, int, float]], end: int, unit: str
) -> None:
    customer = np.array([r[0] for r in rows])
    day = np.array([r[1] for r in rows], dtype=np.float64)
    amount = np.array([r[2] for r in rows])
    s = summary(customer, day, amount, calibration_end=float(end), unit=unit)  # type: ignore[arg-type]
    per_unit = 1.0 if unit == "days" else 7.0
    seen = sorted({c for c, d, _ in rows if d <= end})
    assert s.customer.tolist() == seen
    for i, c in enumerate(s.customer):
        mine = [(d, a) for cc, d, a in rows if cc == c and d <= end]
        days = sorted({d for d, _ in mine})
        assert 0 <= s.frequency[i] <= len(mine) - 1
        assert s.frequency[i] == len(days) - 1
        assert 0 <= s.recency[i] <= s.T[i]
        assert s.recency[i] * per_unit == pytest.approx(days[-1] - days[0])
        assert s.T[i] * per_unit == pytest.approx(end - days[0])
        repeat = [a for d, a in mine if d != days[0]]
        if repeat:
            assert s.monetary_value[i] == pytest.approx(
                sum(repeat) / (len(days) - 1), rel=1e-9, abs=1e-9
            )
        else:
            assert s.monetary_value[i] == 0.0

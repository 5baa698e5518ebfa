"""The statistics of journey attribution, against published values and scipy's own tests."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import chi2_contingency
from scipy.stats.contingency import relative_risk

from consentry.journeys.attribution import Orders, Tally, uplift, wilson


def test_wilson_matches_newcombe_1998() -> None:
    # Newcombe, Statistics in Medicine 17 (1998) 857-872, table I: 81/263 -> 0.2553 to 0.3662
    low, high = wilson(81, 263)
    assert (round(low, 4), round(high, 4)) == (0.2553, 0.3662)
    assert wilson(0, 10)[0] == 0.0 and round(wilson(0, 10)[1], 4) == 0.2775


def test_the_difference_interval_is_newcombes_hybrid_score() -> None:
    # Newcombe, Statistics in Medicine 17 (1998) 873-890, table II, method 10:
    # 56/70 - 48/80 = 0.2000, 95 % interval 0.0524 to 0.3339; 9/10 - 3/10: 0.1705 to 0.8090
    found = uplift(56, 70, 48, 80)
    assert found is not None
    assert round(found.absolute, 4) == 0.2
    assert (round(found.absolute_low, 4), round(found.absolute_high, 4)) == (0.0524, 0.3339)
    assert found.significant
    small = uplift(9, 10, 3, 10)
    assert small is not None
    assert (round(small.absolute_low, 4), round(small.absolute_high, 4)) == (0.1705, 0.809)


def test_the_relative_interval_and_p_value_agree_with_scipy() -> None:
    found = uplift(120, 1000, 90, 1000)
    assert found is not None
    rr = relative_risk(120, 1000, 90, 1000)
    interval = rr.confidence_interval(confidence_level=0.95)
    assert found.relative == pytest.approx(rr.relative_risk - 1)
    assert found.relative_low == pytest.approx(interval.low - 1)
    assert found.relative_high == pytest.approx(interval.high - 1)
    chi2 = chi2_contingency([[120, 880], [90, 910]], correction=False)
    assert found.p_value == pytest.approx(chi2.pvalue)
    assert found.significant and 0 < found.absolute_low < found.absolute_high  # p = 0.029
    close = uplift(100, 1000, 90, 1000)
    assert close is not None and not close.significant
    assert close.absolute_low < 0 < close.absolute_high and close.p_value > 0.05


def test_edge_cases() -> None:
    assert uplift(3, 10, 0, 0) is None and uplift(0, 0, 3, 10) is None
    none_converted = uplift(0, 50, 0, 50)
    assert none_converted is not None
    assert none_converted.absolute == 0 and none_converted.p_value == 1.0
    assert none_converted.relative is None and not none_converted.significant
    one_side = uplift(5, 50, 0, 50)
    assert one_side is not None and one_side.relative is None and one_side.absolute == 0.1
    assert one_side.document()["relative_ci95"] is None


@given(a=st.integers(0, 500), n=st.integers(1, 500), b=st.integers(0, 500), m=st.integers(1, 500))
def test_the_interval_holds_the_estimate(a: int, n: int, b: int, m: int) -> None:
    a, b = min(a, n), min(b, m)
    found = uplift(a, n, b, m)
    assert found is not None
    assert -1 <= found.absolute_low <= found.absolute + 1e-12
    assert found.absolute - 1e-12 <= found.absolute_high <= 1
    assert 0 <= found.p_value <= 1
    if found.relative is not None:
        assert found.relative_low is not None and found.relative_high is not None
        assert found.relative_low <= found.relative + 1e-9 <= found.relative_high + 2e-9
        assert math.isfinite(found.relative_high)


def test_orders_are_found_within_the_window_inclusive() -> None:
    orders = Orders()
    for at, cents in ((100.0, 1), (200.0, 2), (300.0, 3), (50.0, 9)):
        orders.add("p", at, cents, "EUR")
    orders.add("q", 150.0, 5, "USD")
    orders.seal()
    assert [o[1] for o in orders.within("p", 100.0, 200.0)] == [1, 2, 3]
    assert [o[1] for o in orders.within("p", 101.0, 99.0)] == [2]
    assert orders.within("nobody", 0.0, 1e9) == []
    tally = Tally()
    tally.count(orders.within("p", 100.0, 200.0))
    tally.count(orders.within("q", 0.0, 100.0))
    tally.count(orders.within("q", 100.0, 100.0))
    assert tally.document() == {
        "total": 3,
        "converted": 2,
        "rate": round(2 / 3, 6),
        "revenue": {"EUR": 0.06, "USD": 0.05},
    }

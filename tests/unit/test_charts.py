"""The server-rendered charts' geometry and the analytics page's KPI tiles (pure functions)."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from consentry.analytics.periods import Range
from consentry.web.analytics_page import ends_mid_period, tiles
from consentry.web.charts import HEAT_STEPS, bar_chart, heat, rate_chart, sparkline


def test_bars_scale_to_the_largest_count_from_the_baseline() -> None:
    chart = bar_chart(["0", "10", "20"], [5, 10, 0], width=300, height=140)
    half, tallest, empty = chart.bars
    assert tallest.height == 140 - 12 - 28  # the whole plot height
    assert half.height == tallest.height / 2
    assert empty.height == 0 and empty.y == chart.bottom
    assert all(b.y + b.height == chart.bottom for b in chart.bars)
    assert [label for _, label in chart.gridlines] == ["0", "5", "10"]
    xs = [b.x for b in chart.bars]
    assert xs == sorted(xs) and all(b.width > 0 for b in chart.bars)


def test_an_empty_histogram_draws_no_bar() -> None:
    chart = bar_chart([], [])
    assert chart.bars == [] and chart.ticks == []


@given(st.lists(st.one_of(st.none(), st.floats(-1e6, 1e6)), max_size=40))
def test_a_sparkline_stays_inside_its_box(values: list[float | None]) -> None:
    points = sparkline(values, width=140, height=32)
    known = [v for v in values if v is not None]
    if len(known) < 2:
        assert points == ""
        return
    pairs = [tuple(map(float, p.split(","))) for p in points.split()]
    assert len(pairs) == len(known)
    assert all(0 <= x <= 140 and 0 <= y <= 32 for x, y in pairs)
    highest = max(known)
    top = min(y for _, y in pairs)
    assert pairs[known.index(highest)][1] == top  # the largest value is drawn highest


@given(st.one_of(st.none(), st.floats(-1, 2)))
def test_heat_shades_are_ordered_and_bounded(share: float | None) -> None:
    shade = heat(share)
    assert 0 <= shade < HEAT_STEPS
    if share is not None and share > 0:
        assert shade >= 1 and heat(min(1.0, share + 0.2)) >= shade
    assert heat(1.0) == HEAT_STEPS - 1


def test_rate_chart_skips_missing_values() -> None:
    chart = rate_chart(["a", "b", "c"], {"rate": {"a": 0.5, "c": 1.0}})
    assert [(p, v) for _, _, p, v in chart.lines[0].dots] == [("a", 0.5), ("c", 1.0)]


def _kpis(revenues: list[float | None], rates: list[float | None]) -> dict[str, object]:
    periods = [
        {"revenue": r, "consent_rate": c, "period": f"2026-0{i + 1}-01"}
        for i, (r, c) in enumerate(zip(revenues, rates, strict=True))
    ]
    totals = {"revenue": sum(r or 0 for r in revenues), "consent_rate": 0.5}
    return {"currency": "EUR", "totals": totals, "periods": periods}


def test_tiles_compare_the_last_complete_period_with_the_one_before() -> None:
    found = {t.key: t for t in tiles(_kpis([100.0, 150.0, 10.0], [0.5, 0.6, 0.2]))}
    assert found["revenue"].value == "260.00 EUR"
    assert found["revenue"].change == "-93.3%" and found["revenue"].rising is False
    assert found["consent_rate"].change == "-40.0 pts"

    partial = {
        t.key: t for t in tiles(_kpis([100.0, 150.0, 10.0], [0.5, 0.6, 0.2]), partial_last=True)
    }
    assert partial["revenue"].change == "+50.0%" and partial["revenue"].rising is True
    assert partial["consent_rate"].change == "+10.0 pts"
    assert partial["orders"].value == "—" and partial["orders"].change is None


def test_a_range_ending_now_ends_mid_period() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert not ends_mid_period(Range.of(start, datetime(2026, 3, 1, tzinfo=UTC), "month"))
    assert ends_mid_period(Range.of(start, datetime(2026, 3, 2, tzinfo=UTC), "month"))
    assert ends_mid_period(Range.of(start, datetime(2026, 3, 1, 12, tzinfo=UTC), "month"))
    assert not ends_mid_period(Range.of(start, datetime(2026, 3, 2, tzinfo=UTC), "day"))
    assert not ends_mid_period(Range.of(start, datetime(2026, 3, 2, tzinfo=UTC), "week"))  # Monday

"""Server-rendered SVG line charts: pure geometry, drawn by the templates. No JavaScript needed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

PALETTE = ("#1f5fbf", "#c0392b", "#1e8449", "#7d3c98", "#b9770e", "#117a8b", "#5d6d7e")


@dataclass(frozen=True, slots=True)
class Line:
    """One series: its label, colour, SVG points and the dots with their values."""

    label: str
    colour: str
    points: str
    dots: list[tuple[float, float, str, float]]  # x, y, period, value


@dataclass(frozen=True, slots=True)
class Chart:
    """A chart of values in [0, 1] over ordered periods."""

    width: int
    height: int
    left: int
    bottom: int
    periods: list[tuple[float, str]]  # x and label of each period
    gridlines: list[tuple[float, str]]  # y and label
    lines: list[Line]


def rate_chart(
    periods: Sequence[str],
    series: Mapping[str, Mapping[str, float | None]],
    *,
    width: int = 720,
    height: int = 260,
    max_lines: int = len(PALETTE),
) -> Chart:
    """Lay out rates (0..1) per period for each series; a missing value breaks no line, it is
    skipped. At most ``max_lines`` series, the ones with the most values first."""
    left, right, top, bottom = 48, 16, 12, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    step = plot_w / max(1, len(periods) - 1)
    xs = {p: left + (i * step if len(periods) > 1 else plot_w / 2) for i, p in enumerate(periods)}

    def y_of(value: float) -> float:
        return top + (1 - min(1.0, max(0.0, value))) * plot_h

    ranked = sorted(
        series.items(), key=lambda kv: (-sum(v is not None for v in kv[1].values()), kv[0])
    )
    lines = []
    for index, (label, values) in enumerate(ranked[:max_lines]):
        dots = [
            (round(xs[p], 1), round(y_of(v), 1), p, v)
            for p in periods
            if (v := values.get(p)) is not None
        ]
        points = " ".join(f"{x},{y}" for x, y, _, _ in dots)
        lines.append(Line(label, PALETTE[index % len(PALETTE)], points, dots))
    grid = [(round(y_of(f), 1), f"{int(f * 100)}%") for f in (0.0, 0.25, 0.5, 0.75, 1.0)]
    every = max(1, len(periods) // 8)  # at most about eight labels on the axis
    labels = [(round(xs[p], 1), p) for i, p in enumerate(periods) if i % every == 0]
    return Chart(width, height, left, height - bottom, labels, grid, lines)


@dataclass(frozen=True, slots=True)
class Bar:
    """One bar: its box, its label on the axis and the value it stands for."""

    x: float
    y: float
    width: float
    height: float
    label: str
    value: int


@dataclass(frozen=True, slots=True)
class BarChart:
    """Counts in bins, drawn as bars from the baseline, with a gridline scale."""

    width: int
    height: int
    left: int
    bottom: int
    bars: list[Bar]
    gridlines: list[tuple[float, str]]  # y and label
    ticks: list[tuple[float, str]]  # x and label under the axis


def bar_chart(
    labels: Sequence[str], counts: Sequence[int], *, width: int = 720, height: int = 240
) -> BarChart:
    """Lay out one bar per bin, scaled to the largest count; at most about eight axis labels."""
    left, right, top, bottom = 48, 16, 12, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    slot = plot_w / max(1, len(counts))
    highest = max(counts, default=0) or 1
    bars = []
    for i, (label, count) in enumerate(zip(labels, counts, strict=True)):
        h = count / highest * plot_h
        x = left + i * slot + slot * 0.1
        bars.append(
            Bar(
                round(x, 1),
                round(top + plot_h - h, 1),
                round(slot * 0.8, 1),
                round(h, 1),
                label,
                count,
            )
        )
    grid = []
    for fraction in (0.0, 0.5, 1.0):
        y = round(top + (1 - fraction) * plot_h, 1)
        grid.append((y, f"{round(highest * fraction):,}"))
    every = max(1, len(bars) // 8)
    ticks = [(b.x + b.width / 2, b.label) for i, b in enumerate(bars) if i % every == 0]
    return BarChart(width, height, left, height - bottom, bars, grid, ticks)


def sparkline(values: Sequence[float | None], *, width: int = 140, height: int = 32) -> str:
    """The SVG points of a small trend line; missing values are skipped (empty: no line)."""
    known = [(i, v) for i, v in enumerate(values) if v is not None]
    if len(known) < 2:
        return ""
    low = min(v for _, v in known)
    high = max(v for _, v in known)
    span = (high - low) or 1.0
    step = (width - 4) / max(1, len(values) - 1)
    return " ".join(
        f"{round(2 + i * step, 1)},{round(2 + (1 - (v - low) / span) * (height - 4), 1)}"
        for i, v in known
    )


HEAT_STEPS = 10


def heat(share: float | None) -> int:
    """The shade (0..9) of a share in [0, 1] for a heat map cell; the stylesheet has one class
    per shade (``heat-0`` .. ``heat-9``), since the pages' CSP allows no inline styles."""
    if share is None or share <= 0:
        return 0
    return min(HEAT_STEPS - 1, 1 + int(share * (HEAT_STEPS - 1)))

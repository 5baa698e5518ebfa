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

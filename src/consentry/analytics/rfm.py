"""RFM segments: the usual named groups from recency and frequency/monetary scores. Pure code.

Scores are 1-5, 5 best (``analytics.metrics.rfm_scores``). A customer's segment is read from
their recency score R and FM, the mean of the frequency and monetary scores rounded half up, on
the grid below (rows R 5..1, columns FM 1..5).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True, slots=True)
class Segment:
    """A named RFM segment, what it means and what to do about it."""

    name: str
    meaning: str
    action: str


SEGMENTS: dict[str, Segment] = {
    s.name: s
    for s in (
        Segment(
            "Champions", "bought recently, buy often and spend the most", "reward; ask for reviews"
        ),
        Segment("Loyal", "buy regularly and spend well", "upsell; loyalty programme"),
        Segment(
            "Potential Loyalist", "recent customers with growing frequency", "membership offers"
        ),
        Segment("New", "bought for the first time very recently", "onboarding; early support"),
        Segment(
            "Promising", "recent shoppers who have not spent much yet", "build brand awareness"
        ),
        Segment("Need Attention", "average recency, frequency and spend", "limited-time offers"),
        Segment(
            "About to Sleep",
            "below average recency and frequency",
            "reactivate with popular products",
        ),
        Segment("At Risk", "spent well and often, but long ago", "personal win-back messages"),
        Segment(
            "Can't Lose", "were among the best, have not come back", "win them back at any cost"
        ),
        Segment(
            "Hibernating", "last bought long ago, rarely and cheaply", "offer relevant products"
        ),
        Segment("Lost", "lowest recency, frequency and spend", "ignore or one last try"),
    )
}

# rows: R = 5, 4, 3, 2, 1; columns: FM = 1..5
_GRID = (
    ("New", "Potential Loyalist", "Potential Loyalist", "Champions", "Champions"),
    ("Promising", "Potential Loyalist", "Potential Loyalist", "Loyal", "Champions"),
    ("About to Sleep", "About to Sleep", "Need Attention", "Loyal", "Loyal"),
    ("Hibernating", "Hibernating", "At Risk", "At Risk", "Can't Lose"),
    ("Lost", "Hibernating", "At Risk", "At Risk", "Can't Lose"),
)
NAMES: tuple[str, ...] = tuple(SEGMENTS)
_CODES = np.array([[NAMES.index(name) for name in row] for row in _GRID], dtype=np.int8)


def fm_score(f: npt.NDArray[np.int64], m: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """The mean of the frequency and monetary scores, rounded half up."""
    return (f + m + 1) // 2


def fm_of(f: int, m: int) -> int:
    """``fm_score`` of one customer."""
    return (f + m + 1) // 2


def segment_of(r: int, f: int, m: int) -> str:
    """The segment of one customer's scores."""
    return NAMES[int(_CODES[5 - r, fm_of(f, m) - 1])]


def segments(
    r: npt.NDArray[np.int64], f: npt.NDArray[np.int64], m: npt.NDArray[np.int64]
) -> npt.NDArray[np.object_]:
    """The segment names of many customers' scores at once."""
    codes = _CODES[5 - r, fm_score(f, m) - 1]
    return np.array(NAMES, dtype=object)[codes]

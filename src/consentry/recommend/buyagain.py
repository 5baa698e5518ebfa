"""Buy again: the customer's own repeat-purchase pattern.

Score of item i for user u, over the orders of u that hold i:

    frequency = sum over those orders of 0.5 ** (age / half_life)    (the count without decay)
    score     = frequency * (1 + timing_weight * due(u, i))           (replenishable items)

``due`` is 1 when the time since the last purchase equals the expected re-order interval and
falls off on a log scale either side: exp(-ln(elapsed / interval)^2 / (2 * 0.5^2)). The interval
is the user's own mean gap for that item when they bought it at least twice, else the item's
median gap between two purchases by the same customer (no timing term when neither exists).
Without decay, ties in count are broken by recency: 0.5 / (1 + orders since the last purchase)
is added, which never reorders different counts.

Ages are measured from ``now``: a single time for everyone (serving), or by default each user's
own last order (offline evaluation, where users' clocks are not aligned).
"""

from __future__ import annotations

from typing import Self

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike

from consentry.recommend._arrays import (
    SECONDS_PER_DAY,
    BoolArray,
    CsrMatrix,
    FloatArray,
    SparseScorer,
    as_index_array,
)
from consentry.recommend.history import PurchaseHistory
from consentry.recommend.interactions import Events

DUE_WIDTH = 0.5


def due_closeness(elapsed_days: FloatArray, interval_days: FloatArray) -> FloatArray:
    """1 when ``elapsed == interval``, falling off with the log of their ratio; 0 where the
    interval is unknown (NaN) or not positive."""
    ok = np.isfinite(interval_days) & (interval_days > 0)
    ratio = np.divide(
        np.maximum(elapsed_days, 0.0) + 0.5,
        interval_days + 0.5,
        out=np.ones_like(elapsed_days),
        where=ok,
    )
    closeness = np.exp(-(np.log(ratio) ** 2) / (2 * DUE_WIDTH**2))
    return np.asarray(np.where(ok, closeness, 0.0), dtype=np.float64)


class BuyAgain(SparseScorer):
    """Recommends each customer's own past purchases, ranked by (decayed) frequency and, for
    replenishable items, by how due a re-order is. Users without purchases get nothing: fill
    from :class:`MostPopular`."""

    def __init__(
        self,
        *,
        half_life_days: float | None = None,
        timing_weight: float = 1.0,
        replenishable: ArrayLike | None = None,
    ) -> None:
        if half_life_days is not None and half_life_days <= 0:
            raise ValueError("half_life_days must be > 0")
        self.half_life_days = half_life_days
        self.timing_weight = timing_weight
        self.replenishable: BoolArray | None = (
            None if replenishable is None else np.asarray(replenishable, dtype=bool)
        )
        self.n_items = 0
        self.history: PurchaseHistory | None = None
        self.user_scores: CsrMatrix = None

    def fit(self, purchases: Events | PurchaseHistory, now: float | None = None) -> Self:
        """Fit on order lines (``Events`` of purchases, one timestamp per order) or on their
        already computed history."""
        history = (
            purchases if isinstance(purchases, PurchaseHistory) else PurchaseHistory.of(purchases)
        )
        self.history = history
        self.n_items = history.n_items
        if self.replenishable is not None and self.replenishable.size != history.n_items:
            raise ValueError("replenishable needs one flag per item")
        user_now = history.last_order_at if now is None else np.full(history.n_users, float(now))
        pair_now = user_now[history.users]
        if self.half_life_days is None:
            frequency = history.count.copy()
            since = (history.n_orders[history.users] - 1 - history.last_order).astype(np.float64)
            frequency += 0.5 / (1.0 + since)
        else:
            frequency = history.decayed_count(self.half_life_days, user_now)
        if self.replenishable is not None and self.timing_weight:
            elapsed = (pair_now - history.last_at) / SECONDS_PER_DAY
            due = due_closeness(elapsed, history.reorder_interval_days())
            due = due * self.replenishable[history.items]
            frequency = frequency * (1.0 + self.timing_weight * due)
        self.user_scores = history.matrix(frequency)
        return self

    def scores(self, users: ArrayLike) -> CsrMatrix:
        user_ix = as_index_array(users, "users")
        known = user_ix < self.user_scores.shape[0]
        rows = sp.csr_matrix(self.user_scores[np.where(known, user_ix, 0)])
        if not known.all():
            rows = sp.csr_matrix(sp.diags(known.astype(np.float64)) @ rows)
            rows.eliminate_zeros()
        return rows

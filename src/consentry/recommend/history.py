"""Purchase history per (user, item): how often, when first and last, in which order, and the
item's re-order interval. Computed once, vectorised, from order lines; buy-again and the hybrid
read it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from consentry.recommend._arrays import (
    SECONDS_PER_DAY,
    CsrMatrix,
    FloatArray,
    IntArray,
    csr,
    pair_keys,
)
from consentry.recommend.interactions import Events


@dataclass(frozen=True)
class PurchaseHistory:
    """Per user: ``n_orders``, ``last_order_at``. Per (user, item) pair, sorted by user then
    item and laid out as a CSR structure (``indptr`` over users, ``items``): ``count`` (orders
    holding the item), ``first_order`` / ``last_order`` (0-based order number within the user's
    orders), ``first_at`` / ``last_at`` (timestamps). Per item: ``buyers``, ``orders``
    (order lines), ``interval_days`` (median days between two consecutive purchases by the same
    customer, NaN when nobody bought it twice). Per distinct order line: ``line_pair`` (its
    pair) and ``line_at`` (its timestamp)."""

    n_users: int
    n_items: int
    n_orders: IntArray
    last_order_at: FloatArray
    indptr: IntArray
    users: IntArray
    items: IntArray
    count: FloatArray
    first_order: IntArray
    last_order: IntArray
    first_at: FloatArray
    last_at: FloatArray
    buyers: FloatArray
    orders: FloatArray
    interval_days: FloatArray
    line_pair: IntArray
    line_at: FloatArray

    @classmethod
    def of(cls, purchases: Events) -> PurchaseHistory:
        nu, ni = purchases.n_users, purchases.n_items
        users, items, ts = purchases.users, purchases.items, purchases.timestamps
        # one line per (user, order, item): an item twice in one order counts once
        line_order = np.lexsort((items, ts, users))
        users, items, ts = users[line_order], items[line_order], ts[line_order]
        if users.size:
            distinct = np.ones(users.size, dtype=bool)
            distinct[1:] = (
                (users[1:] != users[:-1]) | (ts[1:] != ts[:-1]) | (items[1:] != items[:-1])
            )
            users, items, ts = users[distinct], items[distinct], ts[distinct]
        # orders: distinct (user, timestamp), numbered within the user
        new_order = np.ones(users.size, dtype=bool)
        new_order[1:] = (users[1:] != users[:-1]) | (ts[1:] != ts[:-1])
        order_id = np.cumsum(new_order) - 1
        order_user = users[new_order]
        n_orders = np.bincount(order_user, minlength=nu).astype(np.int64)
        first_order_of_user = np.concatenate(([0], np.cumsum(n_orders)[:-1]))
        order_number = (order_id - first_order_of_user[users]).astype(np.int64)
        last_order_at = np.full(nu, np.nan)
        if users.size:
            np.fmax.at(last_order_at, users, ts)

        # pairs: sort the lines by (user, item, time)
        by_pair = np.lexsort((ts, items, users))
        pu, pi, pt, po = users[by_pair], items[by_pair], ts[by_pair], order_number[by_pair]
        starts = np.ones(pu.size, dtype=bool)
        starts[1:] = (pu[1:] != pu[:-1]) | (pi[1:] != pi[:-1])
        start_at = np.nonzero(starts)[0]
        end_at = np.append(start_at[1:], pu.size) - 1
        pair_users, pair_items = pu[start_at], pi[start_at]
        count = (end_at - start_at + 1).astype(np.float64)
        indptr = np.concatenate(([0], np.cumsum(np.bincount(pair_users, minlength=nu))))

        # re-order intervals: gaps between consecutive lines of the same pair
        same_pair = ~starts[1:] if pu.size else np.zeros(0, dtype=bool)
        gaps = (pt[1:] - pt[:-1])[same_pair] / SECONDS_PER_DAY
        gap_items = pi[1:][same_pair]
        interval = np.full(ni, np.nan)
        if gaps.size:
            order = np.lexsort((gaps, gap_items))
            gi, gv = gap_items[order], gaps[order]
            first = np.searchsorted(gi, np.arange(ni), side="left")
            last = np.searchsorted(gi, np.arange(ni), side="right")
            has = last > first
            lo = (first + (last - first - 1) // 2)[has]
            hi = (first + (last - first) // 2)[has]
            interval[has] = (gv[lo] + gv[hi]) / 2.0

        return cls(
            n_users=nu,
            n_items=ni,
            n_orders=n_orders,
            last_order_at=last_order_at,
            indptr=indptr.astype(np.int64),
            users=pair_users.astype(np.int64),
            items=pair_items.astype(np.int64),
            count=count,
            first_order=po[start_at].astype(np.int64),
            last_order=po[end_at].astype(np.int64),
            first_at=pt[start_at],
            last_at=pt[end_at],
            buyers=np.bincount(pair_items, minlength=ni).astype(np.float64),
            orders=np.bincount(pi, minlength=ni).astype(np.float64),
            interval_days=interval,
            line_pair=(np.cumsum(starts) - 1).astype(np.int64),
            line_at=pt,
        )

    @property
    def keys(self) -> IntArray:
        """Sorted keys ``user * n_items + item`` of the pairs."""
        return pair_keys(self.users, self.items, self.n_items)

    def matrix(self, values: FloatArray | None = None) -> CsrMatrix:
        """A user x item CSR matrix of per-pair values (default: the counts)."""
        data = self.count if values is None else values
        return csr(self.users, self.items, data, (self.n_users, self.n_items))

    def decayed_count(self, half_life_days: float, user_now: FloatArray) -> FloatArray:
        """Per pair: the sum over its orders of 0.5 ** (age / half-life), age from each user's
        ``now``."""
        line_users = self.users[self.line_pair]
        age = np.maximum(user_now[line_users] - self.line_at, 0.0)
        weights = np.exp2(-age / (half_life_days * SECONDS_PER_DAY))
        counts = np.bincount(self.line_pair, weights=weights, minlength=self.users.size)
        return np.asarray(counts, dtype=np.float64)

    def reorder_interval_days(self) -> FloatArray:
        """Per pair: the user's own mean days between two purchases of the item when they
        bought it at least twice, else the item's ``interval_days`` (NaN: neither known)."""
        own = np.divide(
            (self.last_at - self.first_at) / SECONDS_PER_DAY,
            self.count - 1.0,
            out=np.full(self.count.size, np.nan),
            where=self.count > 1,
        )
        return np.asarray(np.where(np.isnan(own), self.interval_days[self.items], own))

    def order_gap_days(self) -> FloatArray:
        """Per user: the mean number of days between two of their orders (NaN-free: the
        median over users for those with a single order, 0 when nobody has two)."""
        first_at = np.full(self.n_users, np.inf)
        if self.users.size:
            np.minimum.at(first_at, self.users, self.first_at)
        span = np.where(np.isfinite(first_at), self.last_order_at - first_at, 0.0)
        gaps = np.divide(
            span / SECONDS_PER_DAY,
            self.n_orders - 1.0,
            out=np.full(self.n_users, np.nan),
            where=self.n_orders > 1,
        )
        known = gaps[np.isfinite(gaps)]
        fallback = float(np.median(known)) if known.size else 0.0
        return np.asarray(np.where(np.isfinite(gaps), gaps, fallback), dtype=np.float64)

    def user_repeat_rate(self) -> FloatArray:
        """Per user: the share of order lines that re-bought an item bought before (smoothed
        towards 0.5 for users with few lines)."""
        lines = np.bincount(self.users, weights=self.count, minlength=self.n_users)
        repeats = np.bincount(self.users, weights=self.count - 1.0, minlength=self.n_users)
        return np.asarray((repeats + 1.0) / (lines + 2.0), dtype=np.float64)

    def item_repeat_rate(self) -> FloatArray:
        """Per item: the share of its order lines that were re-purchases (smoothed)."""
        return np.asarray((self.orders - self.buyers + 1.0) / (self.orders + 2.0), dtype=np.float64)

"""Interactions: the (user, item, weight, timestamp) arrays the caller reads from the store, their
weighting by kind of event, optional time decay, and the CSR user x item matrix the models use.

Users and items are dense indices (0..n-1) the caller assigns; timestamps are seconds (any
epoch, float). The lines of one order share the order's timestamp: an order is a distinct
(user, timestamp) pair wherever baskets matter (buy-again, the hybrid, the next-basket split).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np
from numpy.typing import ArrayLike

from consentry.recommend._arrays import (
    SECONDS_PER_DAY,
    BoolArray,
    CsrMatrix,
    FloatArray,
    IntArray,
    as_index_array,
    csr,
)


class EventKind(IntEnum):
    """What a customer did with a product; the caller maps its event names onto these."""

    VIEW = 0
    CART = 1
    ORDER = 2


@dataclass(frozen=True)
class InteractionWeights:
    """How much each kind of event counts towards a user's interest in an item."""

    view: float = 1.0
    cart: float = 3.0
    order: float = 10.0

    def __post_init__(self) -> None:
        for name in ("view", "cart", "order"):
            value = getattr(self, name)
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"weight {name} must be finite and >= 0")

    def of(self, kinds: ArrayLike) -> FloatArray:
        """The weight of each event from its kind (an array of ``EventKind`` values)."""
        table = np.array([self.view, self.cart, self.order], dtype=np.float64)
        codes = as_index_array(kinds, "kinds")
        if codes.size and codes.max() >= table.size:
            raise ValueError("unknown event kind")
        return table[codes]


def decay(
    timestamps: ArrayLike, half_life_days: float | None, now: float | None = None
) -> FloatArray:
    """Each event's decay factor: 0.5 ** (age / half-life), age from ``now`` (default: the
    newest timestamp), events after ``now`` counting as new. 1 everywhere without a half-life."""
    ts = np.asarray(timestamps, dtype=np.float64)
    if half_life_days is None or ts.size == 0:
        return np.ones(ts.size, dtype=np.float64)
    if half_life_days <= 0:
        raise ValueError("half_life_days must be > 0")
    reference = float(ts.max()) if now is None else float(now)
    age = np.maximum(reference - ts, 0.0) / (half_life_days * SECONDS_PER_DAY)
    return np.asarray(np.exp2(-age), dtype=np.float64)


@dataclass(frozen=True)
class Events:
    """Interactions as parallel arrays, validated. Build with :meth:`from_arrays`."""

    users: IntArray
    items: IntArray
    weights: FloatArray
    timestamps: FloatArray
    n_users: int
    n_items: int

    @classmethod
    def from_arrays(
        cls,
        users: ArrayLike,
        items: ArrayLike,
        weights: ArrayLike | None = None,
        timestamps: ArrayLike | None = None,
        *,
        n_users: int | None = None,
        n_items: int | None = None,
    ) -> Events:
        """Events from arrays; weights default to 1, timestamps to 0, sizes to max index + 1."""
        u = as_index_array(users, "users")
        i = as_index_array(items, "items")
        if u.size != i.size:
            raise ValueError("users and items must have the same length")
        w = (
            np.ones(u.size, dtype=np.float64)
            if weights is None
            else np.asarray(weights, dtype=np.float64).reshape(-1)
        )
        t = (
            np.zeros(u.size, dtype=np.float64)
            if timestamps is None
            else np.asarray(timestamps, dtype=np.float64).reshape(-1)
        )
        if w.size != u.size or t.size != u.size:
            raise ValueError("weights and timestamps must have one value per event")
        if not (np.isfinite(w).all() and np.isfinite(t).all()):
            raise ValueError("weights and timestamps must be finite")
        if (w < 0).any():
            raise ValueError("weights must be >= 0")
        nu = int(u.max()) + 1 if u.size else 0
        ni = int(i.max()) + 1 if i.size else 0
        if n_users is not None:
            if n_users < nu:
                raise ValueError("a user index is out of range")
            nu = n_users
        if n_items is not None:
            if n_items < ni:
                raise ValueError("an item index is out of range")
            ni = n_items
        return cls(u, i, w, t, nu, ni)

    @classmethod
    def from_kinds(
        cls,
        users: ArrayLike,
        items: ArrayLike,
        kinds: ArrayLike,
        timestamps: ArrayLike | None = None,
        *,
        weights: InteractionWeights | None = None,
        n_users: int | None = None,
        n_items: int | None = None,
    ) -> Events:
        """Events weighted by their kind (views, add-to-cart, orders)."""
        table = weights or InteractionWeights()
        return cls.from_arrays(
            users, items, table.of(kinds), timestamps, n_users=n_users, n_items=n_items
        )

    def __len__(self) -> int:
        return int(self.users.size)

    def select(self, mask: BoolArray) -> Events:
        """The events where ``mask`` is true, same shape."""
        return Events(
            self.users[mask],
            self.items[mask],
            self.weights[mask],
            self.timestamps[mask],
            self.n_users,
            self.n_items,
        )

    def matrix(self, *, half_life_days: float | None = None, now: float | None = None) -> CsrMatrix:
        """The user x item CSR matrix of summed (optionally decayed) weights, float32."""
        values = self.weights * decay(self.timestamps, half_life_days, now)
        return csr(self.users, self.items, values, (self.n_users, self.n_items)).astype(np.float32)


def interaction_matrix(
    users: ArrayLike,
    items: ArrayLike,
    weights: ArrayLike | None = None,
    timestamps: ArrayLike | None = None,
    *,
    shape: tuple[int, int] | None = None,
    half_life_days: float | None = None,
    now: float | None = None,
) -> CsrMatrix:
    """The user x item CSR matrix from arrays (weights summed per pair, optionally decayed)."""
    n_users, n_items = shape if shape is not None else (None, None)
    events = Events.from_arrays(users, items, weights, timestamps, n_users=n_users, n_items=n_items)
    return events.matrix(half_life_days=half_life_days, now=now)


def last_order_split(purchases: Events) -> tuple[Events, Events]:
    """Next-basket split: each user's last order (latest timestamp) apart from what came before.

    Returns (history, last orders). A user with a single order has it as the last order and no
    history.
    """
    if len(purchases) == 0:
        return purchases, purchases
    latest = np.full(purchases.n_users, -np.inf)
    np.maximum.at(latest, purchases.users, purchases.timestamps)
    is_last = purchases.timestamps == latest[purchases.users]
    return purchases.select(~is_last), purchases.select(is_last)

"""The store read into the arrays the recommendation models take (an adapter: it calls other
capabilities' columnar feeds, never their tables).

- Users are *unified* profiles: a merged profile's orders and activity count for the person
  (``profiles.merged_members``), and a user's dense index maps back to its unified profile id.
- Purchases are order lines (``commerce.feed.order_line_rows``: cancelled and fully refunded
  orders and guest orders left out), one timestamp per order.
- Browsing is ``Product Viewed`` and ``Product Added`` events (Segment e-commerce spec v2) of
  the last ``browsing_days``, weighted by kind (``InteractionWeights``); the product id is read
  from each event's sealed payload (``ingest.feed.product_activity_rows``).
- Items are the catalogue's products (``products``: category, availability) and any product an
  order or event names that the catalogue lacks.
- Segments are the RFM segments of the latest analytics run (``customer_scores``), where there
  is one: the popular-in-segment fallback.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy.orm import Session

from consentry.analytics import service as analytics
from consentry.commerce import feed as commerce_feed
from consentry.ingest import feed as ingest_feed
from consentry.profiles import service as profiles
from consentry.recommend.interactions import EventKind, Events, InteractionWeights

VIEWED = "Product Viewed"
ADDED = "Product Added"
BROWSING_EVENTS = {VIEWED: EventKind.VIEW, ADDED: EventKind.CART}

Strings = NDArray[np.str_]
Ints = NDArray[np.int64]


@dataclass(frozen=True)
class ShopData:
    """What the models learn from, as dense arrays (see the module docstring)."""

    profile_ids: Strings  # user index -> unified profile id
    product_ids: Strings  # item index -> product id (sorted)
    categories: Ints  # item -> category index, -1 none
    category_names: list[str]
    in_stock: NDArray[np.bool_]  # item -> False when known to be out of stock
    purchases: Events
    browsing: Events  # views and cart adds, weighted by kind
    views: Events  # views only (weight 1): "also viewed"
    segments: Ints  # user -> segment index, -1 none
    segment_names: list[str]
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def n_users(self) -> int:
        return int(self.profile_ids.size)

    @property
    def n_items(self) -> int:
        return int(self.product_ids.size)


def _unified(session: Session, workspace_id: str) -> dict[str, str]:
    merged: dict[str, str] = {}
    for part in profiles.merged_members(session=session, workspace_id=workspace_id):
        merged.update(part)
    return merged


def _codes(values: Sequence[str], vocabulary: Strings) -> Ints:
    """The index of each value in the sorted ``vocabulary`` (every value is in it)."""
    if not values:
        return np.zeros(0, dtype=np.int64)
    return np.searchsorted(vocabulary, np.asarray(values, dtype=np.str_)).astype(np.int64)


def _strings(values: Iterable[str]) -> Strings:
    found = np.asarray(sorted(set(values)), dtype=np.str_)
    return found if found.size else np.zeros(0, dtype="<U1")


def read(
    session: Session,
    workspace_id: str,
    *,
    weights: InteractionWeights,
    browsing_since: datetime,
) -> ShopData:
    """Read the workspace's purchases, browsing, catalogue and segments (see the module)."""
    unified = _unified(session, workspace_id)

    order_users: list[str] = []
    order_items: list[str] = []
    order_times: list[float] = []
    for rows in commerce_feed.order_line_rows(session=session, workspace_id=workspace_id):
        for profile_id, product_id, placed_at, _quantity in rows:
            order_users.append(unified.get(str(profile_id), str(profile_id)))
            order_items.append(str(product_id))
            order_times.append(float(placed_at))  # type: ignore[arg-type]

    seen_users: list[str] = []
    seen_items: list[str] = []
    seen_times: list[float] = []
    seen_kinds: list[int] = []
    for rows in ingest_feed.product_activity_rows(
        session=session,
        workspace_id=workspace_id,
        events=BROWSING_EVENTS,
        since=browsing_since,
    ):
        for profile_id, ts, event, product_id in rows:
            seen_users.append(unified.get(str(profile_id), str(profile_id)))
            seen_items.append(str(product_id))
            seen_times.append(float(ts))  # type: ignore[arg-type]
            seen_kinds.append(int(BROWSING_EVENTS[str(event)]))

    catalogue: dict[str, tuple[str | None, bool | None]] = {}
    for rows in commerce_feed.product_rows(session=session, workspace_id=workspace_id):
        for product_id, category, _price, in_stock in rows:
            catalogue[str(product_id)] = (
                None if category is None else str(category),
                None if in_stock is None else bool(in_stock),
            )

    segment_of: dict[str, str] = {}
    for segment_rows in analytics.segment_rows(session=session, workspace_id=workspace_id):
        segment_of.update(segment_rows)

    profile_ids = _strings([*order_users, *seen_users])
    product_ids = _strings([*catalogue, *order_items, *seen_items])
    n_users, n_items = int(profile_ids.size), int(product_ids.size)

    category_names = sorted({c for c, _ in catalogue.values() if c is not None})
    category_index = {name: i for i, name in enumerate(category_names)}
    categories = np.full(n_items, -1, dtype=np.int64)
    in_stock = np.ones(n_items, dtype=bool)
    for product_id, (category, stock) in catalogue.items():
        at = int(np.searchsorted(product_ids, product_id))
        if category is not None:
            categories[at] = category_index[category]
        if stock is False:
            in_stock[at] = False

    segment_names = sorted(set(segment_of.values()))
    segment_index = {name: i for i, name in enumerate(segment_names)}
    segments = np.asarray(
        [segment_index.get(segment_of.get(str(p), ""), -1) for p in profile_ids.tolist()],
        dtype=np.int64,
    )

    purchases = Events.from_arrays(
        _codes(order_users, profile_ids),
        _codes(order_items, product_ids),
        None,
        np.asarray(order_times, dtype=np.float64),
        n_users=n_users,
        n_items=n_items,
    )
    kinds = np.asarray(seen_kinds, dtype=np.int64)
    browsing = Events.from_kinds(
        _codes(seen_users, profile_ids),
        _codes(seen_items, product_ids),
        kinds,
        np.asarray(seen_times, dtype=np.float64),
        weights=weights,
        n_users=n_users,
        n_items=n_items,
    )
    view_mask = kinds == int(EventKind.VIEW)
    views = Events.from_arrays(
        browsing.users[view_mask],
        browsing.items[view_mask],
        None,
        browsing.timestamps[view_mask],
        n_users=n_users,
        n_items=n_items,
    )
    counts: dict[str, Any] = {
        "customers": int(np.unique(purchases.users).size),
        "order_lines": len(purchases),
        "views": int(view_mask.sum()),
        "cart_adds": int((kinds == int(EventKind.CART)).sum()),
        "products": n_items,
        "catalogue": len(catalogue),
        "out_of_stock": int((~in_stock).sum()),
        "segmented": int((segments >= 0).sum()),
    }
    return ShopData(
        profile_ids=profile_ids,
        product_ids=product_ids,
        categories=categories,
        category_names=category_names,
        in_stock=in_stock,
        purchases=purchases,
        browsing=browsing,
        views=views,
        segments=segments,
        segment_names=segment_names,
        counts=counts,
    )

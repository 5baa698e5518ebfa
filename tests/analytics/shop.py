"""A small generated shop for the analytics tests, and an independent computation of what the
analytics must find in it (plain Python over the generated orders, no engine)."""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.support.segment import track

START = datetime(2025, 1, 1, tzinfo=UTC)
AS_OF = datetime(2026, 3, 1, 12, tzinfo=UTC)


@dataclass
class Order:
    user: str | None
    order_id: str
    at: datetime
    cents: int  # net, reporting currency
    currency: str = "USD"
    status: str = "completed"


@dataclass
class Shop:
    orders: list[Order] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)


def order_message(o: Order, total_cents: int) -> dict[str, Any]:
    who = {"userId": o.user} if o.user else {"anonymousId": f"guest-{o.order_id}"}
    return track(
        "Order Completed",
        timestamp=o.at.isoformat(),
        properties={
            "order_id": o.order_id,
            "total": total_cents / 100,
            "currency": o.currency,
            "channel": "web",
        },
        **who,
    )


def generate(customers: int = 150, seed: int = 7, prefix: str = "u") -> Shop:
    """Customers who buy at their own pace and may drop out after any purchase (as the BG/NBD
    story goes) over 14 months, a few guest checkouts (anonymous profiles), partial refunds and
    cancellations (what counts is net of them)."""
    rng = random.Random(seed)
    shop = Shop()
    span = (AS_OF - START).days - 1
    for c in range(customers):
        user = f"{prefix}{c}"
        day, days = rng.randrange(span), []
        mean_gap = 3 + rng.gammavariate(0.8, 40)
        drop = rng.betavariate(1.0, 2.5)
        typical = rng.gammavariate(3.0, 2_500)  # this customer's usual basket, cents
        while day <= span:
            days.append(day)
            if rng.random() < drop:  # gone for good
                break
            day += 1 + int(rng.expovariate(1 / mean_gap))
        for k, d in enumerate(days):
            at = START + timedelta(days=d, seconds=rng.randrange(86_400))
            total = max(100, int(rng.gammavariate(6.0, typical / 6.0)))
            o = Order(user, f"{user}-o{k}", at, total)
            shop.messages.append(order_message(o, total))
            if rng.random() < 0.05:  # cancelled: never a purchase
                o.cents, o.status = 0, "cancelled"
                later = (at + timedelta(hours=1)).isoformat()
                shop.messages.append(
                    track("Order Cancelled", userId=user, timestamp=later,
                          properties={"order_id": o.order_id})
                )  # fmt: skip
            elif rng.random() < 0.05:  # partly refunded
                back = rng.randrange(100, total)
                o.cents = total - back
                later = (at + timedelta(days=2)).isoformat()
                shop.messages.append(
                    track("Order Refunded", userId=user, timestamp=later,
                          properties={"order_id": o.order_id, "total": back / 100})
                )  # fmt: skip
            shop.orders.append(o)
    for g in range(5):
        at = START + timedelta(days=rng.randrange(span))
        o = Order(None, f"guest-{g}", at, rng.randrange(1_000, 9_000))
        shop.messages.append(order_message(o, o.cents))
        shop.orders.append(o)
    return shop


def buyer(o: Order) -> str:
    """Who an order counts for: the user, or the guest's anonymous profile."""
    return o.user or f"anon:guest-{o.order_id}"


def day(at: datetime) -> int:
    return (at - datetime(1970, 1, 1, tzinfo=UTC)).days


def expected_customers(orders: list[Order], as_of: datetime) -> dict[str, dict[str, Any]]:
    """Per customer: orders, total, first/last day, and R, F, M scores by the documented rule
    (quintile = floor(5 * number of customers strictly worse / n) + 1)."""
    last_day = day(as_of)
    per: dict[str, dict[str, Any]] = defaultdict(lambda: {"orders": 0, "total": 0, "days": set()})
    for o in orders:
        if o.cents <= 0 or day(o.at) > last_day:
            continue
        p = per[buyer(o)]
        p["orders"] += 1
        p["total"] += o.cents
        p["days"].add(day(o.at))
    for p in per.values():
        p["recency_days"] = last_day - max(p["days"])
    n = len(per)

    def score(value: float, values: list[float]) -> int:
        return sum(1 for v in values if v < value) * 5 // n + 1

    recencies = [-p["recency_days"] for p in per.values()]
    counts = [p["orders"] for p in per.values()]
    totals = [p["total"] for p in per.values()]
    for p in per.values():
        p["r"] = score(-p["recency_days"], recencies)
        p["f"] = score(p["orders"], counts)
        p["m"] = score(p["total"], totals)
    return dict(per)

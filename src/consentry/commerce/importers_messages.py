"""Imported rows become Segment-spec messages: ``identify`` for customers, order events for orders.

Each message's ``messageId`` is derived from what it says (uuid5 of its kind, its key and a hash
of its normalised content), never from the workspace, the file name or the time of the import:
an unchanged row is a duplicate the store skips, a changed row is a new message and wins.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from consentry.commerce.importers_layouts import Cells, RowError
from consentry.commerce.importers_values import slug, split_tags
from consentry.profiles.models import normalize_email, normalize_id, normalize_phone, phone_region

NAMESPACE = uuid.UUID("6f1d7a52-3c1e-5b8e-9a3f-2d4c6e8b0a17")
LIBRARY = {"name": "consentry-import"}
CHANNEL = "import"
MAX_ID = 200
CANCEL_STATUSES = frozenset({"voided", "cancelled", "canceled"})
NO_IDENTIFIER = "no identifier: the row needs a customer id, a valid email or a valid phone"


@dataclass(slots=True)
class Outcome:
    """What some rows of the file became: messages to store, or why they were not imported."""

    line: int
    rows: int
    messages: list[dict[str, Any]] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Contact:
    """Who a row is about. ``email``/``phone`` are as given; ``key`` names the strongest id."""

    ids: dict[str, str]
    key: str
    traits: dict[str, Any]


def message_id(kind: str, key: str, message: dict[str, Any]) -> str:
    """A deterministic messageId: uuid5 of the kind, the key and a hash of the content."""
    content = json.dumps(message, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.sha256(content.encode()).hexdigest()
    return str(uuid.uuid5(NAMESPACE, f"{kind}\x1f{key}\x1f{digest}"))


def with_id(kind: str, key: str, message: dict[str, Any]) -> dict[str, Any]:
    """The message with its derived ``messageId`` first."""
    return {"messageId": message_id(kind, key, message), **message}


def number(amount: Decimal) -> float | int:
    """An amount as a JSON number; amounts are bounded so the float reads back exactly."""
    return int(amount) if amount == amount.to_integral_value() else float(amount)


def region_of(cells: Cells, default_region: str) -> str:
    """The row's two-letter country ("UK" read as GB, as identity resolution reads it), else
    the default region, for reading phone numbers."""
    country = cells.values.get("country", (0, ""))[1]
    return phone_region(country if country.isalpha() else None, default_region)


def contact(cells: Cells, default_region: str) -> Contact | None:
    """The identifiers of a row; None (and a problem) when it has no usable one.

    The customer id is the userId; without one, an anonymousId derived from the email (or phone)
    joins the rows of one person. A bad email or phone is no error: it is kept as a trait but
    names nobody.
    """
    user_id = normalize_id(cells.text("customer_id", 512))
    email = cells.text("email", 320)
    phone = cells.text("phone", 64)
    valid_email = normalize_email(email)
    valid_phone = normalize_phone(phone, region_of(cells, default_region)) if phone else None
    traits: dict[str, Any] = {"email": email, "phone": valid_phone or phone}
    traits = {k: v for k, v in traits.items() if v}
    if user_id is not None:
        return Contact({"userId": user_id}, f"user:{user_id}", traits)
    strongest = f"email:{valid_email}" if valid_email else f"phone:{valid_phone}"
    if valid_email or valid_phone:
        anonymous = f"import-{uuid.uuid5(NAMESPACE, strongest)}"
        return Contact({"anonymousId": anonymous}, strongest, traits)
    labels = ", ".join(
        cells.label(n) for n in ("customer_id", "email", "phone") if n in cells.labels
    )
    cells.problems.append(RowError(cells.line, labels or "(identifier)", NO_IDENTIFIER))
    return None


# --- customers ------------------------------------------------------------------------------


def customer_outcome(cells: Cells, default_region: str) -> Outcome:
    """One customer row -> one ``identify`` message, or the row's errors."""
    who = contact(cells, default_region)
    traits = _customer_traits(cells)
    if who is None or cells.problems:
        return Outcome(cells.line, 1, errors=cells.problems)
    message = {
        "type": "identify",
        **who.ids,
        "traits": {**who.traits, **traits},
        "context": {"library": LIBRARY},
    }
    return Outcome(cells.line, 1, messages=[with_id("customer", who.key, message)])


def _customer_traits(cells: Cells) -> dict[str, Any]:
    street = ", ".join(t for t in (cells.text("street"), cells.text("street2")) if t)
    address = {
        "street": street or None,
        "city": cells.text("city"),
        "postal_code": cells.text("postal_code"),
        "state": cells.text("state"),
        "country": cells.text("country"),
    }
    spent, created = cells.money("total_spent"), cells.date("created_at")
    tags = split_tags(cells.text("tags") or "")
    traits: dict[str, Any] = {
        "first_name": cells.text("first_name"),
        "last_name": cells.text("last_name"),
        "address": {k: v for k, v in address.items() if v} or None,
        "accepts_email_marketing": cells.flag("accepts_email_marketing"),
        "accepts_sms_marketing": cells.flag("accepts_sms_marketing"),
        "tags": tags or None,
        "total_spent": number(spent) if spent is not None else None,
        "orders_count": cells.count("orders_count"),
        "created_at": created.isoformat() if created else None,
    }
    return {k: v for k, v in traits.items() if v is not None}


# --- orders ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrderHead:
    """The order-level facts of an order's rows."""

    order_id: str
    placed_at: datetime
    currency: str
    amounts: dict[str, float | int]
    coupon: str | None
    status: str
    refunded: Decimal | None
    cancelled_at: datetime | None


def order_outcome(rows: Sequence[Cells], default_region: str) -> Outcome:
    """The rows of one order -> ``Order Completed`` (+ ``Order Refunded``/``Cancelled``)."""
    order = Cells.merged(rows)
    who = contact(order, default_region)
    head = _head(order)
    products = [p for row in rows if (p := _product(row)) is not None]
    problems = [*order.problems, *(p for row in rows for p in row.problems)]
    if who is None or head is None or problems:
        return Outcome(rows[0].line, len(rows), errors=_spread(problems, rows))
    completed = _message("Order Completed", who, head.placed_at, _properties(head, products))
    messages = [with_id("order", head.order_id, completed)]
    messages.extend(_aftermath(head, who))
    return Outcome(rows[0].line, len(rows), messages=messages)


def _head(order: Cells) -> OrderHead | None:
    order_id, placed_at = order.text("order_id", MAX_ID), order.date("placed_at")
    currency = order.text("currency")
    refunded, cancelled_at = order.money("refunded_amount"), order.date("cancelled_at")
    amounts = {
        name: order.money(column)
        for name, column in (
            ("total", "total"),
            ("revenue", "subtotal"),
            ("shipping", "shipping"),
            ("tax", "tax"),
            ("discount", "discount"),
        )
    }
    if order_id is None and "order_id" not in order.values:
        order.problem("order_id", "missing: every row needs the order's id")
    if placed_at is None and "placed_at" not in order.values:
        order.problem("placed_at", "missing: the order has no date")
    if currency is not None and not (len(currency) == 3 and currency.isalpha()):
        order.problem("currency", "not a 3-letter currency code such as EUR")
    elif currency is None:
        order.problem("currency", "missing: the order has no currency")
    if order_id is None or placed_at is None or currency is None or order.problems:
        return None
    numbers = {k: number(v) for k, v in amounts.items() if v is not None}
    status = (order.text("status") or "").lower().replace(" ", "_")
    coupon = order.text("coupon")
    return OrderHead(
        order_id, placed_at, currency.upper(), numbers, coupon, status, refunded, cancelled_at
    )


def _product(row: Cells) -> dict[str, Any] | None:
    sku, name = row.text("sku", MAX_ID), row.text("item_name")
    price, quantity = row.money("price"), row.count("quantity")
    if sku is None and name is None:
        if price is not None or quantity is not None:
            row.problem("item_name", "a line item needs a sku or a name")
        return None
    product = {
        "product_id": sku or slug(name or ""),
        "sku": sku,
        "name": name,
        "category": row.text("category"),
        "price": number(price) if price is not None else None,
        "quantity": quantity if quantity is not None else 1,
    }
    return {k: v for k, v in product.items() if v is not None}


def _properties(head: OrderHead, products: list[dict[str, Any]]) -> dict[str, Any]:
    props: dict[str, Any] = {"order_id": head.order_id, **head.amounts}
    if head.coupon:
        props["coupon"] = head.coupon
    props.update(currency=head.currency, products=products, channel=CHANNEL)
    return props


def _message(event: str, who: Contact, at: datetime, properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "track",
        "event": event,
        **who.ids,
        "timestamp": at.isoformat(),
        "properties": properties,
        "context": {"library": LIBRARY, "traits": who.traits},
    }


def _aftermath(head: OrderHead, who: Contact) -> list[dict[str, Any]]:
    """``Order Refunded`` when money came back, ``Order Cancelled`` when it was called off.

    The refund states ``refunded_to_date``, the amount refunded so far (Shopify's ``Refunded
    Amount``), which commerce applies as an absolute value; a ``refunded`` order without that
    amount was refunded in full.
    """
    out = []
    base = {"order_id": head.order_id, "currency": head.currency}
    amount = head.refunded
    if not amount and head.status == "refunded" and "total" in head.amounts:
        amount = Decimal(str(head.amounts["total"]))
    if amount is not None and amount > 0:
        props = {**base, "refunded_to_date": number(amount)}
        refund = _message("Order Refunded", who, head.placed_at, props)
        out.append(with_id("order-refund", head.order_id, refund))
    if head.cancelled_at is not None or head.status in CANCEL_STATUSES:
        at = head.cancelled_at or head.placed_at
        cancel = _message("Order Cancelled", who, at, dict(base))
        out.append(with_id("order-cancel", head.order_id, cancel))
    return out


def _spread(problems: list[RowError], rows: Sequence[Cells]) -> list[RowError]:
    """An order with a bad row is not imported: its other rows say which line to fix."""
    bad = {p.line for p in problems}
    first = min(bad, default=rows[0].line)
    label = rows[0].label("order_id")
    others = [
        RowError(r.line, label, f"the order is not imported: fix line {first}")
        for r in rows
        if r.line not in bad
    ]
    return sorted([*problems, *others], key=lambda e: e.line)

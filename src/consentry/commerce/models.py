"""Pure rules that turn Segment e-commerce spec v2 events into products, carts and orders."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

PRODUCT_EVENTS = frozenset(
    {
        "Product Viewed",
        "Product Clicked",
        "Product Added",
        "Product Removed",
        "Product Added to Wishlist",
        "Product Removed from Wishlist",
        "Product Shared",
        "Product Reviewed",
    }
)
CART_EVENTS = frozenset({"Product Added", "Product Removed", "Cart Viewed", "Checkout Started"})
# Later steps of a checkout: they move a known cart to ``checkout`` and link the checkout to it.
CHECKOUT_STEP_EVENTS = frozenset(
    {"Checkout Step Viewed", "Checkout Step Completed", "Payment Info Entered"}
)
ORDER_EVENTS = frozenset({"Order Completed", "Order Updated", "Order Refunded", "Order Cancelled"})
LIST_EVENTS = frozenset(
    {
        "Product List Viewed",
        "Product List Filtered",
        "Cart Viewed",
        "Checkout Started",
        "Order Completed",
        "Order Updated",
    }
)
ECOMMERCE_EVENTS = PRODUCT_EVENTS | CART_EVENTS | CHECKOUT_STEP_EVENTS | ORDER_EVENTS | LIST_EVENTS


def money(value: Any) -> Decimal | None:
    """A monetary amount as Decimal with cents, or None when absent or not a number."""
    if value is None or isinstance(value, bool):
        return None
    try:
        amount = Decimal(str(value).strip().replace(",", ""))
    except InvalidOperation:
        return None
    if not amount.is_finite():
        return None
    return amount.quantize(Decimal("0.01"))


def _text(value: Any, limit: int = 500) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    text = str(value).strip()
    return text[:limit] or None


def _quantity(value: Any) -> int:
    try:
        qty = int(float(value))
    except (TypeError, ValueError):
        return 1
    return max(qty, 0)


@dataclass(frozen=True, slots=True)
class LineItem:
    product_id: str
    sku: str | None
    name: str | None
    category: str | None
    brand: str | None
    price: Decimal | None
    quantity: int
    url: str | None = None
    image_url: str | None = None

    def as_json(self) -> dict[str, Any]:
        """A JSON-safe dict."""
        return {
            "product_id": self.product_id,
            "sku": self.sku,
            "name": self.name,
            "category": self.category,
            "brand": self.brand,
            "price": str(self.price) if self.price is not None else None,
            "quantity": self.quantity,
        }


def product_id_of(props: Mapping[str, Any]) -> str | None:
    """The product event properties (or a ``products[]`` entry) are about: ``product_id``,
    else ``id``, else ``sku``; None when they name none."""
    return _text(props.get("product_id") or props.get("id") or props.get("sku"), 200)


def line_item(props: Mapping[str, Any]) -> LineItem | None:
    """A product from event properties or a ``products[]`` entry; None without an id or sku."""
    product_id = product_id_of(props)
    if product_id is None:
        return None
    return LineItem(
        product_id=product_id,
        sku=_text(props.get("sku"), 200),
        name=_text(props.get("name")),
        category=_text(props.get("category"), 200),
        brand=_text(props.get("brand"), 200),
        price=money(props.get("price")),
        quantity=_quantity(props.get("quantity", 1)),
        url=_text(props.get("url"), 2000),
        image_url=_text(props.get("image_url"), 2000),
    )


def line_items(props: Mapping[str, Any]) -> list[LineItem]:
    """The ``products`` array of an event, skipping entries without an id."""
    products = props.get("products")
    if not isinstance(products, list):
        return []
    items = (line_item(p) for p in products if isinstance(p, Mapping))
    return [i for i in items if i is not None]


@dataclass(slots=True)
class OrderFacts:
    """What an order event says about an order."""

    order_id: str
    status: str
    total: Decimal | None
    revenue: Decimal | None
    shipping: Decimal | None
    tax: Decimal | None
    discount: Decimal | None
    coupon: str | None
    currency: str
    checkout_id: str | None
    channel: str | None
    items: list[LineItem] = field(default_factory=list)
    refunded_to_date: Decimal | None = None  # an absolute statement (CSV exports), not a delta
    cart_id: str | None = None


STATUS_BY_EVENT = {
    "Order Completed": "completed",
    "Order Updated": "completed",
    "Order Refunded": "refunded",
    "Order Cancelled": "cancelled",
}


def order_facts(event: str, props: Mapping[str, Any]) -> OrderFacts | None:
    """Order facts from an order event, or None when it has no ``order_id``."""
    order_id = _text(props.get("order_id"), 200)
    if order_id is None or event not in STATUS_BY_EVENT:
        return None
    currency = (_text(props.get("currency"), 3) or "USD").upper()
    return OrderFacts(
        order_id=order_id,
        status=STATUS_BY_EVENT[event],
        total=money(props.get("total")),
        revenue=money(props.get("revenue")),
        shipping=money(props.get("shipping")),
        tax=money(props.get("tax")),
        discount=money(props.get("discount")),
        coupon=_text(props.get("coupon"), 200),
        currency=currency,
        checkout_id=_text(props.get("checkout_id"), 200),
        channel=_text(props.get("channel"), 50),
        items=line_items(props),
        refunded_to_date=money(props.get("refunded_to_date")),
        cart_id=_text(props.get("cart_id"), 200),
    )


def cart_of(props: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The ``cart_id`` and ``checkout_id`` an event names (each at most 200 characters)."""
    return _text(props.get("cart_id"), 200), _text(props.get("checkout_id"), 200)


def order_total(facts: OrderFacts) -> Decimal:
    """The order's total, or the sum of its items when no total was sent."""
    if facts.total is not None:
        return facts.total
    if facts.revenue is not None:
        return facts.revenue
    return sum(
        ((i.price or Decimal(0)) * i.quantity for i in facts.items), Decimal("0.00")
    ).quantize(Decimal("0.01"))


def refunded_after(facts: OrderFacts, order_total_value: Decimal, refunded: Decimal) -> Decimal:
    """What an order has refunded after a refund event, never more than its total.

    A refund event says how much came back this time (``total``, else its lines, else all of
    it); a ``refunded_to_date`` statement, as shop exports give, sets the amount so far, so
    importing the same export twice or a later one never counts a refund twice.
    """
    if facts.refunded_to_date is not None:
        return min(order_total_value, max(refunded, abs(facts.refunded_to_date)))
    if facts.total is not None:
        amount = abs(facts.total)
    elif facts.items:
        amount = sum(((i.price or Decimal(0)) * i.quantity for i in facts.items), Decimal("0"))
    else:
        amount = order_total_value
    return min(order_total_value, refunded + amount)


def refund_status(order_total_value: Decimal, refunded: Decimal) -> str:
    """``refunded`` when everything came back, else ``partially_refunded``."""
    return "refunded" if refunded >= order_total_value else "partially_refunded"


@dataclass(frozen=True, slots=True)
class CommerceEvent:
    """An e-commerce spec event, attributed to a profile."""

    profile_id: str | None
    event: str
    properties: Mapping[str, Any]
    at: datetime
    source: str = "event"

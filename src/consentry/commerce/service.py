"""Use cases of commerce: keep products, carts and orders in step with e-commerce events."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from consentry.commerce.models import (
    CART_EVENTS,
    ECOMMERCE_EVENTS,
    LineItem,
    OrderFacts,
    line_item,
    line_items,
    money,
    order_facts,
    order_total,
    refund_status,
    refunded_after,
)
from consentry.commerce.tables import CartRow, OrderItemRow, OrderRow, ProductRow
from consentry.errors import NotFound


@dataclass(frozen=True, slots=True)
class OrderView:
    order_id: str
    profile_id: str | None
    status: str
    total: Decimal
    refunded: Decimal
    currency: str
    channel: str | None
    source: str
    placed_at: datetime
    items: list[dict[str, Any]]


def is_commerce_event(event: str | None) -> bool:
    """True for the e-commerce spec events that change products, carts or orders."""
    return event in ECOMMERCE_EVENTS


@dataclass(frozen=True, slots=True)
class CommerceEvent:
    """An e-commerce spec event, attributed to a profile."""

    profile_id: str | None
    event: str
    properties: Mapping[str, Any]
    at: datetime
    source: str = "event"


def apply_event(
    *,
    session: Session,
    workspace_id: str,
    profile_id: str | None,
    event: str,
    properties: Mapping[str, Any],
    at: datetime,
    source: str = "event",
) -> None:
    """Apply one e-commerce event: upsert products, move the cart, record the order."""
    apply_events(
        session=session,
        workspace_id=workspace_id,
        events=[CommerceEvent(profile_id, event, properties, at, source)],
    )


def apply_events(*, session: Session, workspace_id: str, events: Sequence[CommerceEvent]) -> None:
    """Apply e-commerce events in order: products upserted once, the batch's carts and orders
    loaded in one query each, one flush, order lines written in bulk."""
    parsed = [(e, line_items(e.properties), line_item(e.properties)) for e in events]
    products = [p for _, items, single in parsed for p in (*items, *([single] if single else []))]
    if events:
        latest = max(e.at for e in events)
        upsert_products(session=session, workspace_id=workspace_id, items=products, at=latest)
    books = _Books.load(session, workspace_id, events)
    for e, items, single in parsed:
        if e.event in CART_EVENTS:
            _apply_cart(books, e, single, items)
        facts = order_facts(e.event, e.properties)
        if facts is not None:
            _apply_order(books, e, facts)
    books.write(session)


class _Books:
    """The carts and orders one batch touches, and the order lines it replaces."""

    def __init__(self, workspace_id: str, carts: dict[str, CartRow], orders: dict[str, OrderRow]):
        self.workspace_id = workspace_id
        self.carts = carts
        self.orders = orders
        self.new: list[CartRow | OrderRow] = []
        self.lines: dict[str, list[LineItem]] = {}

    @classmethod
    def load(cls, session: Session, workspace_id: str, events: Sequence[CommerceEvent]) -> _Books:
        cart_ids = {str(c)[:200] for e in events if (c := _cart_id(e.properties))}
        order_ids = {str(o)[:200] for e in events if (o := e.properties.get("order_id"))}
        carts = (
            {
                c.cart_id: c
                for c in session.scalars(
                    select(CartRow).where(
                        CartRow.workspace_id == workspace_id, CartRow.cart_id.in_(sorted(cart_ids))
                    )
                )
            }
            if cart_ids
            else {}
        )
        orders = (
            {
                o.order_id: o
                for o in session.scalars(
                    select(OrderRow).where(
                        OrderRow.workspace_id == workspace_id,
                        OrderRow.order_id.in_(sorted(order_ids)),
                    )
                )
            }
            if order_ids
            else {}
        )
        return cls(workspace_id, carts, orders)

    def add(self, row: CartRow | OrderRow) -> None:
        self.new.append(row)

    def write(self, session: Session) -> None:
        session.add_all(self.new)
        session.flush()
        if not self.lines:
            return
        pks = {oid: self.orders[oid].id for oid in self.lines}
        session.execute(delete(OrderItemRow).where(OrderItemRow.order_pk.in_(list(pks.values()))))
        session.execute(
            insert(OrderItemRow),
            [
                {
                    "order_pk": pks[oid],
                    "workspace_id": self.workspace_id,
                    "product_id": i.product_id,
                    "sku": i.sku,
                    "name": i.name,
                    "category": i.category,
                    "price": i.price,
                    "quantity": i.quantity,
                }
                for oid, items in self.lines.items()
                for i in items
            ],
        )


def _cart_id(props: Mapping[str, Any]) -> Any:
    return props.get("cart_id") or props.get("checkout_id")


def upsert_products(
    *, session: Session, workspace_id: str, items: Iterable[LineItem], at: datetime
) -> None:
    """Create or refresh products; newer facts fill in or replace older ones."""
    by_id = {i.product_id: i for i in items}
    if not by_id:
        return
    existing = {
        p.product_id: p
        for p in session.scalars(
            select(ProductRow).where(
                ProductRow.workspace_id == workspace_id, ProductRow.product_id.in_(list(by_id))
            )
        )
    }
    for product_id, item in by_id.items():
        row = existing.get(product_id)
        if row is None:
            row = ProductRow(workspace_id=workspace_id, product_id=product_id, updated_at=at)
            session.add(row)
        elif at < row.updated_at:
            continue
        changes = {
            attr: value
            for attr in ("sku", "name", "category", "brand", "price", "url", "image_url")
            if (value := getattr(item, attr)) is not None and getattr(row, attr) != value
        }
        for attr, value in changes.items():
            setattr(row, attr, value)
        if changes or row.updated_at is None:
            row.updated_at = at
    session.flush()


def _apply_cart(
    books: _Books, e: CommerceEvent, single: LineItem | None, items: list[LineItem]
) -> None:
    cart_id = _cart_id(e.properties)
    if not cart_id:
        return
    cart = books.carts.get(str(cart_id)[:200])
    if cart is None:
        cart = CartRow(
            workspace_id=books.workspace_id,
            cart_id=str(cart_id)[:200],
            status="open",
            items=[],
            created_at=e.at,
            updated_at=e.at,
            currency="USD",
        )
        books.carts[cart.cart_id] = cart
        books.add(cart)
    if cart.status == "converted":
        return
    contents = {i["product_id"]: i for i in cart.items}
    if items:
        contents = {i.product_id: i.as_json() for i in items}
    elif single is not None and e.event == "Product Added":
        contents[single.product_id] = single.as_json()
    elif single is not None and e.event == "Product Removed":
        contents.pop(single.product_id, None)
    cart.items = list(contents.values())
    cart.value = money(e.properties.get("value") or e.properties.get("revenue")) or _sum(cart.items)
    cart.currency = str(e.properties.get("currency") or cart.currency)[:3].upper()
    cart.profile_id = e.profile_id or cart.profile_id
    cart.status = "checkout" if e.event == "Checkout Started" else cart.status
    cart.updated_at = max(cart.updated_at, e.at)


def _sum(items: Sequence[Mapping[str, Any]]) -> Decimal:
    total = Decimal("0.00")
    for item in items:
        total += (money(item.get("price")) or Decimal(0)) * int(item.get("quantity") or 1)
    return total


def _apply_order(books: _Books, e: CommerceEvent, facts: OrderFacts) -> None:
    order = books.orders.get(facts.order_id)
    if facts.status in ("refunded", "cancelled") and order is not None:
        _refund_or_cancel(order, facts, e.at)
    elif facts.status == "completed":
        _upsert_order(books, e, facts, order)
        _convert_cart(books, facts)
    elif order is None:
        # a refund or cancellation of an order we never saw: keep what we know of it
        _refund_or_cancel(_upsert_order(books, e, facts, None), facts, e.at)


def _upsert_order(
    books: _Books, e: CommerceEvent, facts: OrderFacts, order: OrderRow | None
) -> OrderRow:
    if order is None:
        order = OrderRow(
            workspace_id=books.workspace_id,
            order_id=facts.order_id,
            status="completed",
            placed_at=e.at,
            refunded=Decimal("0.00"),
            source=e.source,
        )
        books.orders[facts.order_id] = order
        books.add(order)
    order.profile_id = e.profile_id or order.profile_id
    order.total = order_total(facts)
    order.revenue, order.shipping, order.tax = facts.revenue, facts.shipping, facts.tax
    order.discount, order.coupon, order.currency = facts.discount, facts.coupon, facts.currency
    order.channel = facts.channel or order.channel
    order.placed_at = min(order.placed_at, e.at)
    order.updated_at = e.at
    if facts.items:
        books.lines[facts.order_id] = facts.items
    return order


def _refund_or_cancel(order: OrderRow, facts: OrderFacts, at: datetime) -> None:
    if facts.status == "cancelled":
        order.status = "cancelled"
    else:
        order.refunded = refunded_after(facts, order.total, order.refunded or Decimal(0))
        order.status = refund_status(order.total, order.refunded)
    order.updated_at = at


def _convert_cart(books: _Books, facts: OrderFacts) -> None:
    cart = books.carts.get(facts.checkout_id or "")
    if cart is not None:
        cart.status, cart.order_id = "converted", facts.order_id


def _order_view(row: OrderRow, items: list[OrderItemRow]) -> OrderView:
    return OrderView(
        order_id=row.order_id,
        profile_id=row.profile_id,
        status=row.status,
        total=row.total,
        refunded=row.refunded,
        currency=row.currency,
        channel=row.channel,
        source=row.source,
        placed_at=row.placed_at,
        items=[
            {
                "product_id": i.product_id,
                "sku": i.sku,
                "name": i.name,
                "category": i.category,
                "price": i.price,
                "quantity": i.quantity,
            }
            for i in items
        ],
    )


def orders_of(
    *, session: Session, workspace_id: str, profile_ids: Sequence[str], limit: int = 100
) -> list[OrderView]:
    """Orders of the given profiles, newest first, with their items."""
    rows = list(
        session.scalars(
            select(OrderRow)
            .where(OrderRow.workspace_id == workspace_id, OrderRow.profile_id.in_(profile_ids))
            .order_by(OrderRow.placed_at.desc())
            .limit(limit)
        )
    )
    items: dict[int, list[OrderItemRow]] = {r.id: [] for r in rows}
    for item in session.scalars(
        select(OrderItemRow).where(OrderItemRow.order_pk.in_(list(items))).order_by(OrderItemRow.id)
    ):
        items[item.order_pk].append(item)
    return [_order_view(r, items[r.id]) for r in rows]


def get_order(*, session: Session, workspace_id: str, order_id: str) -> OrderView:
    """One order by its shop id."""
    row = session.scalar(
        select(OrderRow).where(OrderRow.workspace_id == workspace_id, OrderRow.order_id == order_id)
    )
    if row is None:
        raise NotFound(f"no order {order_id!r} in this workspace")
    items = list(session.scalars(select(OrderItemRow).where(OrderItemRow.order_pk == row.id)))
    return _order_view(row, items)


def open_carts(
    *, session: Session, workspace_id: str, profile_ids: Sequence[str]
) -> list[dict[str, Any]]:
    """Carts of these profiles that did not become an order, newest first."""
    rows = session.scalars(
        select(CartRow)
        .where(
            CartRow.workspace_id == workspace_id,
            CartRow.profile_id.in_(profile_ids),
            CartRow.status != "converted",
        )
        .order_by(CartRow.updated_at.desc())
    )
    return [
        {
            "cart_id": r.cart_id,
            "status": r.status,
            "items": r.items,
            "value": r.value,
            "currency": r.currency,
            "updated_at": r.updated_at,
        }
        for r in rows
    ]


def counts(*, session: Session, workspace_id: str) -> dict[str, int]:
    """How many products, carts and orders the workspace has."""
    out = {}
    for name, table in (("products", ProductRow), ("carts", CartRow), ("orders", OrderRow)):
        out[name] = int(
            session.scalar(
                select(func.count()).select_from(table).where(table.workspace_id == workspace_id)
            )
            or 0
        )
    return out

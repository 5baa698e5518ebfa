"""Use cases of commerce: keep products, carts and orders in step with e-commerce events."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.orm import Session

from consentry.commerce.books import (
    PRODUCT_FACTS,
    PRODUCTS,
    Books,
    CartState,
    OrderState,
)
from consentry.commerce.models import (
    CART_EVENTS,
    CHECKOUT_STEP_EVENTS,
    ECOMMERCE_EVENTS,
    LineItem,
    OrderFacts,
    cart_of,
    line_item,
    line_items,
    money,
    order_facts,
    order_total,
    refund_status,
    refunded_after,
)
from consentry.commerce.models import CommerceEvent as CommerceEvent  # the facade's event type
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
    """Apply e-commerce events in order: products upserted once, the batch's carts (with the
    checkouts it names), and orders loaded in one query each, order lines written in bulk."""
    parsed = [(e, line_items(e.properties), line_item(e.properties)) for e in events]
    products = [p for _, items, single in parsed for p in (*items, *([single] if single else []))]
    if events:
        latest = max(e.at for e in events)
        upsert_products(
            session=session,
            workspace_id=workspace_id,
            items=products,
            at=latest,
            stock=stock_of(e.properties for e in events),
        )
    books = Books.load(session, workspace_id, events)
    for e, items, single in parsed:
        if e.event in CART_EVENTS:
            _apply_cart(books, e, single, items)
        elif e.event in CHECKOUT_STEP_EVENTS:
            _apply_checkout_step(books, e)
        facts = order_facts(e.event, e.properties)
        if facts is not None:
            _apply_order(books, e, facts)
    books.write(session)


_IN_STOCK = {"true", "yes", "1", "in_stock", "instock", "available"}
_OUT_OF_STOCK = {"false", "no", "0", "out_of_stock", "outofstock", "sold_out", "unavailable"}


def _availability(props: Mapping[str, Any]) -> bool | None:
    """A product's ``in_stock`` (else ``available``) property as a flag; None when absent or
    not understood (a boolean, 0/1, or words such as "in_stock" / "OutOfStock")."""
    for key in ("in_stock", "available"):
        value = props.get(key)
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str):
            word = value.strip().lower().replace(" ", "_").replace("-", "_")
            word = word.rsplit("/", 1)[-1]  # https://schema.org/InStock
            if word in _IN_STOCK:
                return True
            if word in _OUT_OF_STOCK:
                return False
    return None


def stock_of(properties: Iterable[Mapping[str, Any]]) -> dict[str, bool]:
    """The availability events say of their products (the event's own product and each entry
    of ``products``), the last word per product id winning."""
    found: dict[str, bool] = {}
    for props in properties:
        entries = props.get("products")
        for entry in (props, *(entries if isinstance(entries, list) else ())):
            if not isinstance(entry, Mapping):
                continue
            flag = _availability(entry)
            item = line_item(entry) if flag is not None else None
            if item is not None and flag is not None:
                found[item.product_id] = flag
    return found


def upsert_products(
    *,
    session: Session,
    workspace_id: str,
    items: Iterable[LineItem],
    at: datetime,
    stock: Mapping[str, bool] | None = None,
) -> None:
    """Create or refresh products; newer facts fill in or replace older ones. ``stock``: the
    availability of products whose events said it (``in_stock``, unknown otherwise)."""
    stock = stock or {}
    by_id = {i.product_id: i for i in items}
    if not by_id:
        return
    connection = session.connection()
    existing = {
        row[0]: row
        for row in connection.execute(
            select(
                PRODUCTS.c.product_id,
                *(PRODUCTS.c[attr] for attr in PRODUCT_FACTS),
                PRODUCTS.c.in_stock,
                PRODUCTS.c.updated_at,
            ).where(
                PRODUCTS.c.workspace_id == workspace_id,
                PRODUCTS.c.product_id.in_(list(by_id)),
            )
        )
    }
    new: list[dict[str, Any]] = []
    by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for product_id, item in by_id.items():
        row = existing.get(product_id)
        if row is None:
            facts = {attr: getattr(item, attr) for attr in PRODUCT_FACTS}
            new.append({"workspace_id": workspace_id, "product_id": product_id, **facts})
            new[-1].update(in_stock=stock.get(product_id), updated_at=at)
            continue
        if at < row[-1]:
            continue
        changes = {
            attr: value
            for attr, stored in zip(PRODUCT_FACTS, row[1:-2], strict=True)
            if (value := getattr(item, attr)) is not None and stored != value
        }
        if (flag := stock.get(product_id)) is not None and row[-2] != flag:
            changes["in_stock"] = flag
        if changes:
            values = {f"v_{attr}": value for attr, value in changes.items()}
            values.update(w_product_id=product_id, v_updated_at=at)
            by_columns.setdefault(tuple(changes), []).append(values)
    if new:
        connection.execute(insert(PRODUCTS), new)
    for changed, batch in by_columns.items():
        connection.execute(
            update(PRODUCTS)
            .where(
                PRODUCTS.c.workspace_id == workspace_id,
                PRODUCTS.c.product_id == bindparam("w_product_id"),
            )
            .values({c: bindparam(f"v_{c}") for c in (*changed, "updated_at")}),
            batch,
        )


def _apply_cart(
    books: Books, e: CommerceEvent, single: LineItem | None, items: list[LineItem]
) -> None:
    cart_id, checkout_id = cart_of(e.properties)
    key = cart_id or checkout_id
    if key is None:
        return
    cart = books.cart(cart_id, checkout_id)
    if cart is None:
        cart = CartState(
            workspace_id=books.workspace_id,
            cart_id=key,
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
    books.link(checkout_id, cart)
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


def _apply_checkout_step(books: Books, e: CommerceEvent) -> None:
    """A later step of a checkout: the cart it names (or its checkout's) is in checkout."""
    cart_id, checkout_id = cart_of(e.properties)
    cart = books.cart(cart_id, checkout_id)
    if cart is None or cart.status == "converted":
        return
    books.link(checkout_id, cart)
    cart.status = "checkout"
    cart.profile_id = e.profile_id or cart.profile_id
    cart.updated_at = max(cart.updated_at, e.at)


def _sum(items: Sequence[Mapping[str, Any]]) -> Decimal:
    total = Decimal("0.00")
    for item in items:
        total += (money(item.get("price")) or Decimal(0)) * int(item.get("quantity") or 1)
    return total


def _apply_order(books: Books, e: CommerceEvent, facts: OrderFacts) -> None:
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
    books: Books, e: CommerceEvent, facts: OrderFacts, order: OrderState | None
) -> OrderState:
    if order is None:
        order = OrderState(
            workspace_id=books.workspace_id,
            order_id=facts.order_id,
            status="completed",
            placed_at=e.at,
            refunded=Decimal("0.00"),
            source=e.source,
            updated_at=e.at,
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


def _refund_or_cancel(order: OrderState, facts: OrderFacts, at: datetime) -> None:
    if facts.status == "cancelled":
        order.status = "cancelled"
    else:
        order.refunded = refunded_after(facts, order.total, order.refunded or Decimal(0))
        order.status = refund_status(order.total, order.refunded)
    order.updated_at = at


def _convert_cart(books: Books, facts: OrderFacts) -> None:
    """The order's cart becomes converted: the cart it names, else its checkout's cart."""
    cart = books.cart(facts.cart_id, facts.checkout_id) or books.cart(None, facts.checkout_id)
    if cart is not None and cart.status != "converted":
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


@dataclass(frozen=True, slots=True)
class ErasedCommerce:
    """What :func:`erase_customer` did: carts deleted, orders deleted, orders kept under the
    legal hold (pseudonymised) and the last day the hold keeps one."""

    carts: int
    orders_deleted: int
    orders_kept: int
    kept_until: datetime | None


def erase_customer(
    *,
    session: Session,
    workspace_id: str,
    profile_ids: Sequence[str],
    hold: timedelta | None,
    now: datetime,
) -> ErasedCommerce:
    """Erase a person from commerce: their carts go; an order placed within ``hold`` (the
    legal hold of invoice data, None for none) is kept pseudonymised, unlinked from the person
    and without its coupon code (which can name them); an older one goes, with its lines."""
    carts = orders_deleted = orders_kept = 0
    kept_until: datetime | None = None
    for start in range(0, len(profile_ids), 500):
        part = profile_ids[start : start + 500]
        result = session.execute(
            delete(CartRow).where(
                CartRow.workspace_id == workspace_id, CartRow.profile_id.in_(part)
            )
        )
        carts += int(getattr(result, "rowcount", 0) or 0)
        orders = session.execute(
            select(OrderRow.id, OrderRow.placed_at).where(
                OrderRow.workspace_id == workspace_id, OrderRow.profile_id.in_(part)
            )
        ).all()
        held = {pk: placed + hold for pk, placed in orders if hold and placed + hold > now}
        keep = list(held)
        drop = [pk for pk, _ in orders if pk not in held]
        if keep:
            session.execute(
                update(OrderRow).where(OrderRow.id.in_(keep)).values(profile_id=None, coupon=None)
            )
            kept_until = max([*held.values(), *([kept_until] if kept_until else [])])
        if drop:
            session.execute(delete(OrderItemRow).where(OrderItemRow.order_pk.in_(drop)))
            session.execute(delete(OrderRow).where(OrderRow.id.in_(drop)))
        orders_kept += len(keep)
        orders_deleted += len(drop)
    return ErasedCommerce(carts, orders_deleted, orders_kept, kept_until)


def abandoned_carts(
    *, session: Session, workspace_id: str, before: datetime, remove_up_to: int = 0
) -> int:
    """How many carts that never became an order were last changed before ``before``; with
    ``remove_up_to``, delete up to that many (oldest first) and return how many went."""
    where = (
        CartRow.workspace_id == workspace_id,
        CartRow.status != "converted",
        CartRow.updated_at < before,
    )
    if not remove_up_to:
        return int(session.scalar(select(func.count()).select_from(CartRow).where(*where)) or 0)
    ids = list(
        session.scalars(
            select(CartRow.cart_id).where(*where).order_by(CartRow.updated_at).limit(remove_up_to)
        )
    )
    result = session.execute(
        delete(CartRow).where(CartRow.workspace_id == workspace_id, CartRow.cart_id.in_(ids))
    )
    return int(getattr(result, "rowcount", 0) or 0)

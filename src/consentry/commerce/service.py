"""Use cases of commerce: keep products, carts and orders in step with e-commerce events."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import Connection, Table, bindparam, delete, func, insert, select, update
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


@dataclass(slots=True)
class _Cart:
    """A cart as the batch sees it: a plain row of ``carts``."""

    workspace_id: str
    cart_id: str
    status: str
    items: list[dict[str, Any]]
    created_at: datetime
    updated_at: datetime
    currency: str = "USD"
    profile_id: str | None = None
    value: Decimal | None = None
    order_id: str | None = None


@dataclass(slots=True)
class _Order:
    """An order as the batch sees it: a plain row of ``orders`` (``id`` once stored)."""

    workspace_id: str
    order_id: str
    status: str
    placed_at: datetime
    refunded: Decimal
    source: str
    updated_at: datetime
    total: Decimal = Decimal("0.00")
    profile_id: str | None = None
    revenue: Decimal | None = None
    shipping: Decimal | None = None
    tax: Decimal | None = None
    discount: Decimal | None = None
    coupon: str | None = None
    currency: str = "USD"
    channel: str | None = None
    id: int | None = None


_CARTS = cast(Table, CartRow.__table__)
_ORDERS = cast(Table, OrderRow.__table__)
_ORDER_ITEMS = cast(Table, OrderItemRow.__table__)
_PRODUCTS = cast(Table, ProductRow.__table__)
_CART_COLUMNS = tuple(c.name for c in _CARTS.columns)
_ORDER_COLUMNS = tuple(c.name for c in _ORDERS.columns if c.name != "id")
_PRODUCT_FACTS = ("sku", "name", "category", "brand", "price", "url", "image_url")


class _Books:
    """The carts and orders one batch touches, and the order lines it replaces.

    Rows are read with Core into plain objects, changed in memory in event order, and written
    back in bulk: new rows inserted, and of a loaded row only the columns whose value changed
    (as the ORM's unit of work would).
    """

    def __init__(self, workspace_id: str, carts: dict[str, _Cart], orders: dict[str, _Order]):
        self.workspace_id = workspace_id
        self.carts = carts
        self.orders = orders
        self.new: list[_Cart | _Order] = []
        self.lines: dict[str, list[LineItem]] = {}
        self._loaded_carts = {k: _values(c, _CART_COLUMNS) for k, c in carts.items()}
        self._loaded_orders = {k: _values(o, _ORDER_COLUMNS) for k, o in orders.items()}

    @classmethod
    def load(cls, session: Session, workspace_id: str, events: Sequence[CommerceEvent]) -> _Books:
        cart_ids = {str(c)[:200] for e in events if (c := _cart_id(e.properties))}
        order_ids = {str(o)[:200] for e in events if (o := e.properties.get("order_id"))}
        connection = session.connection()
        carts: dict[str, _Cart] = {}
        if cart_ids:
            for row in connection.execute(
                select(_CARTS).where(
                    _CARTS.c.workspace_id == workspace_id, _CARTS.c.cart_id.in_(sorted(cart_ids))
                )
            ):
                carts[row.cart_id] = _Cart(**row._asdict())
        orders: dict[str, _Order] = {}
        if order_ids:
            for row in connection.execute(
                select(_ORDERS).where(
                    _ORDERS.c.workspace_id == workspace_id,
                    _ORDERS.c.order_id.in_(sorted(order_ids)),
                )
            ):
                orders[row.order_id] = _Order(**row._asdict())
        return cls(workspace_id, carts, orders)

    def add(self, row: _Cart | _Order) -> None:
        self.new.append(row)

    def write(self, session: Session) -> None:
        connection = session.connection()
        new_carts = [_as_dict(r, _CART_COLUMNS) for r in self.new if isinstance(r, _Cart)]
        new_orders = [_as_dict(r, _ORDER_COLUMNS) for r in self.new if isinstance(r, _Order)]
        if new_carts:
            connection.execute(insert(_CARTS), new_carts)
        if new_orders:
            connection.execute(insert(_ORDERS), new_orders)
        _update_changed(
            connection,
            _CARTS,
            _CART_COLUMNS,
            [(self.carts[k], before) for k, before in self._loaded_carts.items()],
            lambda c: {"w_workspace_id": c.workspace_id, "w_cart_id": c.cart_id},
        )
        _update_changed(
            connection,
            _ORDERS,
            _ORDER_COLUMNS,
            [(self.orders[k], before) for k, before in self._loaded_orders.items()],
            lambda o: {"w_id": o.id},
        )
        if not self.lines:
            return
        unknown = sorted(oid for oid in self.lines if self.orders[oid].id is None)
        if unknown:  # stored just now: read their ids
            for pk, oid in connection.execute(
                select(_ORDERS.c.id, _ORDERS.c.order_id).where(
                    _ORDERS.c.workspace_id == self.workspace_id, _ORDERS.c.order_id.in_(unknown)
                )
            ):
                self.orders[oid].id = pk
        pks = {oid: self.orders[oid].id for oid in self.lines}
        connection.execute(
            delete(_ORDER_ITEMS).where(_ORDER_ITEMS.c.order_pk.in_(list(pks.values())))
        )
        connection.execute(
            insert(_ORDER_ITEMS),
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


def _values(row: Any, columns: Sequence[str]) -> tuple[Any, ...]:
    return tuple(getattr(row, c) for c in columns)


def _as_dict(row: Any, columns: Sequence[str]) -> dict[str, Any]:
    return {c: getattr(row, c) for c in columns}


def _update_changed(
    connection: Connection,
    table: Table,
    columns: Sequence[str],
    rows: Sequence[tuple[Any, tuple[Any, ...]]],
    key: Callable[[Any], dict[str, Any]],
) -> None:
    """UPDATE the columns of each loaded row whose value changed (compared with ``!=``, as the
    ORM compares), one executemany per set of changed columns."""
    by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row, before in rows:
        after = _values(row, columns)
        changed = tuple(c for c, old, new in zip(columns, before, after, strict=True) if old != new)
        if changed:
            values = {f"v_{c}": getattr(row, c) for c in changed} | key(row)
            by_columns.setdefault(changed, []).append(values)
    for names, batch in by_columns.items():
        where = [table.c[k.removeprefix("w_")] == bindparam(k) for k in batch[0] if k[:2] == "w_"]
        connection.execute(
            update(table).where(*where).values({c: bindparam(f"v_{c}") for c in names}), batch
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
    connection = session.connection()
    existing = {
        row[0]: row
        for row in connection.execute(
            select(
                _PRODUCTS.c.product_id,
                *(_PRODUCTS.c[attr] for attr in _PRODUCT_FACTS),
                _PRODUCTS.c.updated_at,
            ).where(
                _PRODUCTS.c.workspace_id == workspace_id,
                _PRODUCTS.c.product_id.in_(list(by_id)),
            )
        )
    }
    new: list[dict[str, Any]] = []
    by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for product_id, item in by_id.items():
        row = existing.get(product_id)
        if row is None:
            facts = {attr: getattr(item, attr) for attr in _PRODUCT_FACTS}
            new.append({"workspace_id": workspace_id, "product_id": product_id, **facts})
            new[-1]["updated_at"] = at
            continue
        if at < row[-1]:
            continue
        changes = {
            attr: value
            for attr, stored in zip(_PRODUCT_FACTS, row[1:-1], strict=True)
            if (value := getattr(item, attr)) is not None and stored != value
        }
        if changes:
            values = {f"v_{attr}": value for attr, value in changes.items()}
            values.update(w_product_id=product_id, v_updated_at=at)
            by_columns.setdefault(tuple(changes), []).append(values)
    if new:
        connection.execute(insert(_PRODUCTS), new)
    for changed, batch in by_columns.items():
        connection.execute(
            update(_PRODUCTS)
            .where(
                _PRODUCTS.c.workspace_id == workspace_id,
                _PRODUCTS.c.product_id == bindparam("w_product_id"),
            )
            .values({c: bindparam(f"v_{c}") for c in (*changed, "updated_at")}),
            batch,
        )


def _apply_cart(
    books: _Books, e: CommerceEvent, single: LineItem | None, items: list[LineItem]
) -> None:
    cart_id = _cart_id(e.properties)
    if not cart_id:
        return
    cart = books.carts.get(str(cart_id)[:200])
    if cart is None:
        cart = _Cart(
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
    books: _Books, e: CommerceEvent, facts: OrderFacts, order: _Order | None
) -> _Order:
    if order is None:
        order = _Order(
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


def _refund_or_cancel(order: _Order, facts: OrderFacts, at: datetime) -> None:
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

"""The books of one chunk of commerce events: the carts, their checkouts and the orders the
chunk touches, loaded in a few batched queries, changed in memory, written back at once."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import Connection, Table, bindparam, delete, insert, select, update
from sqlalchemy.orm import Session

from consentry.commerce.models import (
    CommerceEvent,
    LineItem,
    cart_of,
)
from consentry.commerce.tables import CartCheckoutRow, CartRow, OrderItemRow, OrderRow, ProductRow


@dataclass(slots=True)
class CartState:
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
class OrderState:
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


CARTS = cast(Table, CartRow.__table__)
CHECKOUTS = cast(Table, CartCheckoutRow.__table__)
ORDERS = cast(Table, OrderRow.__table__)
ORDER_ITEMS = cast(Table, OrderItemRow.__table__)
PRODUCTS = cast(Table, ProductRow.__table__)
CART_COLUMNS = tuple(c.name for c in CARTS.columns)
ORDER_COLUMNS = tuple(c.name for c in ORDERS.columns if c.name != "id")
PRODUCT_FACTS = ("sku", "name", "category", "brand", "price", "url", "image_url")


class Books:
    """The carts and orders one batch touches, the carts its checkouts belong to, and the order
    lines it replaces.

    Rows are read with Core into plain objects, changed in memory in event order, and written
    back in bulk: new rows inserted, and of a loaded row only the columns whose value changed
    (as the ORM's unit of work would).
    """

    def __init__(
        self,
        workspace_id: str,
        carts: dict[str, CartState],
        orders: dict[str, OrderState],
        checkouts: dict[str, str],
    ):
        self.workspace_id = workspace_id
        self.carts = carts
        self.orders = orders
        self.checkouts = checkouts  # checkout id -> cart id
        self.new: list[CartState | OrderState] = []
        self.lines: dict[str, list[LineItem]] = {}
        self._loaded_carts = {k: values_of(c, CART_COLUMNS) for k, c in carts.items()}
        self._loaded_orders = {k: values_of(o, ORDER_COLUMNS) for k, o in orders.items()}
        self._loaded_checkouts = dict(checkouts)

    @classmethod
    def load(cls, session: Session, workspace_id: str, events: Sequence[CommerceEvent]) -> Books:
        named = [cart_of(e.properties) for e in events]
        order_ids = {str(o)[:200] for e in events if (o := e.properties.get("order_id"))}
        connection = session.connection()
        checkout_ids = sorted({checkout for _, checkout in named if checkout})
        checkouts: dict[str, str] = {}
        if checkout_ids:
            linked = select(CHECKOUTS.c.checkout_id, CHECKOUTS.c.cart_id).where(
                CHECKOUTS.c.workspace_id == workspace_id,
                CHECKOUTS.c.checkout_id.in_(checkout_ids),
            )
            checkouts = dict(connection.execute(linked).all())
        # a checkout id may also name a cart itself (a checkout tracked without a cart_id)
        cart_ids = {i for pair in named for i in pair if i} | set(checkouts.values())
        carts: dict[str, CartState] = {}
        if cart_ids:
            for row in connection.execute(
                select(CARTS).where(
                    CARTS.c.workspace_id == workspace_id, CARTS.c.cart_id.in_(sorted(cart_ids))
                )
            ):
                carts[row.cart_id] = CartState(**row._asdict())
        orders: dict[str, OrderState] = {}
        if order_ids:
            for row in connection.execute(
                select(ORDERS).where(
                    ORDERS.c.workspace_id == workspace_id,
                    ORDERS.c.order_id.in_(sorted(order_ids)),
                )
            ):
                orders[row.order_id] = OrderState(**row._asdict())
        return cls(workspace_id, carts, orders, checkouts)

    def add(self, row: CartState | OrderState) -> None:
        self.new.append(row)

    def cart(self, cart_id: str | None, checkout_id: str | None) -> CartState | None:
        """The cart an event names: by its ``cart_id`` when it has one, else the cart its
        checkout was started from, else a cart keyed by the checkout id."""
        if cart_id is not None:
            return self.carts.get(cart_id)
        if checkout_id is None:
            return None
        return self.carts.get(self.checkouts.get(checkout_id, checkout_id))

    def link(self, checkout_id: str | None, cart: CartState) -> None:
        """Record that ``checkout_id`` was started from ``cart``."""
        if checkout_id is not None and checkout_id != cart.cart_id:
            self.checkouts[checkout_id] = cart.cart_id

    def write(self, session: Session) -> None:
        connection = session.connection()
        new_carts = [as_dict(r, CART_COLUMNS) for r in self.new if isinstance(r, CartState)]
        new_orders = [as_dict(r, ORDER_COLUMNS) for r in self.new if isinstance(r, OrderState)]
        if new_carts:
            connection.execute(insert(CARTS), new_carts)
        if new_orders:
            connection.execute(insert(ORDERS), new_orders)
        self._write_checkouts(connection)
        update_changed(
            connection,
            CARTS,
            CART_COLUMNS,
            [(self.carts[k], before) for k, before in self._loaded_carts.items()],
            lambda c: {"w_workspace_id": c.workspace_id, "w_cart_id": c.cart_id},
        )
        update_changed(
            connection,
            ORDERS,
            ORDER_COLUMNS,
            [(self.orders[k], before) for k, before in self._loaded_orders.items()],
            lambda o: {"w_id": o.id},
        )
        if not self.lines:
            return
        unknown = sorted(oid for oid in self.lines if self.orders[oid].id is None)
        if unknown:  # stored just now: read their ids
            for pk, oid in connection.execute(
                select(ORDERS.c.id, ORDERS.c.order_id).where(
                    ORDERS.c.workspace_id == self.workspace_id, ORDERS.c.order_id.in_(unknown)
                )
            ):
                self.orders[oid].id = pk
        pks = {oid: self.orders[oid].id for oid in self.lines}
        connection.execute(
            delete(ORDER_ITEMS).where(ORDER_ITEMS.c.order_pk.in_(list(pks.values())))
        )
        connection.execute(
            insert(ORDER_ITEMS),
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

    def _write_checkouts(self, connection: Connection) -> None:
        """Store new checkout links (after their carts) and the ones that changed cart."""
        ws, before = self.workspace_id, self._loaded_checkouts
        changed = {k: v for k, v in self.checkouts.items() if before.get(k) != v}
        if moved := [k for k in changed if k in before]:
            c = CHECKOUTS.c
            connection.execute(
                delete(CHECKOUTS).where(c.workspace_id == ws, c.checkout_id.in_(moved))
            )
        if changed:
            rows = [
                {"workspace_id": ws, "checkout_id": k, "cart_id": v} for k, v in changed.items()
            ]
            connection.execute(insert(CHECKOUTS), rows)


def values_of(row: Any, columns: Sequence[str]) -> tuple[Any, ...]:
    return tuple(getattr(row, c) for c in columns)


def as_dict(row: Any, columns: Sequence[str]) -> dict[str, Any]:
    return {c: getattr(row, c) for c in columns}


def update_changed(
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
        after = values_of(row, columns)
        changed = tuple(c for c, old, new in zip(columns, before, after, strict=True) if old != new)
        if changed:
            values = {f"v_{c}": getattr(row, c) for c in changed} | key(row)
            by_columns.setdefault(changed, []).append(values)
    for names, batch in by_columns.items():
        where = [table.c[k.removeprefix("w_")] == bindparam(k) for k in batch[0] if k[:2] == "w_"]
        connection.execute(
            update(table).where(*where).values({c: bindparam(f"v_{c}") for c in names}), batch
        )

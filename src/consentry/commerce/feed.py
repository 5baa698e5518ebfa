"""Columnar reads of orders and carts for analytics, and of order lines and the catalogue for
recommendations: the orders as a statement for ``platform.columnar.read_arrow`` (ten million
of them), the rest as plain tuples in batches; no ORM objects.

The store does the arithmetic (timestamps as epoch seconds, amounts net of refunds in integer
cents), so no timestamp or decimal is converted in Python. Cancelled orders come out with
an amount of 0: they never count as purchases.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from datetime import datetime

from sqlalchemy import BigInteger, Select, case, cast, func, select
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement

from consentry.commerce.tables import CartRow, OrderItemRow, OrderRow, ProductRow
from consentry.platform.db import epoch_seconds, one_of, row_batches

ORDER_COLUMNS = ("profile_id", "placed_at", "cents", "currency", "channel")
CART_COLUMNS = ("created_at", "updated_at", "converted")
Row = tuple[object, ...]


def _net_cents() -> ColumnElement[int]:
    net = OrderRow.total - func.coalesce(OrderRow.refunded, 0)
    return case(
        (OrderRow.status == "cancelled", 0),
        else_=cast(func.round(net * 100), BigInteger),
    )


def order_select(workspace_id: str) -> Select[str | None, int, int, str, str | None]:
    """Every order of the workspace as ``ORDER_COLUMNS``: profile id (None for guests), placed
    at (epoch seconds), net amount in cents, currency, channel; for ``platform.columnar``."""
    return select(
        OrderRow.profile_id,
        epoch_seconds(OrderRow.placed_at),
        _net_cents(),
        OrderRow.currency,
        OrderRow.channel,
    ).where(OrderRow.workspace_id == workspace_id)


def cart_rows(
    *, session: Session, workspace_id: str, since: datetime, until: datetime, batch: int = 100_000
) -> Iterator[list[Row]]:
    """Carts created in ``[since, until)`` as ``CART_COLUMNS`` tuples."""
    stmt = select(
        epoch_seconds(CartRow.created_at),
        epoch_seconds(CartRow.updated_at),
        case((CartRow.status == "converted", 1), else_=0),
    ).where(
        CartRow.workspace_id == workspace_id,
        CartRow.created_at >= since,
        CartRow.created_at < until,
    )
    yield from row_batches(session, stmt, batch)


# --- recommendations -----------------------------------------------------------------------------

ORDER_LINE_COLUMNS = ("profile_id", "product_id", "placed_at", "quantity")
PRODUCT_COLUMNS = ("product_id", "category", "price", "in_stock")
PRODUCT_DETAIL_COLUMNS = ("product_id", "name", "category", "price", "url", "image_url", "in_stock")
NOT_PURCHASES = ("cancelled", "refunded")  # fully refunded or cancelled: not bought after all


def order_line_rows(
    *, session: Session, workspace_id: str, batch: int = 100_000
) -> Iterator[list[Row]]:
    """Every order line of the workspace's customers as ``ORDER_LINE_COLUMNS`` tuples: profile
    id, product id, placed at (epoch seconds), quantity. Guest orders (no profile), cancelled
    and fully refunded orders are left out."""
    stmt = (
        select(
            OrderRow.profile_id,
            OrderItemRow.product_id,
            epoch_seconds(OrderRow.placed_at),
            OrderItemRow.quantity,
        )
        .join(OrderItemRow, OrderItemRow.order_pk == OrderRow.id)
        .where(
            OrderRow.workspace_id == workspace_id,
            OrderItemRow.workspace_id == workspace_id,
            OrderRow.profile_id.is_not(None),
            OrderRow.status.not_in(NOT_PURCHASES),
        )
    )
    yield from row_batches(session, stmt, batch)


def product_rows(
    *, session: Session, workspace_id: str, batch: int = 100_000
) -> Iterator[list[Row]]:
    """The catalogue as ``PRODUCT_COLUMNS`` tuples: id, category, price, in stock (None:
    unknown)."""
    stmt = select(
        ProductRow.product_id, ProductRow.category, ProductRow.price, ProductRow.in_stock
    ).where(ProductRow.workspace_id == workspace_id)
    yield from row_batches(session, stmt, batch)


def product_details(
    *, session: Session, workspace_id: str, product_ids: Collection[str]
) -> dict[str, Row]:
    """``PRODUCT_DETAIL_COLUMNS`` of these products (those in the catalogue), by id."""
    if not product_ids:
        return {}
    rows = session.execute(
        select(
            ProductRow.product_id,
            ProductRow.name,
            ProductRow.category,
            ProductRow.price,
            ProductRow.url,
            ProductRow.image_url,
            ProductRow.in_stock,
        ).where(
            ProductRow.workspace_id == workspace_id,
            one_of(session, ProductRow.product_id, sorted(product_ids)),
        )
    )
    return {r[0]: tuple(r) for r in rows}


def products_bought(
    *, session: Session, workspace_id: str, profile_ids: Collection[str]
) -> set[str]:
    """The products these profiles ordered (cancelled and fully refunded orders left out)."""
    if not profile_ids:
        return set()
    rows = session.execute(
        select(OrderItemRow.product_id)
        .join(OrderRow, OrderItemRow.order_pk == OrderRow.id)
        .where(
            OrderRow.workspace_id == workspace_id,
            one_of(session, OrderRow.profile_id, sorted(profile_ids)),
            OrderRow.status.not_in(NOT_PURCHASES),
        )
        .distinct()
    )
    return {r[0] for r in rows}


# --- audiences: selectables the segment compiler builds on ---------------------------------------


def purchase_select(workspace_id: str) -> Select[str, datetime, int]:
    """``(member profile id, placed at, net cents)`` of every order of a known customer that
    counts as a purchase (cancelled and fully refunded orders left out; partial refunds taken
    off). Amounts are in the order's own currency."""
    return select(
        OrderRow.profile_id.label("profile_id"),
        OrderRow.placed_at.label("placed_at"),
        _net_cents().label("cents"),
    ).where(
        OrderRow.workspace_id == workspace_id,
        OrderRow.profile_id.is_not(None),
        OrderRow.status.not_in(NOT_PURCHASES),
    )  # type: ignore[return-value]


def category_select(workspace_id: str) -> Select[str | None, str | None]:
    """``(member profile id, category)`` of every order line with a category of a purchase
    (as :func:`purchase_select` counts them)."""
    return (
        select(OrderRow.profile_id.label("profile_id"), OrderItemRow.category.label("category"))
        .join(OrderItemRow, OrderItemRow.order_pk == OrderRow.id)
        .where(
            OrderRow.workspace_id == workspace_id,
            OrderRow.profile_id.is_not(None),
            OrderRow.status.not_in(NOT_PURCHASES),
            OrderItemRow.category.is_not(None),
        )
    )


# --- journeys: conversions --------------------------------------------------------------------

CONVERSION_COLUMNS = ("profile_id", "placed_at", "cents", "currency")


def conversion_rows(
    *, session: Session, workspace_id: str, since: datetime, until: datetime, batch: int = 100_000
) -> Iterator[list[Row]]:
    """Customers' orders placed in ``[since, until]`` as ``CONVERSION_COLUMNS`` tuples: profile
    id (the member the order was attached to), placed at (epoch seconds), net amount in cents,
    currency. Guest, cancelled and fully refunded orders are left out: they convert nobody."""
    stmt = select(
        OrderRow.profile_id, epoch_seconds(OrderRow.placed_at), _net_cents(), OrderRow.currency
    ).where(
        OrderRow.workspace_id == workspace_id,
        OrderRow.profile_id.is_not(None),
        OrderRow.status.not_in(NOT_PURCHASES),
        OrderRow.placed_at >= since,
        OrderRow.placed_at <= until,
    )
    yield from row_batches(session, stmt, batch)

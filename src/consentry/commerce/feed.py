"""Columnar reads of orders and carts for analytics: plain tuples in batches, no ORM objects.

The store does the arithmetic (timestamps as epoch seconds, amounts net of refunds in integer
cents), so a million orders cross into Python as small integers. Cancelled orders come out with
an amount of 0: they never count as purchases.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from sqlalchemy import BigInteger, case, cast, func, select
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement

from consentry.commerce.tables import CartRow, OrderRow
from consentry.platform.db import epoch_seconds

ORDER_COLUMNS = ("profile_id", "order_id", "placed_at", "cents", "currency", "channel")
CART_COLUMNS = ("created_at", "updated_at", "converted")
Row = tuple[object, ...]


def _net_cents() -> ColumnElement[int]:
    net = OrderRow.total - func.coalesce(OrderRow.refunded, 0)
    return case(
        (OrderRow.status == "cancelled", 0),
        else_=cast(func.round(net * 100), BigInteger),
    )


def order_rows(*, session: Session, workspace_id: str, batch: int = 100_000) -> Iterator[list[Row]]:
    """Every order of the workspace as ``ORDER_COLUMNS`` tuples: profile id (None for guests),
    order id, placed at (epoch seconds), net amount in cents, currency, channel."""
    stmt = select(
        OrderRow.profile_id,
        OrderRow.order_id,
        epoch_seconds(OrderRow.placed_at),
        _net_cents(),
        OrderRow.currency,
        OrderRow.channel,
    ).where(OrderRow.workspace_id == workspace_id)
    result = session.execute(stmt.execution_options(yield_per=batch))
    for part in result.partitions():
        yield [tuple(r) for r in part]


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
    result = session.execute(stmt.execution_options(yield_per=batch))
    for part in result.partitions():
        yield [tuple(r) for r in part]

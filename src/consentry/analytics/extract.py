"""The operational store, read into Arrow tables for the engine (an adapter: it calls other
capabilities' columnar feeds, never their tables).

- Orders come out under the *unified* profile (a merged profile's orders count for the person),
  with amounts converted to the reporting currency in integer cents. Orders in a currency with no
  rate are left out and counted, never guessed.
- Activity and carts are read for a time window only.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy.orm import Session

from consentry.commerce import feed as commerce_feed
from consentry.ingest import feed as ingest_feed
from consentry.platform.columnar import read_arrow
from consentry.platform.db import Database
from consentry.profiles import service as profiles

TIMESTAMP = pa.timestamp("s", tz="UTC")
ORDERS = pa.schema(
    [
        ("customer", pa.string()),
        ("placed_at", TIMESTAMP),
        ("cents", pa.int64()),
        ("channel", pa.string()),
    ]
)
RAW_ORDERS = pa.schema(  # commerce.feed.order_select
    [
        ("profile_id", pa.string()),
        ("placed_at", pa.int64()),
        ("cents", pa.int64()),
        ("currency", pa.string()),
        ("channel", pa.string()),
    ]
)
EVENTS = pa.schema([("visitor", pa.string()), ("ts", TIMESTAMP), ("ordered", pa.int64())])
CARTS = pa.schema([("created_at", TIMESTAMP), ("updated_at", TIMESTAMP), ("converted", pa.int64())])


@dataclass(frozen=True, slots=True)
class Orders:
    """Orders ready for the engine, and what was left out (by currency)."""

    table: pa.Table
    skipped: dict[str, int]


def _columns(
    batches: Iterable[Sequence[tuple[object, ...]]], width: int
) -> Iterator[list[list[object]]]:
    for rows in batches:
        yield [list(col) for col in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]


def unified(session: Session, workspace_id: str) -> pa.Table:
    """``profile_id -> root`` of every merged profile: read once per request, passed to the
    readers below so activity and orders count under the person."""
    ids: list[str] = []
    canonical: list[str] = []
    for part in profiles.merged_members(session=session, workspace_id=workspace_id):
        for member, root in part:
            ids.append(member)
            canonical.append(root)
    return pa.table(
        {"profile_id": pa.array(ids, pa.string()), "root": pa.array(canonical, pa.string())}
    )


def _to_unified(table: pa.Table, column: str, unified: pa.Table) -> pa.ChunkedArray:
    """``column`` with merged profiles replaced by their unified profile, in the table's order
    (one hash look-up per row)."""
    if unified.num_rows == 0:
        return table[column]
    at = pc.index_in(table[column], value_set=unified["profile_id"])
    return pc.coalesce(pc.take(unified["root"], at), table[column])


def orders(
    db: Database,
    workspace_id: str,
    *,
    currency: str,
    fx_rates: Mapping[str, float],
    merged: pa.Table,
) -> Orders:
    """Every order under its unified profile, net cents in ``currency``; ``fx_rates`` gives the
    units of ``currency`` one unit of another currency is worth. Read in one columnar pass
    (``platform.columnar``): no Python object per order."""
    raw = read_arrow(db, commerce_feed.order_select(workspace_id), RAW_ORDERS)
    rates = {code.upper(): rate for code, rate in fx_rates.items()}
    rates[currency.upper()] = 1.0
    codes = pc.utf8_upper(raw["currency"])
    rate = pc.index_in(codes, value_set=pa.array(list(rates), pa.string()))
    known = pc.is_valid(rate)
    factor = pc.take(pa.array(list(rates.values()), pa.float64()), rate)
    converted = pc.cast(
        pc.round(pc.multiply(pc.cast(raw["cents"], pa.float64()), factor)), pa.int64()
    )
    table = pa.table(
        {
            "customer": raw["profile_id"],
            "placed_at": pc.cast(raw["placed_at"], pa.int64()).cast(TIMESTAMP),
            "cents": converted,
            "channel": raw["channel"],
        }
    ).filter(known)
    table = table.set_column(0, "customer", _to_unified(table, "customer", merged))
    return Orders(table=table.cast(ORDERS), skipped=_missing(codes, known))


def _missing(codes: pa.Array, known: pa.Array) -> dict[str, int]:
    """How many orders of each currency code (``(none)`` for no code) have no rate."""
    unknown = pc.filter(codes, pc.invert(known))
    if len(unknown) == 0:
        return {}
    counts = pc.value_counts(pc.fill_null(unknown, "(none)"))
    return dict(
        zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True)
    )


def events(
    session: Session, workspace_id: str, since: datetime, until: datetime, *, merged: pa.Table
) -> pa.Table:
    """Activity in ``[since, until)``: visitor (unified profile, else anonymous id), time,
    whether it was an order."""
    chunks = [
        pa.table(
            {
                "visitor": pa.array(visitor, pa.string()),
                "ts": pa.array(ts, pa.int64()).cast(TIMESTAMP),
                "ordered": pa.array(ordered, pa.int64()),
            }
        )
        for visitor, ts, ordered in _columns(
            ingest_feed.activity_rows(
                session=session, workspace_id=workspace_id, since=since, until=until
            ),
            3,
        )
    ]
    table = pa.concat_tables(chunks) if chunks else EVENTS.empty_table()
    return table.set_column(0, "visitor", _to_unified(table, "visitor", merged)).cast(EVENTS)


def carts(session: Session, workspace_id: str, since: datetime, until: datetime) -> pa.Table:
    """Carts created in ``[since, until)``: created, last touched, converted (1/0)."""
    chunks = [
        pa.table(
            {
                "created_at": pa.array(created, pa.int64()).cast(TIMESTAMP),
                "updated_at": pa.array(updated, pa.int64()).cast(TIMESTAMP),
                "converted": pa.array(converted, pa.int64()),
            }
        )
        for created, updated, converted in _columns(
            commerce_feed.cart_rows(
                session=session, workspace_id=workspace_id, since=since, until=until
            ),
            3,
        )
    ]
    return pa.concat_tables(chunks) if chunks else CARTS.empty_table()

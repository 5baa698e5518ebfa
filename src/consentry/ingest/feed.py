"""Columnar reads of activity for analytics: who did something when, in batches of tuples.

Only the clear columns are read (type, event name, timestamp, profile, the anonymous id's blind
index); payloads stay sealed. The one exception is :func:`product_activity_rows`
(recommendations): the product an event is about is inside its payload.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from datetime import datetime

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from consentry.commerce.models import product_id_of
from consentry.ingest.service import PAYLOAD
from consentry.ingest.tables import EventRow
from consentry.platform.db import epoch_seconds, row_batches
from consentry.platform.vault import vault_of

ACTIVITY_COLUMNS = ("visitor", "ts", "ordered")
ORDER_EVENT = "Order Completed"
Row = tuple[object, ...]


def activity_rows(
    *, session: Session, workspace_id: str, since: datetime, until: datetime, batch: int = 100_000
) -> Iterator[list[Row]]:
    """Events stored for ``[since, until)`` as ``ACTIVITY_COLUMNS`` tuples: the
    profile (else the anonymous id's blind index), epoch seconds, 1 for an order event else 0.
    Messages with neither (a group call by a server, say) are left out: nobody visited."""
    ts = epoch_seconds(EventRow.timestamp)
    visitor = func.coalesce(EventRow.profile_id, EventRow.anonymous_id)
    stmt = select(
        visitor,
        ts,
        case((EventRow.event == ORDER_EVENT, 1), else_=0),
    ).where(
        EventRow.workspace_id == workspace_id,
        EventRow.timestamp >= since,
        EventRow.timestamp < until,
        visitor.is_not(None),
    )
    yield from row_batches(session, stmt, batch)


# --- recommendations -----------------------------------------------------------------------------

PRODUCT_ACTIVITY_COLUMNS = ("profile_id", "ts", "event", "product_id")


def _product_id(properties: object) -> str | None:
    """The product an event is about, as the commerce capability reads it."""
    return product_id_of(properties) if isinstance(properties, dict) else None


def product_activity_rows(
    *,
    session: Session,
    workspace_id: str,
    events: Collection[str],
    since: datetime,
    batch: int = 20_000,
) -> Iterator[list[Row]]:
    """Track events named in ``events`` (e.g. ``Product Viewed``, ``Product Added``) of known
    profiles since ``since``, as ``PRODUCT_ACTIVITY_COLUMNS`` tuples: profile, epoch seconds,
    event name, the product id from the opened payload. The product id is inside the sealed
    payload, so each batch is opened with the vault (one key look-up per subject); events
    whose key was destroyed (an erased person) or that name no product are left out."""
    stmt = select(
        EventRow.profile_id, epoch_seconds(EventRow.timestamp), EventRow.event, EventRow.payload
    ).where(
        EventRow.workspace_id == workspace_id,
        EventRow.type == "track",
        EventRow.event.in_(sorted(events)),
        EventRow.timestamp >= since,
        EventRow.profile_id.is_not(None),
    )
    vault = vault_of(session)
    for part in row_batches(session, stmt, batch):
        payloads = vault.open_many(workspace_id, [(PAYLOAD, row[3]) for row in part])
        out: list[Row] = []
        for (profile_id, ts, event, _), payload in zip(part, payloads, strict=True):
            if isinstance(payload, dict) and (product := _product_id(payload.get("properties"))):
                out.append((profile_id, ts, event, product))
        yield out

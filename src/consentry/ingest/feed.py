"""Columnar reads of activity for analytics: who did something when, in batches of tuples.

Only the clear columns are read (type, event name, timestamp, profile, the anonymous id's blind
index); payloads stay sealed.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from consentry.ingest.tables import EventRow
from consentry.platform.db import epoch_seconds

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
    result = session.execute(stmt.execution_options(yield_per=batch))
    for part in result.partitions():
        yield [tuple(r) for r in part]

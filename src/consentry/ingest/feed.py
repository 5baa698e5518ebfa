"""Columnar reads of activity for analytics: who did something when, in batches of tuples.

Only the clear columns are read (type, event name, timestamp, profile, the anonymous id's blind
index); payloads stay sealed. The one exception is :func:`product_activity_rows`
(recommendations): the product an event is about is inside its payload.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, case, func, select
from sqlalchemy.orm import Session

from consentry.commerce.models import product_id_of
from consentry.ingest.service import PAYLOAD
from consentry.ingest.tables import EventRow, IngestCursorRow
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


# --- journeys ------------------------------------------------------------------------------------

EVENT_COLUMNS = ("id", "type", "event", "profile_id", "timestamp")


def events_after(
    *, session: Session, workspace_id: str, after_id: int, limit: int = 10_000
) -> list[Row]:
    """Up to ``limit`` applied events with an id above ``after_id``, in id order, as
    ``EVENT_COLUMNS`` tuples (the member profile each was linked to, null for an anonymous
    message; timestamps aware). Only events the processor has applied (at or below the ingest
    cursor) are given: before that their profile is not known yet, and a reader that moves a
    cursor by these ids would skip them."""
    applied = (
        select(IngestCursorRow.last_event_id)
        .where(IngestCursorRow.workspace_id == workspace_id)
        .scalar_subquery()
    )
    stmt = (
        select(EventRow.id, EventRow.type, EventRow.event, EventRow.profile_id, EventRow.timestamp)
        .where(
            EventRow.workspace_id == workspace_id,
            EventRow.id > after_id,
            EventRow.id <= applied,
        )
        .order_by(EventRow.id)
        .limit(limit)
    )
    return [tuple(row) for row in session.execute(stmt)]


def last_applied_event_id(*, session: Session, workspace_id: str) -> int:
    """The id of the last event the processor applied (0 before any): where a new reader of
    :func:`events_after` starts when it should not see the past."""
    found = session.scalar(
        select(IngestCursorRow.last_event_id).where(IngestCursorRow.workspace_id == workspace_id)
    )
    return int(found or 0)


REFERENCE_KEYS = ("cart_id", "checkout_id", "order_id", "product_id")


def event_references(
    *, session: Session, workspace_id: str, event_ids: Collection[int]
) -> dict[int, dict[str, str]]:
    """The ids an event's properties name (``REFERENCE_KEYS``: cart, checkout, order, product;
    never a personal value), by event id, from the opened payloads. Events that name none, or
    whose key was destroyed (an erased person), are left out."""
    ids = sorted(set(event_ids))
    vault = vault_of(session)
    out: dict[int, dict[str, str]] = {}
    for start in range(0, len(ids), 500):
        rows = session.execute(
            select(EventRow.id, EventRow.payload).where(
                EventRow.workspace_id == workspace_id, EventRow.id.in_(ids[start : start + 500])
            )
        ).all()
        payloads = vault.open_many(workspace_id, [(PAYLOAD, row[1]) for row in rows])
        for (event_id, _), payload in zip(rows, payloads, strict=True):
            properties = payload.get("properties") if isinstance(payload, dict) else None
            if not isinstance(properties, dict):
                continue
            found = {
                key: str(properties[key])[:128]
                for key in REFERENCE_KEYS
                if isinstance(properties.get(key), str | int) and properties[key] != ""
            }
            if found:
                out[event_id] = found
    return out


# --- audiences (segments and computed traits) ----------------------------------------------------


def track_select(
    workspace_id: str, event: str, since: datetime | None
) -> Select[str | None, datetime]:
    """Track events named ``event`` linked to a profile, since ``since`` (None: ever), as
    ``(member profile id, timestamp)``: a selectable the segment compiler groups by unified
    profile (covered by the index on workspace, event, type, timestamp, profile)."""
    stmt = select(EventRow.profile_id, EventRow.timestamp).where(
        EventRow.workspace_id == workspace_id,
        EventRow.event == event,
        EventRow.type == "track",
        EventRow.profile_id.is_not(None),
    )
    return stmt if since is None else stmt.where(EventRow.timestamp >= since)


def _at_path(properties: object, path: Sequence[str]) -> object:
    found = properties
    for step in path:
        if not isinstance(found, dict):
            return None
        found = found.get(step)
    return found


def event_property_rows(
    *,
    session: Session,
    workspace_id: str,
    event: str,
    path: Sequence[str],
    since: datetime | None,
    profile_ids: Collection[str] | None = None,
    batch: int = 20_000,
) -> Iterator[list[Row]]:
    """Track events named ``event`` of known profiles (of ``profile_ids`` only, when given),
    since ``since`` (None: ever), as ``(member profile id, timestamp, value)`` where value is
    the event's ``properties`` at ``path`` (``["product", "price"]``). The value is inside the
    sealed payload, so each batch is opened with the vault; events whose key was destroyed (an
    erased person) or that lack the property are left out."""
    base = track_select(workspace_id, event, since).add_columns(EventRow.payload)
    parts: list[Select[str | None, datetime, Any]]
    if profile_ids is None:
        parts = [base]
    else:
        ids = sorted(set(profile_ids))
        parts = [
            base.where(EventRow.profile_id.in_(ids[i : i + 500])) for i in range(0, len(ids), 500)
        ]
    vault = vault_of(session)
    for stmt in parts:
        for part in row_batches(session, stmt, batch):
            payloads = vault.open_many(workspace_id, [(PAYLOAD, row[2]) for row in part])
            out: list[Row] = []
            for (profile_id, ts, _), payload in zip(part, payloads, strict=True):
                if not isinstance(payload, dict):
                    continue
                value = _at_path(payload.get("properties"), path)
                if value is not None:
                    out.append((profile_id, ts, value))
            if out:
                yield out

"""Computed traits: a workspace's own aggregates of one event over a window, materialised per
unified profile (``computed_trait_values``) and read by segment rules like built-in ones.

Ops: ``count`` (events; with a property, the events that carry it), ``sum`` and ``avg`` (of a
numeric property), ``most_frequent`` (the commonest value of a property; a tie goes to the
latest), ``first`` and ``last`` (the property's value on the first or last event; without a
property, when it happened, as ISO text) and ``unique`` (the distinct values, sorted, at most
``MAX_UNIQUE``). Count, first and last without a property are counted by the store; ops on a
property open the sealed payloads through ``ingest.feed.event_property_rows`` in batches.

Values are refreshed with the segments: all of them by a full refresh, those of the profiles
that had events by the incremental one. A profile with no event in the window has no row; a
rule reads that as 0 for count and sum, as missing otherwise.
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, func, insert, select, update
from sqlalchemy.orm import Session

from consentry.audiences import compiler, rules
from consentry.audiences.tables import ComputedTraitRow, ComputedValueRow
from consentry.errors import Conflict, FieldError, Invalid, NotFound
from consentry.ingest import feed as ingest_feed
from consentry.platform.db import utcnow
from consentry.profiles import bulk
from consentry.profiles import service as profiles

OPS = ("count", "sum", "avg", "most_frequent", "first", "last", "unique")
NEEDS_PROPERTY = ("sum", "avg", "most_frequent", "unique")
ZERO_DEFAULT = ("count", "sum")
MAX_UNIQUE = 100
MAX_TRAITS = 200  # per workspace
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_PATH_PART = re.compile(r"^[^\x00-\x1f\x7f.]{1,100}$")
CHUNK = 500
WRITE_BATCH = 5_000


@dataclass(frozen=True, slots=True)
class ComputedTrait:
    """A computed trait definition."""

    id: str
    name: str
    description: str
    op: str
    event: str
    property: str | None
    window_days: int | None
    created_at: datetime
    updated_at: datetime
    created_by: str
    refreshed_at: datetime | None

    def document(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "op": self.op,
            "event": self.event,
            "property": self.property,
            "window_days": self.window_days,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "created_by": self.created_by,
            "refreshed_at": self.refreshed_at.isoformat() if self.refreshed_at else None,
        }


def _view(row: ComputedTraitRow) -> ComputedTrait:
    return ComputedTrait(
        id=row.id,
        name=row.name,
        description=row.description,
        op=row.op,
        event=row.event,
        property=row.property,
        window_days=row.window_days,
        created_at=row.created_at,
        updated_at=row.updated_at,
        created_by=row.created_by,
        refreshed_at=row.refreshed_at,
    )


@dataclass(frozen=True, slots=True)
class Definition:
    """A definition as given, checked by :func:`check_definition`."""

    name: str
    op: str
    event: str
    property: str | None = None
    window_days: int | None = None
    description: str = ""


def check_definition(doc: Mapping[str, Any]) -> Definition:
    """The definition of a JSON document; Invalid naming each bad field otherwise."""
    errors: list[FieldError] = []
    known = {"name", "op", "event", "property", "window_days", "description"}
    errors += [FieldError(str(k)[:50], "unknown field") for k in doc if k not in known]
    name = doc.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        errors.append(
            FieldError("name", "lower-case letters, digits and _, starting with a letter (<= 64)")
        )
    elif name in compiler.BUILTINS:
        errors.append(FieldError("name", f"{name} is a built-in computed trait"))
    op = doc.get("op")
    if op not in OPS:
        errors.append(FieldError("op", f"unknown op; one of {', '.join(OPS)}"))
    event = doc.get("event")
    if not isinstance(event, str) or not event.strip() or len(event) > rules.MAX_TEXT:
        errors.append(FieldError("event", "must name the event (1 to 512 characters)"))
    prop = doc.get("property")
    if prop is not None and (
        not isinstance(prop, str)
        or len(prop) > 200
        or not all(_PATH_PART.match(part) for part in prop.split("."))
    ):
        errors.append(FieldError("property", "a dotted path inside the event's properties"))
    if prop is None and op in NEEDS_PROPERTY:
        errors.append(FieldError("property", f"{op} needs the property it aggregates"))
    days = doc.get("window_days")
    if days is not None and (
        isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= rules.MAX_DAYS
    ):
        errors.append(FieldError("window_days", f"whole days from 1 to {rules.MAX_DAYS}, or null"))
    description = doc.get("description", "")
    if not isinstance(description, str) or len(description) > 2000:
        errors.append(FieldError("description", "a string of at most 2000 characters"))
    if errors:
        raise Invalid("the computed trait is invalid", errors)
    return Definition(name, op, event, prop, days, description)  # type: ignore[arg-type]


def list_traits(*, session: Session, workspace_id: str) -> list[ComputedTrait]:
    rows = session.scalars(
        select(ComputedTraitRow)
        .where(ComputedTraitRow.workspace_id == workspace_id)
        .order_by(ComputedTraitRow.name)
    )
    return [_view(row) for row in rows]


def _row(session: Session, workspace_id: str, trait_id: str) -> ComputedTraitRow:
    row = session.get(ComputedTraitRow, trait_id)
    if row is None or row.workspace_id != workspace_id:
        found = session.scalar(
            select(ComputedTraitRow).where(
                ComputedTraitRow.workspace_id == workspace_id, ComputedTraitRow.name == trait_id
            )
        )
        if found is None:
            raise NotFound(f"no computed trait {trait_id[:64]!r} in this workspace")
        return found
    return row


def get_trait(*, session: Session, workspace_id: str, trait_id: str) -> ComputedTrait:
    """A computed trait by id or name (NotFound)."""
    return _view(_row(session, workspace_id, trait_id))


def custom_traits(*, session: Session, workspace_id: str) -> dict[str, compiler.Custom]:
    """The workspace's computed traits as the compiler reads them, by name."""
    rows = session.execute(
        select(ComputedTraitRow.name, ComputedTraitRow.id, ComputedTraitRow.op).where(
            ComputedTraitRow.workspace_id == workspace_id
        )
    )
    return {
        name: compiler.Custom(id=tid, default=0 if op in ZERO_DEFAULT else None)
        for name, tid, op in rows
    }


def create_trait(
    *, session: Session, workspace_id: str, definition: Definition, actor: str
) -> ComputedTrait:
    """Store a new computed trait (Conflict: the name is taken); its values are computed by
    the caller's refresh."""
    taken = session.scalar(
        select(func.count())
        .select_from(ComputedTraitRow)
        .where(ComputedTraitRow.workspace_id == workspace_id)
    )
    if (taken or 0) >= MAX_TRAITS:
        raise Invalid("too many computed traits", [FieldError("name", f"at most {MAX_TRAITS}")])
    if session.scalar(
        select(ComputedTraitRow.id).where(
            ComputedTraitRow.workspace_id == workspace_id,
            ComputedTraitRow.name == definition.name,
        )
    ):
        raise Conflict(f"a computed trait named {definition.name} exists")
    now = utcnow()
    row = ComputedTraitRow(
        id=str(uuid.uuid4()),
        workspace_id=workspace_id,
        name=definition.name,
        description=definition.description,
        op=definition.op,
        event=definition.event,
        property=definition.property,
        window_days=definition.window_days,
        created_at=now,
        updated_at=now,
        created_by=actor,
    )
    session.add(row)
    session.flush()
    return _view(row)


def update_trait(
    *, session: Session, workspace_id: str, trait_id: str, definition: Definition
) -> ComputedTrait:
    """Change a computed trait (its name stays: segment rules name it); its values are
    recomputed by the caller's refresh."""
    row = _row(session, workspace_id, trait_id)
    if definition.name != row.name:
        raise Invalid(
            "a computed trait cannot be renamed (segments read it by name)",
            [FieldError("name", f"must stay {row.name}")],
        )
    row.description, row.op, row.event = definition.description, definition.op, definition.event
    row.property, row.window_days = definition.property, definition.window_days
    row.updated_at = utcnow()
    session.flush()
    return _view(row)


def delete_trait(*, session: Session, workspace_id: str, trait_id: str) -> ComputedTrait:
    """Delete a computed trait and its values (the caller checked no segment reads it)."""
    row = _row(session, workspace_id, trait_id)
    found = _view(row)
    session.execute(delete(ComputedValueRow).where(ComputedValueRow.trait_id == row.id))
    session.delete(row)
    session.flush()
    return found


# --- materialising -------------------------------------------------------------------------------


def refresh_values(
    *,
    session: Session,
    workspace_id: str,
    now: datetime | None = None,
    members: Mapping[str, str] | None = None,
    only: Iterable[str] | None = None,
) -> int:
    """Recompute the values of the workspace's computed traits (those named or with ids in
    ``only``, else all) for every unified profile, or only for the unified profiles whose
    members are in ``members`` (member id -> canonical id, as :func:`members_of` gives);
    returns how many values were written or removed."""
    now = now or utcnow()
    rows = session.scalars(
        select(ComputedTraitRow).where(ComputedTraitRow.workspace_id == workspace_id)
    ).all()
    wanted = set(only) if only is not None else None
    changed = 0
    for row in rows:
        if wanted is not None and row.id not in wanted and row.name not in wanted:
            continue
        fresh = _values(session, workspace_id, row, now, members)
        changed += _store(session, workspace_id, row.id, fresh, members)
        row.refreshed_at = now
    session.flush()
    return changed


def value_changes(
    *, session: Session, workspace_id: str, trait_id: str, now: datetime
) -> dict[str, Any]:
    """What a full refresh of one computed trait would change, computed in a read: each
    unified profile whose value differs from the stored one -> its new value (None: the value
    goes). :func:`apply_values` writes a part of it."""
    row = _row(session, workspace_id, trait_id)
    fresh = _values(session, workspace_id, row, now, None)
    stored = _stored(session, workspace_id, trait_id, None)
    changes: dict[str, Any] = {pid: None for pid in stored if pid not in fresh}
    changes.update(
        {pid: value for pid, value in fresh.items() if pid not in stored or stored[pid] != value}
    )
    return changes


def apply_values(
    *, session: Session, workspace_id: str, trait_id: str, values: Mapping[str, Any]
) -> int:
    """Write new values of one computed trait for these unified profiles (None: remove it),
    against what is stored now; returns how many were written or removed."""
    _row(session, workspace_id, trait_id)  # NotFound once deleted: nothing to write
    fresh = {pid: value for pid, value in values.items() if value is not None}
    return _store(session, workspace_id, trait_id, fresh, {pid: pid for pid in values})


def mark_refreshed(*, session: Session, workspace_id: str, trait_id: str, now: datetime) -> None:
    """Record that the computed trait's values were refreshed in full at ``now``."""
    _row(session, workspace_id, trait_id).refreshed_at = now


def members_of(
    session: Session, workspace_id: str, canonical_ids: Collection[str]
) -> dict[str, str]:
    """Every member profile of the given unified profiles -> its canonical id."""
    found = bulk.members_many(
        session=session, workspace_id=workspace_id, canonical_ids=list(canonical_ids)
    )
    return {member: canonical for canonical, ms in found.items() for member in ms}


def _values(
    session: Session,
    workspace_id: str,
    row: ComputedTraitRow,
    now: datetime,
    members: Mapping[str, str] | None,
) -> dict[str, Any]:
    since = now - timedelta(days=row.window_days) if row.window_days else None
    if row.property is None:  # count, first, last: the store aggregates
        return _sql_values(session, workspace_id, row, since, members)
    path = row.property.split(".")
    per_member: dict[str, list[tuple[datetime, Any]]] = {}
    for part in ingest_feed.event_property_rows(
        session=session,
        workspace_id=workspace_id,
        event=row.event,
        path=path,
        since=since,
        profile_ids=None if members is None else list(members),
    ):
        for profile_id, ts, value in part:
            per_member.setdefault(str(profile_id), []).append((ts, value))  # type: ignore[arg-type]
    owner = (
        members
        if members is not None
        else profiles.canonical_map_many(
            session=session, workspace_id=workspace_id, profile_ids=list(per_member)
        )
    )
    grouped: dict[str, list[tuple[datetime, Any]]] = {}
    for member, seen in per_member.items():
        canonical = owner.get(member)
        if canonical is not None:
            grouped.setdefault(canonical, []).extend(seen)
    out: dict[str, Any] = {}
    for canonical, seen in grouped.items():
        value = aggregate(row.op, seen)
        if value is not None:
            out[canonical] = value
    return out


def _sql_values(
    session: Session,
    workspace_id: str,
    row: ComputedTraitRow,
    since: datetime | None,
    members: Mapping[str, str] | None,
) -> dict[str, Any]:
    events = ingest_feed.track_select(workspace_id, row.event, since).subquery()
    pairs = bulk.membership_select(workspace_id).subquery()
    agg = {"count": func.count(), "first": func.min(events.c.timestamp)}.get(
        row.op, func.max(events.c.timestamp)
    )
    stmt = (
        select(pairs.c.canonical_id, agg)
        .select_from(events.join(pairs, pairs.c.member_id == events.c.profile_id))
        .group_by(pairs.c.canonical_id)
    )
    out: dict[str, Any] = {}
    if members is None:
        parts = [stmt]
    else:
        owners = sorted(set(members.values()))
        parts = [
            stmt.where(pairs.c.canonical_id.in_(owners[i : i + CHUNK]))
            for i in range(0, len(owners), CHUNK)
        ]
    for part in parts:
        for canonical, value in session.connection().execute(part):
            out[canonical] = value if row.op == "count" else _iso(value)
    return out


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)  # SQLite hands back text for an aggregate of timestamps


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if rules.is_number(value) else None
    if isinstance(value, str):
        try:
            parsed = Decimal(value.strip())
        except InvalidOperation:
            return None
        return float(parsed) if parsed.is_finite() else None
    return None


def _scalar(value: Any) -> rules.Scalar | None:
    if isinstance(value, str):
        return value[: rules.MAX_TEXT]
    if isinstance(value, bool) or rules.is_number(value):
        return value  # type: ignore[no-any-return]
    return None


def aggregate(op: str, seen: list[tuple[datetime, Any]]) -> Any:
    """One profile's value of ``op`` over its events' ``(timestamp, property value)``
    (pure); None when nothing counts (no numeric value for a sum, say)."""
    ordered = sorted(seen, key=lambda pair: pair[0])
    if op == "count":
        return len(ordered)
    if op in ("sum", "avg"):
        numbers = [n for n in (_number(v) for _, v in ordered) if n is not None]
        if not numbers:
            return None
        total = round(sum(numbers), 6)
        return total if op == "sum" else round(total / len(numbers), 6)
    scalars = [(ts, s) for ts, s in ((ts, _scalar(v)) for ts, v in ordered) if s is not None]
    if not scalars:
        return None
    if op == "first":
        return scalars[0][1]
    if op == "last":
        return scalars[-1][1]
    if op == "unique":
        distinct = {(type(s).__name__, s): s for _, s in scalars}
        return sorted(distinct.values(), key=lambda s: (type(s).__name__, str(s)))[:MAX_UNIQUE]
    counts = Counter((type(s).__name__, s) for _, s in scalars)  # most_frequent
    latest = {(type(s).__name__, s): i for i, (_, s) in enumerate(scalars)}
    best = max(counts, key=lambda key: (counts[key], latest[key]))
    return best[1]


def _stored(
    session: Session, workspace_id: str, trait_id: str, scope: Collection[str] | None
) -> dict[str, Any]:
    """The computed trait's stored values (of the profiles in ``scope`` only, when given)."""
    v = ComputedValueRow
    query = select(v.profile_id, v.value).where(
        v.workspace_id == workspace_id, v.trait_id == trait_id
    )
    if scope is None:
        return dict(session.connection().execute(query).all())
    stored: dict[str, Any] = {}
    ids = sorted(scope)
    for start in range(0, len(ids), CHUNK):
        stored.update(
            session.execute(query.where(v.profile_id.in_(ids[start : start + CHUNK]))).all()
        )
    return stored


def _store(
    session: Session,
    workspace_id: str,
    trait_id: str,
    fresh: Mapping[str, Any],
    members: Mapping[str, str] | None,
) -> int:
    """Write the differences between ``fresh`` and what is stored (of the restricted profiles,
    when ``members`` restricts)."""
    v = ComputedValueRow
    scope = None if members is None else set(members) | set(members.values())
    stored = _stored(session, workspace_id, trait_id, scope)
    gone = [pid for pid in stored if pid not in fresh]
    new = [
        {"trait_id": trait_id, "profile_id": pid, "workspace_id": workspace_id, "value": value}
        for pid, value in fresh.items()
        if pid not in stored
    ]
    changed = [
        {"t": trait_id, "p": pid, "value": value}
        for pid, value in fresh.items()
        if pid in stored and stored[pid] != value
    ]
    for start in range(0, len(gone), CHUNK):
        session.execute(
            delete(v).where(v.trait_id == trait_id, v.profile_id.in_(gone[start : start + CHUNK]))
        )
    for start in range(0, len(new), WRITE_BATCH):
        session.execute(insert(v), new[start : start + WRITE_BATCH])
    if changed:
        table = cast(Table, v.__table__)
        stmt = (
            update(table)
            .where(table.c.trait_id == bindparam("t"), table.c.profile_id == bindparam("p"))
            .values(value=bindparam("value"))
        )
        for start in range(0, len(changed), WRITE_BATCH):
            session.connection().execute(stmt, changed[start : start + WRITE_BATCH])
    return len(gone) + len(new) + len(changed)


def erase_values(*, session: Session, workspace_id: str, profile_ids: Collection[str]) -> int:
    """Delete the computed values of these profiles (an erasure)."""
    ids = sorted(set(profile_ids))
    gone = 0
    for start in range(0, len(ids), CHUNK):
        result = session.execute(
            delete(ComputedValueRow).where(
                ComputedValueRow.workspace_id == workspace_id,
                ComputedValueRow.profile_id.in_(ids[start : start + CHUNK]),
            )
        )
        gone += int(getattr(result, "rowcount", 0) or 0)
    return gone

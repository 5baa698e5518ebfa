"""Journeys' triggers: what enrolls a profile, read set-based from cursors, and what makes an
enrollment leave early (``exit_on``).

One round reads, for the workspace's active journeys:

- applied events after the event cursor (``ingest.feed.events_after``), member profiles mapped
  to unified ones in one pass: trigger events enroll, ``exit_on`` events end enrollments;
- segment membership changes after the change cursor (``audiences.service.changes_after``);
- the daily scans (every ``scan_minutes``): date traits whose day (``days_before`` it) is today
  in the customer's time zone, and people whose inactivity crossed ``days`` since the last scan.

Candidates are decided together: one active enrollment per journey and **person**, re-entry
only after ``reentry.after_days`` (never by default), and the new enrollments are written with
one executemany. A person is a unified profile as it is now: a candidate named by a profile
merged away since is enrolled as the profile it was merged into, and the enrollments of every
member profile count (one enrolled before a merge keeps the merged person from entering again).
An enrollment that ended because of a merge (``merged``) does not count against re-entry, so a
person separated again by an unmerge can enter at their next trigger. Trigger contexts hold
ids, names and times, never a personal value.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, and_, insert, select, update
from sqlalchemy.orm import Session

from consentry.config import JourneySettings
from consentry.ingest import feed as events_feed
from consentry.journeys.models import (
    ACTIVE,
    EXITED,
    MERGED,
    JourneyDefinition,
    anniversary_is,
    zone_of,
)
from consentry.journeys.tables import EnrollmentRow, TriggerCursorRow
from consentry.platform.db import Bulk, one_of
from consentry.profiles import bulk as profiles_bulk

ENROLLMENTS = cast(Table, EnrollmentRow.__table__)
CHUNK = 500
_INSERT_ENROLLMENTS = Bulk(insert(ENROLLMENTS))


@dataclass(frozen=True, slots=True)
class ActiveJourney:
    """An active journey as the engine runs it: its current version's definition."""

    id: str
    version: int
    definition: JourneyDefinition
    activated_at: datetime
    scanned_at: datetime | None


@dataclass(slots=True)
class Candidate:
    """A profile a trigger would enroll; ``order`` is the trigger event's id (0 for others),
    so an ``exit_on`` event later in the same batch ends it."""

    journey: ActiveJourney
    profile_id: str
    context: dict[str, Any]
    order: int = 0


@dataclass(frozen=True, slots=True)
class Exit:
    """An ``exit_on`` event of a profile for a journey."""

    journey_id: str
    profile_id: str
    event: str
    order: int


@dataclass(slots=True)
class TriggerReport:
    """What one round of triggers read and did."""

    events: int = 0
    changes: int = 0
    scanned: int = 0
    candidates: int = 0
    enrolled: int = 0
    exited: int = 0
    scanned_journeys: list[str] = field(default_factory=list)


def cursor_of(session: Session, workspace_id: str, now: datetime) -> TriggerCursorRow:
    """The workspace's trigger cursor; a new one starts at the events applied so far (the past
    triggers nothing) and at the first membership change."""
    cursor = session.get(TriggerCursorRow, workspace_id)
    if cursor is None:
        cursor = TriggerCursorRow(
            workspace_id=workspace_id,
            last_event_id=events_feed.last_applied_event_id(
                session=session, workspace_id=workspace_id
            ),
            last_change_id=0,
            last_scan_at=None,
            updated_at=now,
        )
        session.add(cursor)
        session.flush()
    return cursor


def read_triggers(
    session: Session,
    *,
    workspace_id: str,
    journeys: Sequence[ActiveJourney],
    now: datetime,
    settings: JourneySettings,
) -> TriggerReport:
    """Read every trigger since the cursors, enroll and exit; the cursors move in the caller's
    transaction, so a round is applied exactly once."""
    report = TriggerReport()
    cursor = cursor_of(session, workspace_id, now)
    candidates: list[Candidate] = []
    exits: list[Exit] = []
    _event_triggers(
        session, workspace_id, journeys, now, settings, cursor, report, candidates, exits
    )
    _segment_triggers(session, workspace_id, journeys, settings, cursor, report, candidates)
    _scans(session, workspace_id, journeys, now, settings, cursor, report, candidates)
    cursor.updated_at = now
    report.candidates = len(candidates)
    report.exited = exit_enrollments(session, workspace_id=workspace_id, exits=exits, now=now)
    enrolled, exited_at_once = enroll(
        session, workspace_id=workspace_id, candidates=candidates, exits=exits, now=now
    )
    report.enrolled, report.exited = enrolled, report.exited + exited_at_once
    session.flush()
    return report


# --- events --------------------------------------------------------------------------------------


def _event_triggers(
    session: Session,
    workspace_id: str,
    journeys: Sequence[ActiveJourney],
    now: datetime,
    settings: JourneySettings,
    cursor: TriggerCursorRow,
    report: TriggerReport,
    candidates: list[Candidate],
    exits: list[Exit],
) -> None:
    starts: dict[str, list[ActiveJourney]] = defaultdict(list)
    ends: dict[str, list[ActiveJourney]] = defaultdict(list)
    for j in journeys:
        if j.definition.trigger.type == "event" and j.definition.trigger.event:
            starts[j.definition.trigger.event].append(j)
        if j.definition.exit_on_event:
            ends[j.definition.exit_on_event].append(j)
    if not starts and not ends:  # nothing listens: the cursor skips ahead
        cursor.last_event_id = events_feed.last_applied_event_id(
            session=session, workspace_id=workspace_id
        )
        return
    rows = events_feed.events_after(
        session=session,
        workspace_id=workspace_id,
        after_id=cursor.last_event_id,
        limit=settings.trigger_batch,
    )
    if not rows:
        return
    report.events = len(rows)
    cursor.last_event_id = int(cast(int, rows[-1][0]))
    oldest = now - timedelta(hours=settings.max_trigger_age_hours)
    wanted = [
        r
        for r in rows
        if r[3] is not None
        and r[1] == "track"
        and (r[2] in starts or r[2] in ends)
        and cast(datetime, r[4]) >= oldest
    ]
    if not wanted:
        return
    canonical = profiles_bulk.canonical_map_many(
        session=session, workspace_id=workspace_id, profile_ids={str(r[3]) for r in wanted}
    )
    for event_id, _, name, member, timestamp in wanted:
        profile = canonical.get(str(member))
        if profile is None:
            continue
        event_id, name = int(cast(int, event_id)), str(name)
        for j in starts.get(name, ()):
            context: dict[str, Any] = {
                "type": "event",
                "event": name,
                "event_id": event_id,
                "at": cast(datetime, timestamp).isoformat(),
            }
            candidates.append(Candidate(j, profile, context, event_id))
        for j in ends.get(name, ()):
            exits.append(Exit(j.id, profile, name, event_id))


# --- segments ------------------------------------------------------------------------------------


def _segment_triggers(
    session: Session,
    workspace_id: str,
    journeys: Sequence[ActiveJourney],
    settings: JourneySettings,
    cursor: TriggerCursorRow,
    report: TriggerReport,
    candidates: list[Candidate],
) -> None:
    listening: dict[tuple[str, bool], list[ActiveJourney]] = defaultdict(list)
    for j in journeys:
        trigger = j.definition.trigger
        if trigger.type in ("segment_entered", "segment_exited") and trigger.segment_id:
            listening[(trigger.segment_id, trigger.type == "segment_entered")].append(j)
    from consentry.audiences import service as audiences

    if not listening:  # nothing listens: the cursor skips ahead (as the event cursor does)
        cursor.last_change_id = audiences.last_change_id(session=session, workspace_id=workspace_id)
        return
    changes = audiences.changes_after(
        session=session,
        workspace_id=workspace_id,
        after_id=cursor.last_change_id,
        limit=settings.trigger_batch,
    )
    if not changes:
        return
    report.changes = len(changes)
    cursor.last_change_id = changes[-1].id
    for change in changes:
        for j in listening.get((change.segment_id, change.entered), ()):
            if change.at < j.activated_at:  # a change from before the journey was switched on
                continue
            context = {
                "type": "segment_entered" if change.entered else "segment_exited",
                "segment_id": change.segment_id,
                "change_id": change.id,
                "at": change.at.isoformat(),
            }
            candidates.append(Candidate(j, change.profile_id, context))


# --- daily scans ---------------------------------------------------------------------------------


def _scans(
    session: Session,
    workspace_id: str,
    journeys: Sequence[ActiveJourney],
    now: datetime,
    settings: JourneySettings,
    cursor: TriggerCursorRow,
    report: TriggerReport,
    candidates: list[Candidate],
) -> None:
    every = timedelta(minutes=settings.scan_minutes)
    due = [
        j
        for j in journeys
        if j.definition.trigger.type in ("date_trait", "inactivity")
        and (j.scanned_at is None or j.scanned_at <= now - every)
    ]
    for j in due:
        trigger = j.definition.trigger
        before = len(candidates)
        if trigger.type == "inactivity":
            days = timedelta(days=trigger.days or 0)
            start = (j.scanned_at or j.activated_at) - days
            for profile in profiles_bulk.lapsed_between(
                session=session, workspace_id=workspace_id, since=start, until=now - days
            ):
                context = {"type": "inactivity", "days": trigger.days, "at": now.isoformat()}
                candidates.append(Candidate(j, profile, context))
        else:
            assert trigger.trait is not None
            for part in profiles_bulk.trait_holders(
                session=session, workspace_id=workspace_id, key=trigger.trait
            ):
                candidates.extend(
                    Candidate(
                        j,
                        profile,
                        {"type": "date_trait", "trait": trigger.trait, "at": now.isoformat()},
                    )
                    for profile in _anniversaries(
                        session, workspace_id, part, now, trigger.days_before, settings
                    )
                )
        report.scanned += len(candidates) - before
        report.scanned_journeys.append(j.id)
    if due:
        cursor.last_scan_at = now


def _anniversaries(
    session: Session,
    workspace_id: str,
    holders: Sequence[tuple[str, Any]],
    now: datetime,
    days_before: int,
    settings: JourneySettings,
) -> list[str]:
    """The profiles among ``holders`` whose date falls ``days_before`` days from today in
    their own time zone (their ``timezone`` trait, else the default)."""
    zones = profiles_bulk.current_traits_many(
        session=session,
        workspace_id=workspace_id,
        canonical_ids=[p for p, _ in holders],
        keys=["timezone"],
    )
    found = []
    for profile, value in holders:
        zone = zone_of(zones.get(profile, {}).get("timezone"), settings.default_timezone)
        if anniversary_is(value, now.astimezone(zone).date(), days_before):
            found.append(profile)
    return found


# --- enrolling and exiting -----------------------------------------------------------------------


def exit_values(now: datetime, reason: str) -> dict[str, Any]:
    """The values of active enrollments that end as ``exited`` (``open_profile_id`` freed, so
    the profile may enter again)."""
    return {
        "status": EXITED,
        "open_profile_id": None,
        "step": None,
        "due_at": None,
        "ended_at": now,
        "end_reason": reason[:200],
    }


def exit_enrollments(
    session: Session, *, workspace_id: str, exits: Iterable[Exit], now: datetime
) -> int:
    """End the active enrollments the ``exit_on`` events name (status ``exited``): the
    person's, whichever of their member profiles it was enrolled under."""
    by_journey: dict[tuple[str, str], set[str]] = defaultdict(set)
    for e in exits:
        by_journey[(e.journey_id, e.event)].add(e.profile_id)
    if not by_journey:
        return 0
    _, members = profiles_bulk.people_of(
        session=session,
        workspace_id=workspace_id,
        profile_ids={p for ps in by_journey.values() for p in ps},
    )
    ended = 0
    for (journey_id, event), people in by_journey.items():
        ids = sorted({m for p in people for m in members.get(p, [p])})
        for start in range(0, len(ids), CHUNK):
            result = session.execute(
                update(ENROLLMENTS)
                .where(
                    ENROLLMENTS.c.journey_id == journey_id,
                    ENROLLMENTS.c.open_profile_id.in_(ids[start : start + CHUNK]),
                )
                .values(exit_values(now, f"exit_on: {event}"))
            )
            ended += cast(Any, result).rowcount or 0
    return ended


def _history(
    session: Session, journey_id: str, owner: dict[str, str], members: Sequence[str]
) -> dict[str, tuple[bool, datetime]]:
    """Per person (unified profile, through ``owner``: member id -> person) that was ever
    enrolled in the journey under any of ``members``: whether they are now, and their latest
    entry. Enrollments a merge ended are left out: they say nothing of the person's own way."""
    found: dict[str, tuple[bool, datetime]] = {}
    e = ENROLLMENTS.c
    postgres = session.get_bind().dialect.name == "postgresql"
    chunk = 5000 if postgres else CHUNK
    for start in range(0, len(members), chunk):
        part = list(members[start : start + chunk])
        among = one_of(session, e.profile_id, part)
        rows = session.execute(
            select(e.profile_id, e.open_profile_id, e.entered_at, e.end_reason).where(
                and_(e.journey_id == journey_id, among)
            )
        )
        for profile, open_profile, entered, reason in rows:
            if reason == MERGED:
                continue
            person = owner.get(profile, profile)
            was_open, latest = found.get(person, (False, entered))
            found[person] = (was_open or open_profile is not None, max(latest, entered))
    return found


def enroll(
    session: Session,
    *,
    workspace_id: str,
    candidates: Sequence[Candidate],
    exits: Sequence[Exit] = (),
    now: datetime,
) -> tuple[int, int]:
    """Write the enrollments the candidates earn (one per journey and person at a time,
    re-entry rules applied) in one executemany; a candidate that an ``exit_on`` event later
    in the same batch ends is written as exited. Returns (enrolled, of them exited at once)."""
    if not candidates:
        return 0, 0
    owner, members = profiles_bulk.people_of(
        session=session, workspace_id=workspace_id, profile_ids={c.profile_id for c in candidates}
    )
    by_journey: dict[str, list[Candidate]] = defaultdict(list)
    for c in candidates:
        person = owner.get(c.profile_id)
        if person is None:  # erased (or never known) since the trigger
            continue
        c.profile_id = person
        by_journey[c.journey.id].append(c)
    last_exit: dict[tuple[str, str], Exit] = {}
    for e in exits:
        key = (e.journey_id, owner.get(e.profile_id, e.profile_id))
        if key not in last_exit or e.order > last_exit[key].order:
            last_exit[key] = e
    rows: list[dict[str, Any]] = []
    exited = 0
    for journey_id, found in by_journey.items():
        journey = found[0].journey
        people = sorted({c.profile_id for c in found})
        history = _history(
            session, journey_id, owner, sorted({m for p in people for m in members.get(p, [p])})
        )
        after = journey.definition.reentry_after_days
        # a journey that starts with a wait: the wait is taken at entry (no second write)
        opening = journey.definition.step(journey.definition.first)
        start, due = journey.definition.first, now
        if opening.type == "wait":
            start, due = journey.definition.after(opening), now + timedelta(hours=opening.hours)
        taken: set[str] = set()
        for c in found:
            if c.profile_id in taken:
                continue
            past = history.get(c.profile_id)
            if past is not None:
                is_open, latest = past
                if is_open or after is None or latest > now - timedelta(days=after):
                    continue
            taken.add(c.profile_id)
            row: dict[str, Any] = {
                "workspace_id": workspace_id,
                "journey_id": journey_id,
                "version": journey.version,
                "profile_id": c.profile_id,
                "open_profile_id": c.profile_id,
                "status": ACTIVE,
                "step": start,
                "due_at": due,
                "variant": None,
                "trigger": c.context,
                "entered_at": now,
                "ended_at": None,
                "end_reason": None,
            }
            ended = last_exit.get((journey_id, c.profile_id))
            if ended is not None and ended.order > c.order:
                row.update(exit_values(now, f"exit_on: {ended.event}"))
                exited += 1
            rows.append(row)
    _insert(session, rows)
    return len(rows), exited


def _insert(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Write new enrollments: PostgreSQL by ``COPY FROM STDIN`` (a batch of thousands in one
    stream), SQLite by one executemany; both in the session's transaction."""
    if not rows:
        return
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        _INSERT_ENROLLMENTS.run(connection, rows)
        return
    from psycopg.types.json import Jsonb

    raw: Any = connection.connection.dbapi_connection
    columns = list(rows[0])  # every row is written by enroll with the same keys
    statement = f"COPY {ENROLLMENTS.name} ({', '.join(columns)}) FROM STDIN"
    with raw.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row([Jsonb(row[c]) if c == "trigger" else row[c] for c in columns])

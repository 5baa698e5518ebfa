"""Segments: define, preview, refresh, read membership and its history.

Membership is stored (``segment_members``) and every entry and exit is recorded
(``segment_membership_changes``, read by journeys through :func:`changes_after`). Two ways
keep it current, both in the caller's transaction and serialised per workspace:

- :func:`refresh` (full): every computed trait, then every segment in dependency order (a
  segment read by another first), each evaluated over the whole workspace and diffed against
  its stored members. It catches everything: time windows sliding, consent changing, orders
  imported, merges, analytics re-runs.
- :func:`catch_up` (incremental, every few seconds): the events applied since the cursor name
  the unified profiles that changed; their computed values are recomputed, and the segments
  whose rule reads events, traits or computed traits (or a segment re-evaluated before them)
  are evaluated for those profiles only. Members of a unified profile that was merged away are
  in that set too, so they leave.

The public interface other capabilities use: :func:`get_segment`, :func:`member_ids`,
:func:`is_member`, :func:`matches`, :func:`validate_rule`, :func:`changes_after`,
:func:`last_change_id`, :func:`erase_subject`.
"""

from __future__ import annotations

import heapq
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from consentry.audiences import compiler, computed, rules
from consentry.audiences.tables import (
    AudienceCursorRow,
    ComputedTraitRow,
    SegmentChangeRow,
    SegmentMemberRow,
    SegmentRow,
)
from consentry.consent import ledger as consent_ledger
from consentry.consent import service as consent
from consentry.consent.models import CHANNELS
from consentry.errors import Conflict, FieldError, Invalid, NotFound
from consentry.ingest import feed as ingest_feed
from consentry.platform.db import Database, lock_workspace, utcnow
from consentry.profiles import merging as profile_merges
from consentry.profiles import service as profiles

CHUNK = 500
WRITE_BATCH = 5_000
MAX_SEGMENTS = 500  # per workspace
INCREMENTAL = frozenset({"events", "traits", "computed"})
CATCH_UP_EVENTS = 10_000  # events (and consent records) one catch-up reads at most
STEP_CHANGES = 2_000  # entries and exits (or computed values) one write transaction of a
# full refresh applies at most: other writers (ingestion) get in between
MERGE_OVERLAP = timedelta(seconds=30)  # merges are looked at again this long after: one that
# commits later than that after it was made is left to the next full refresh


# --- views ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Segment:
    """A segment as stored."""

    id: str
    name: str
    description: str
    rule: dict[str, Any]
    text: str
    kinds: list[str]
    reads_segments: list[str]
    member_count: int
    created_at: datetime
    updated_at: datetime
    created_by: str
    updated_by: str
    refreshed_at: datetime | None

    def document(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "rule": self.rule,
            "text": self.text,
            "kinds": self.kinds,
            "reads_segments": self.reads_segments,
            "member_count": self.member_count,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "created_by": self.created_by,
            "updated_by": self.updated_by,
            "refreshed_at": self.refreshed_at.isoformat() if self.refreshed_at else None,
        }


def _view(row: SegmentRow) -> Segment:
    return Segment(
        id=row.id,
        name=row.name,
        description=row.description,
        rule=row.rule,
        text=row.text,
        kinds=list(row.kinds),
        reads_segments=list(row.reads_segments),
        member_count=row.member_count,
        created_at=row.created_at,
        updated_at=row.updated_at,
        created_by=row.created_by,
        updated_by=row.updated_by,
        refreshed_at=row.refreshed_at,
    )


@dataclass(frozen=True, slots=True)
class MembershipChange:
    """A unified profile entered (``entered``) or left a segment at ``at``."""

    id: int
    segment_id: str
    profile_id: str
    entered: bool
    at: datetime

    def document(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "segment_id": self.segment_id,
            "profile_id": self.profile_id,
            "entered": self.entered,
            "at": self.at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class Member:
    profile_id: str
    since: datetime

    def document(self) -> dict[str, Any]:
        return {"profile_id": self.profile_id, "since": self.since.isoformat()}


@dataclass(frozen=True, slots=True)
class Preview:
    """What a rule would select now: how many, a few of them, its text and kinds."""

    count: int
    sample: list[str]
    text: str
    kinds: list[str]

    def document(self) -> dict[str, Any]:
        return {"count": self.count, "sample": self.sample, "text": self.text, "kinds": self.kinds}


@dataclass(slots=True)
class RefreshReport:
    """What a refresh did."""

    mode: str
    segments: int = 0
    entered: int = 0
    exited: int = 0
    values: int = 0
    events: int = 0
    consent_records: int = 0
    merges: int = 0
    profiles: int = 0
    seconds: float = 0.0
    writes: int = 0  # write transactions (a full refresh in steps)
    longest_write_s: float = 0.0  # the longest of them
    per_segment: dict[str, dict[str, int]] = field(default_factory=dict)

    def document(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "segments": self.segments,
            "entered": self.entered,
            "exited": self.exited,
            "computed_values": self.values,
            "events": self.events,
            "consent_records": self.consent_records,
            "merges": self.merges,
            "profiles": self.profiles,
            "seconds": round(self.seconds, 3),
            "writes": self.writes,
            "longest_write_s": round(self.longest_write_s, 3),
            "per_segment": self.per_segment,
        }


# --- rules checked against the workspace ---------------------------------------------------------


def _context(session: Session, workspace_id: str, now: datetime | None = None) -> compiler.Context:
    custom = computed.custom_traits(session=session, workspace_id=workspace_id)
    return compiler.Context(
        session=session,
        workspace_id=workspace_id,
        now=now or utcnow(),
        custom=custom,
        personal=profiles.personal_in(session, workspace_id),
    )


def _reads(session: Session, workspace_id: str) -> dict[str, list[str]]:
    """Each segment of the workspace -> the segments its rule reads."""
    rows = session.execute(
        select(SegmentRow.id, SegmentRow.reads_segments).where(
            SegmentRow.workspace_id == workspace_id
        )
    )
    return {sid: list(reads) for sid, reads in rows}


def _reaches(graph: Mapping[str, Sequence[str]], start: str, target: str) -> bool:
    seen: set[str] = set()
    todo = [start]
    while todo:
        node = todo.pop()
        if node == target:
            return True
        if node not in seen:
            seen.add(node)
            todo.extend(graph.get(node, ()))
    return False


def check_rule(
    *,
    session: Session,
    workspace_id: str,
    rule: Any,
    segment_id: str | None = None,
    field_name: str = "rule",
) -> rules.Rule:
    """The rule tree of a document, checked against the workspace: traits that are not
    personal, computed traits that exist and fit the op, consent purposes configured and known
    channels, segments that exist and are not read in a cycle. Invalid naming each field."""
    tree = rules.parse_rule(rule, field_name)
    errors: list[FieldError] = []
    custom = computed.custom_traits(session=session, workspace_id=workspace_id)
    graph = _reads(session, workspace_id) if rules.segments_read(tree) else {}
    personal = profiles.personal_in(session, workspace_id)
    purposes = None
    for path, leaf in rules.paths(tree, field_name):
        match leaf:
            case rules.TraitRule(trait):
                if personal(trait):
                    errors.append(
                        FieldError(
                            f"{path}.trait",
                            f"the trait {trait[:100]!r} is personal data, sealed at rest: "
                            "a segment cannot compare it",
                        )
                    )
            case rules.ComputedRule(name, condition):
                kind = compiler.kind_of_computed(name, custom)
                if kind is None:
                    errors.append(
                        FieldError(
                            f"{path}.computed",
                            f"unknown computed trait {name[:100]!r}; built in: "
                            f"{', '.join(compiler.BUILTINS)}, or one of the workspace's",
                        )
                    )
                elif condition.op not in compiler.OPS_OF_KIND[kind]:
                    errors.append(
                        FieldError(
                            f"{path}.op",
                            f"{condition.op} does not apply to {name} (a {kind}); one of "
                            + ", ".join(compiler.OPS_OF_KIND[kind]),
                        )
                    )
                elif problem := compiler.condition_problem(kind, condition):
                    errors.append(FieldError(f"{path}.value", problem))
            case rules.ConsentRule(purpose, channel):
                if purposes is None:
                    config = consent.get_config(session=session, workspace_id=workspace_id)
                    purposes = config.purpose_keys
                if purpose not in purposes:
                    errors.append(
                        FieldError(f"{path}.consent.purpose", f"unknown purpose {purpose[:100]!r}")
                    )
                if channel not in CHANNELS:
                    errors.append(
                        FieldError(
                            f"{path}.consent.channel",
                            f"unknown channel; one of {', '.join(CHANNELS)}",
                        )
                    )
            case rules.SegmentRule(other):
                if other == segment_id:
                    errors.append(FieldError(f"{path}.segment", "a segment cannot read itself"))
                elif other not in graph:
                    errors.append(
                        FieldError(
                            f"{path}.segment", f"no segment {other[:64]!r} in this workspace"
                        )
                    )
                elif segment_id is not None and _reaches(graph, other, segment_id):
                    errors.append(
                        FieldError(
                            f"{path}.segment",
                            "that segment reads this one (directly or through others): a cycle",
                        )
                    )
    if errors:
        raise Invalid("the segment rule is invalid", errors)
    return tree


def validate_rule(*, session: Session, workspace_id: str, rule: Mapping[str, Any]) -> None:
    """Invalid naming each bad field of a rule document (journeys' branches and eligibility)."""
    check_rule(session=session, workspace_id=workspace_id, rule=rule)


def describe(*, session: Session, workspace_id: str, tree: rules.Rule) -> str:
    """The readable text of a rule, segments shown by name."""
    ids = rules.segments_read(tree)
    names: dict[str, str] = {}
    if ids:
        names = dict(
            session.execute(
                select(SegmentRow.id, SegmentRow.name).where(
                    SegmentRow.workspace_id == workspace_id, SegmentRow.id.in_(sorted(ids))
                )
            ).all()
        )
    return rules.describe(tree, names)


# --- definitions ---------------------------------------------------------------------------------


def _name_of(name: Any) -> str:
    if not isinstance(name, str) or not name.strip() or len(name.strip()) > 200:
        raise Invalid("the segment needs a name", [FieldError("name", "1 to 200 characters")])
    return name.strip()


def _description_of(description: Any) -> str:
    if not isinstance(description, str) or len(description) > 2000:
        raise Invalid(
            "the description is too long", [FieldError("description", "at most 2000 characters")]
        )
    return description


def _row(session: Session, workspace_id: str, segment_id: str) -> SegmentRow:
    row = session.get(SegmentRow, segment_id)
    if row is None or row.workspace_id != workspace_id:
        raise NotFound(f"no segment {segment_id[:64]!r} in this workspace")
    return row


def _name_taken(session: Session, workspace_id: str, name: str, other_than: str | None) -> None:
    found = session.scalar(
        select(SegmentRow.id).where(
            SegmentRow.workspace_id == workspace_id, SegmentRow.name == name
        )
    )
    if found is not None and found != other_than:
        raise Conflict(f"a segment named {name[:200]!r} exists")


def get_segment(*, session: Session, workspace_id: str, segment_id: str) -> Segment:
    """A segment of the workspace (NotFound)."""
    return _view(_row(session, workspace_id, segment_id))


def list_segments(*, session: Session, workspace_id: str) -> list[Segment]:
    rows = session.scalars(
        select(SegmentRow).where(SegmentRow.workspace_id == workspace_id).order_by(SegmentRow.name)
    )
    return [_view(row) for row in rows]


def create_segment(
    *,
    session: Session,
    workspace_id: str,
    name: str,
    rule: Any,
    actor: str,
    description: str = "",
    now: datetime | None = None,
) -> tuple[Segment, RefreshReport]:
    """Check and store a segment, then evaluate its members (all of them "enter")."""
    name, description = _name_of(name), _description_of(description)
    count = session.scalar(
        select(func.count()).select_from(SegmentRow).where(SegmentRow.workspace_id == workspace_id)
    )
    if (count or 0) >= MAX_SEGMENTS:
        raise Invalid("too many segments", [FieldError("name", f"at most {MAX_SEGMENTS}")])
    _name_taken(session, workspace_id, name, None)
    tree = check_rule(session=session, workspace_id=workspace_id, rule=rule)
    now = now or utcnow()
    row = SegmentRow(
        id=str(uuid.uuid4()),
        workspace_id=workspace_id,
        name=name,
        description=description,
        rule=rules.to_document(tree),
        text=describe(session=session, workspace_id=workspace_id, tree=tree),
        kinds=sorted(rules.kinds(tree)),
        reads_segments=sorted(rules.segments_read(tree)),
        member_count=0,
        created_at=now,
        updated_at=now,
        created_by=actor,
        updated_by=actor,
    )
    session.add(row)
    session.flush()
    _ensure_cursor(session, workspace_id)
    report = refresh_segment(session=session, workspace_id=workspace_id, segment_id=row.id, now=now)
    return _view(row), report


def update_segment(
    *,
    session: Session,
    workspace_id: str,
    segment_id: str,
    actor: str,
    name: str | None = None,
    rule: Any = None,
    description: str | None = None,
    now: datetime | None = None,
) -> tuple[Segment, RefreshReport]:
    """Change a segment's name, description or rule; a new rule is evaluated at once (who no
    longer matches leaves, who now matches enters)."""
    row = _row(session, workspace_id, segment_id)
    now = now or utcnow()
    if name is not None:
        name = _name_of(name)
        _name_taken(session, workspace_id, name, row.id)
        row.name = name
    if description is not None:
        row.description = _description_of(description)
    if rule is not None:
        tree = check_rule(session=session, workspace_id=workspace_id, rule=rule, segment_id=row.id)
        row.rule = rules.to_document(tree)
        row.text = describe(session=session, workspace_id=workspace_id, tree=tree)
        row.kinds = sorted(rules.kinds(tree))
        row.reads_segments = sorted(rules.segments_read(tree))
    row.updated_at, row.updated_by = now, actor
    session.flush()
    report = (
        refresh_segment(session=session, workspace_id=workspace_id, segment_id=row.id, now=now)
        if rule is not None
        else RefreshReport("segment")
    )
    return _view(row), report


def delete_segment(*, session: Session, workspace_id: str, segment_id: str) -> Segment:
    """Delete a segment, its members and its history (Conflict while another segment reads
    it)."""
    row = _row(session, workspace_id, segment_id)
    readers = [
        name
        for name, reads in session.execute(
            select(SegmentRow.name, SegmentRow.reads_segments).where(
                SegmentRow.workspace_id == workspace_id, SegmentRow.id != row.id
            )
        )
        if row.id in reads
    ]
    if readers:
        raise Conflict(f"segments read this one: {', '.join(sorted(readers))}")
    found = _view(row)
    session.execute(delete(SegmentMemberRow).where(SegmentMemberRow.segment_id == row.id))
    session.execute(
        delete(SegmentChangeRow).where(
            SegmentChangeRow.workspace_id == workspace_id, SegmentChangeRow.segment_id == row.id
        )
    )
    session.delete(row)
    session.flush()
    return found


def preview(
    *, session: Session, workspace_id: str, rule: Any, sample: int = 10, now: datetime | None = None
) -> Preview:
    """How many unified profiles a rule selects now, and a few of them; nothing is written."""
    tree = check_rule(session=session, workspace_id=workspace_id, rule=rule)
    ctx = _context(session, workspace_id, now)
    text_form = describe(session=session, workspace_id=workspace_id, tree=tree)
    kinds = sorted(rules.kinds(tree))
    # One evaluation gives both the count and the sample: counting in the store and then
    # asking it for the first ids ran the rule twice (bench/activation.py: 7.7 s -> 3.9 s).
    found = compiler.evaluate(ctx, tree)
    return Preview(len(found), heapq.nsmallest(sample, found), text_form, kinds)


# --- computed traits (definitions live in computed.py) -------------------------------------------


def _segments_reading_computed(session: Session, workspace_id: str, name: str) -> list[SegmentRow]:
    rows = session.scalars(select(SegmentRow).where(SegmentRow.workspace_id == workspace_id))
    return [
        row
        for row in rows
        if "computed" in row.kinds
        and any(
            isinstance(leaf, rules.ComputedRule) and leaf.computed == name
            for leaf in rules.leaves(rules.parse_rule(row.rule))
        )
    ]


def create_computed_trait(
    *, session: Session, workspace_id: str, definition: Mapping[str, Any], actor: str
) -> computed.ComputedTrait:
    """Store a computed trait and compute its values for every unified profile."""
    checked = computed.check_definition(definition)
    trait = computed.create_trait(
        session=session, workspace_id=workspace_id, definition=checked, actor=actor
    )
    _ensure_cursor(session, workspace_id)
    computed.refresh_values(session=session, workspace_id=workspace_id, only=[trait.id])
    return computed.get_trait(session=session, workspace_id=workspace_id, trait_id=trait.id)


def update_computed_trait(
    *, session: Session, workspace_id: str, trait_id: str, definition: Mapping[str, Any]
) -> computed.ComputedTrait:
    """Change a computed trait; its values and the segments that read it are refreshed."""
    checked = computed.check_definition(definition)
    trait = computed.update_trait(
        session=session, workspace_id=workspace_id, trait_id=trait_id, definition=checked
    )
    computed.refresh_values(session=session, workspace_id=workspace_id, only=[trait.id])
    for row in _segments_reading_computed(session, workspace_id, trait.name):
        refresh_segment(session=session, workspace_id=workspace_id, segment_id=row.id)
    return computed.get_trait(session=session, workspace_id=workspace_id, trait_id=trait.id)


def delete_computed_trait(
    *, session: Session, workspace_id: str, trait_id: str
) -> computed.ComputedTrait:
    """Delete a computed trait (Conflict while a segment reads it)."""
    trait = computed.get_trait(session=session, workspace_id=workspace_id, trait_id=trait_id)
    readers = _segments_reading_computed(session, workspace_id, trait.name)
    if readers:
        raise Conflict(f"segments read it: {', '.join(sorted(r.name for r in readers))}")
    return computed.delete_trait(session=session, workspace_id=workspace_id, trait_id=trait.id)


# --- refreshing ----------------------------------------------------------------------------------


def _lock(session: Session, workspace_id: str) -> None:
    """One refresh of a workspace at a time (SQLite has one writer already)."""
    lock_workspace(session, workspace_id, scope="audiences")


def _ensure_cursor(session: Session, workspace_id: str) -> AudienceCursorRow:
    """The workspace's cursor; a new one starts at the events applied now (what is already
    applied is in the membership computed when a segment is created)."""
    cursor = session.get(AudienceCursorRow, workspace_id)
    if cursor is None:
        last = ingest_feed.last_applied_event_id(session=session, workspace_id=workspace_id)
        cursor = AudienceCursorRow(
            workspace_id=workspace_id, last_event_id=last, updated_at=utcnow()
        )
        session.add(cursor)
        session.flush()
    return cursor


def _ordered(session: Session, workspace_id: str) -> list[SegmentRow]:
    """The workspace's segments, those they read first (cycles are refused when saved; any
    left over come last)."""
    rows = session.scalars(select(SegmentRow).where(SegmentRow.workspace_id == workspace_id))
    pending = {row.id: row for row in sorted(rows, key=lambda row: row.created_at)}
    done: list[SegmentRow] = []
    placed: set[str] = set()
    while pending:
        ready = [
            row
            for row in pending.values()
            if all(dep in placed or dep not in pending for dep in row.reads_segments)
        ]
        if not ready:
            ready = list(pending.values())
        for row in ready:
            done.append(row)
            placed.add(row.id)
            del pending[row.id]
    return done


def _apply(
    session: Session,
    workspace_id: str,
    row: SegmentRow,
    found: set[str],
    scope: Collection[str] | None,
    now: datetime,
    *,
    by_delta: bool = False,
) -> tuple[int, int]:
    """Write the difference between ``found`` and the stored members (of ``scope`` only, when
    given): exits and entries, each recorded as a change. Returns (entered, exited). The
    member count is set (whole workspace), moved by the difference (``by_delta``) or counted
    again."""
    m = SegmentMemberRow
    stored = _stored_members(session, row.id, scope)
    entered = sorted(found - stored)
    exited = sorted(stored - found)
    for start in range(0, len(exited), CHUNK):
        session.execute(
            delete(m).where(m.segment_id == row.id, m.profile_id.in_(exited[start : start + CHUNK]))
        )
    members = [
        {"segment_id": row.id, "profile_id": pid, "workspace_id": workspace_id, "since": now}
        for pid in entered
    ]
    changes = [
        {
            "workspace_id": workspace_id,
            "segment_id": row.id,
            "profile_id": pid,
            "entered": e,
            "at": now,
        }
        for pids, e in ((exited, False), (entered, True))
        for pid in pids
    ]
    for start in range(0, len(members), WRITE_BATCH):
        session.execute(insert(m), members[start : start + WRITE_BATCH])
    for start in range(0, len(changes), WRITE_BATCH):
        session.execute(insert(SegmentChangeRow), changes[start : start + WRITE_BATCH])
    if scope is None:
        row.member_count = len(found)
    elif by_delta:  # the stored members of ``scope`` were read under the same lock: exact
        row.member_count = row.member_count + len(entered) - len(exited)
    elif entered or exited:
        row.member_count = _count_members(session, row.id)
    return len(entered), len(exited)


def _stored_members(session: Session, segment_id: str, scope: Collection[str] | None) -> set[str]:
    """The segment's stored members (of ``scope`` only, when given)."""
    m = SegmentMemberRow
    query = select(m.profile_id).where(m.segment_id == segment_id)
    if scope is None:
        return set(session.connection().execute(query).scalars())
    stored: set[str] = set()
    ids = sorted(scope)
    for start in range(0, len(ids), CHUNK):
        stored.update(
            session.execute(query.where(m.profile_id.in_(ids[start : start + CHUNK]))).scalars()
        )
    return stored


def _tally(report: RefreshReport, segment_id: str, entered: int, exited: int) -> None:
    """Count one segment's evaluation, and who entered and left it, into ``report``."""
    report.segments += 1
    report.entered += entered
    report.exited += exited
    if entered or exited:
        report.per_segment[segment_id] = {"entered": entered, "exited": exited}


def _count_members(session: Session, segment_id: str) -> int:
    m = SegmentMemberRow
    return int(
        session.scalar(select(func.count()).select_from(m).where(m.segment_id == segment_id)) or 0
    )


def _evaluate_into(
    report: RefreshReport,
    ctx: compiler.Context,
    row: SegmentRow,
    scope: Collection[str] | None,
) -> None:
    tree = rules.parse_rule(row.rule)
    try:
        found = compiler.evaluate(ctx, tree, scope)
    except LookupError:  # a computed trait deleted under it: keep the members as they are
        return
    entered, exited = _apply(ctx.session, ctx.workspace_id, row, found, scope, ctx.now)
    if scope is None:
        row.refreshed_at = ctx.now
    _tally(report, row.id, entered, exited)


def refresh_segment(
    *, session: Session, workspace_id: str, segment_id: str, now: datetime | None = None
) -> RefreshReport:
    """Evaluate one segment over the whole workspace and write who entered and left."""
    started = time.perf_counter()
    _lock(session, workspace_id)
    row = _row(session, workspace_id, segment_id)
    report = RefreshReport("segment")
    _evaluate_into(report, _context(session, workspace_id, now), row, None)
    session.flush()
    report.seconds = time.perf_counter() - started
    return report


def refresh(*, session: Session, workspace_id: str, now: datetime | None = None) -> RefreshReport:
    """The full refresh in the caller's one transaction: every computed trait's values, then
    every segment, in dependency order; the cursor moves to the events applied now. The
    server, the API and the CLI use :func:`refresh_in_steps`, which holds no long write
    transaction."""
    started = time.perf_counter()
    _lock(session, workspace_id)
    now = now or utcnow()
    cursor = _ensure_cursor(session, workspace_id)
    through = ingest_feed.last_applied_event_id(session=session, workspace_id=workspace_id)
    report = RefreshReport("full")
    report.values = computed.refresh_values(session=session, workspace_id=workspace_id, now=now)
    ctx = _context(session, workspace_id, now)
    for row in _ordered(session, workspace_id):
        _evaluate_into(report, ctx, row, None)
    cursor.last_event_id = max(cursor.last_event_id, through)
    cursor.refreshed_at = cursor.updated_at = now
    session.flush()
    report.seconds = time.perf_counter() - started
    return report


def refresh_in_steps(
    db: Database,
    *,
    workspace_id: str,
    now: datetime | None = None,
    step: int = STEP_CHANGES,
    progress: Callable[[str], None] | None = None,
) -> RefreshReport:
    """The full refresh without a long write transaction: each computed trait's values and
    each segment's members are computed in a read (outside any write transaction), then the
    differences are applied in write transactions of at most ``step`` changes each, so
    ingestion and the catch-up write in between (``progress``, when given, is told after each
    write transaction). Segments go in dependency order, each applied before the next is
    evaluated.

    A profile that changes while the refresh runs may be applied as it was when its segment
    was evaluated; the event cursor therefore moves back to the events applied when the
    refresh started, so the next catch-up evaluates everything that arrived since (again).
    A segment whose rule is changed or which is deleted meanwhile is left alone (the change
    evaluated it already)."""
    started = time.perf_counter()
    now = now or utcnow()
    report = RefreshReport("full")

    @contextmanager
    def write(what: str) -> Iterator[Session]:
        began = time.perf_counter()
        with db.write() as session:
            _lock(session, workspace_id)
            yield session
        took = time.perf_counter() - began
        report.writes += 1
        report.longest_write_s = max(report.longest_write_s, took)
        if progress is not None:
            progress(what)

    with write("cursor") as session:
        _ensure_cursor(session, workspace_id)
        through = ingest_feed.last_applied_event_id(session=session, workspace_id=workspace_id)
    with db.read() as session:
        traits = computed.list_traits(session=session, workspace_id=workspace_id)
    for trait in traits:
        try:
            with db.read() as session:
                changes = computed.value_changes(
                    session=session, workspace_id=workspace_id, trait_id=trait.id, now=now
                )
            ids = sorted(changes)
            for lo in range(0, len(ids), step):
                part = ids[lo : lo + step]
                with write(f"computed {trait.name}") as session:
                    report.values += computed.apply_values(
                        session=session,
                        workspace_id=workspace_id,
                        trait_id=trait.id,
                        values={pid: changes[pid] for pid in part},
                    )
            with write(f"computed {trait.name}") as session:
                computed.mark_refreshed(
                    session=session, workspace_id=workspace_id, trait_id=trait.id, now=now
                )
        except NotFound:  # deleted meanwhile
            continue
    with db.read() as session:
        order = [(row.id, row.updated_at) for row in _ordered(session, workspace_id)]
    for segment_id, version in order:
        with db.read() as session:
            row = session.get(SegmentRow, segment_id)
            if row is None or row.updated_at != version:
                continue
            try:
                found = compiler.evaluate(
                    _context(session, workspace_id, now), rules.parse_rule(row.rule)
                )
            except LookupError:  # a computed trait deleted under it: members kept as they are
                continue
            stored = _stored_members(session, segment_id, None)
        diff = sorted(found ^ stored)
        entered = exited = 0
        for lo in range(0, len(diff) or 1, step):
            part = diff[lo : lo + step]
            with write(f"segment {segment_id}") as session:
                current = session.get(SegmentRow, segment_id)
                if current is None or current.updated_at != version:
                    break  # changed or deleted meanwhile: that evaluated it
                chunk = set(part)
                e, x = _apply(
                    session, workspace_id, current, found & chunk, chunk, now, by_delta=True
                )
                entered, exited = entered + e, exited + x
                if lo + step >= len(diff):
                    current.refreshed_at = now
        _tally(report, segment_id, entered, exited)
    with write("cursor") as session:
        cursor = _ensure_cursor(session, workspace_id)
        # back to the events applied at the start (not past what a catch-up read meanwhile):
        # a profile changed during the refresh is evaluated again by the next catch-up
        cursor.last_event_id = through
        cursor.refreshed_at = cursor.updated_at = now
    report.seconds = time.perf_counter() - started
    return report


def catch_up(
    *,
    session: Session,
    workspace_id: str,
    now: datetime | None = None,
    limit: int = CATCH_UP_EVENTS,
) -> RefreshReport:
    """The incremental refresh: up to ``limit`` events applied after the event cursor, up to
    ``limit`` consent records after the consent cursor, and the merges and unmerges made since
    the last look name the unified profiles to re-evaluate (see the module's docstring); the
    cursors move past them."""
    started = time.perf_counter()
    _lock(session, workspace_id)
    now = now or utcnow()
    cursor = _ensure_cursor(session, workspace_id)
    events = ingest_feed.events_after(
        session=session, workspace_id=workspace_id, after_id=cursor.last_event_id, limit=limit
    )
    records = consent_ledger.subjects_after(
        session=session, workspace_id=workspace_id, after=cursor.last_consent_seq, limit=limit
    )
    looked = cursor.merges_seen_at or cursor.refreshed_at or cursor.updated_at
    merges = profile_merges.merges_changed_since(
        session=session, workspace_id=workspace_id, since=looked - MERGE_OVERLAP
    )
    report = RefreshReport(
        "incremental", events=len(events), consent_records=len(records), merges=len(merges)
    )
    touched = {str(e[3]) for e in events if e[3] is not None}
    merged = {pid for pair in merges for pid in pair}
    consented = {profile for _, profile in records}
    owners = profiles.canonical_map_many(
        session=session, workspace_id=workspace_id, profile_ids=touched | merged | consented
    )
    changed = {owners[pid] for pid in touched | merged if pid in owners}  # their facts changed
    canonicals = changed | {owners[pid] for pid in consented if pid in owners}
    report.profiles = len(canonicals)
    if canonicals or merged:
        members = computed.members_of(session, workspace_id, canonicals)
        scope = set(members) | canonicals | touched | merged
        if changed:
            report.values = computed.refresh_values(
                session=session,
                workspace_id=workspace_id,
                now=now,
                members={m: c for m, c in members.items() if c in changed},
            )
        # the kinds of facts that changed: events, traits and computed values for the people
        # events named, consent for those a consent record named; every kind on a merge (a
        # merged person's facts and consent are their members' together)
        kinds = (set(INCREMENTAL) if changed else set()) | ({"consent"} if records else set())
        ctx = _context(session, workspace_id, now)
        redone: set[str] = set()
        for row in _ordered(session, workspace_id):
            if merged or kinds & set(row.kinds) or redone & set(row.reads_segments):
                _evaluate_into(report, ctx, row, scope)
                redone.add(row.id)
    if events:
        cursor.last_event_id = int(events[-1][0])  # type: ignore[call-overload]
    if records:
        cursor.last_consent_seq = records[-1][0]
    cursor.merges_seen_at = now
    cursor.updated_at = now
    session.flush()
    report.seconds = time.perf_counter() - started
    return report


def has_audiences(*, session: Session, workspace_id: str) -> bool:
    """Whether the workspace has a segment or a computed trait to keep current."""
    for table in (SegmentRow, ComputedTraitRow):
        if session.scalar(select(table.id).where(table.workspace_id == workspace_id).limit(1)):
            return True
    return False


def full_refresh_due(
    *, session: Session, workspace_id: str, every: timedelta, now: datetime | None = None
) -> bool:
    """Whether the last full refresh is ``every`` old (or there was none)."""
    cursor = session.get(AudienceCursorRow, workspace_id)
    if cursor is None or cursor.refreshed_at is None:
        return True
    return cursor.refreshed_at <= (now or utcnow()) - every


# --- reading membership --------------------------------------------------------------------------


def member_ids(*, session: Session, workspace_id: str, segment_id: str) -> list[str]:
    """The unified profile ids in the segment now, sorted (NotFound: no such segment)."""
    row = _row(session, workspace_id, segment_id)
    m = SegmentMemberRow
    found = session.connection().execute(
        select(m.profile_id).where(m.segment_id == row.id).order_by(m.profile_id)
    )
    return list(found.scalars())


def members(
    *,
    session: Session,
    workspace_id: str,
    segment_id: str,
    limit: int = 100,
    after: str | None = None,
) -> list[Member]:
    """A page of the segment's members by profile id, after ``after``."""
    row = _row(session, workspace_id, segment_id)
    m = SegmentMemberRow
    stmt = select(m.profile_id, m.since).where(m.segment_id == row.id)
    if after:
        stmt = stmt.where(m.profile_id > after)
    rows = session.execute(stmt.order_by(m.profile_id).limit(limit))
    return [Member(pid, since) for pid, since in rows]


def _canonical(session: Session, workspace_id: str, profile_id: str) -> str | None:
    """The unified profile of ``profile_id`` (any member id), None for an unknown profile."""
    owners = profiles.canonical_map_many(
        session=session, workspace_id=workspace_id, profile_ids=[profile_id]
    )
    return owners.get(profile_id)


def is_member(*, session: Session, workspace_id: str, segment_id: str, profile_id: str) -> bool:
    """Whether the unified profile of ``profile_id`` (any member id) is in the segment now;
    False for an unknown profile (NotFound: no such segment)."""
    row = _row(session, workspace_id, segment_id)
    canonical = _canonical(session, workspace_id, profile_id)
    if canonical is None:
        return False
    return (
        session.scalar(
            select(SegmentMemberRow.profile_id).where(
                SegmentMemberRow.segment_id == row.id, SegmentMemberRow.profile_id == canonical
            )
        )
        is not None
    )


def matches(
    *,
    session: Session,
    workspace_id: str,
    rule: Mapping[str, Any],
    profile_id: str,
    now: datetime | None = None,
) -> bool:
    """Whether a rule document holds now for the unified profile of ``profile_id`` (any
    member id; False for an unknown profile). Invalid naming the field when malformed."""
    tree = check_rule(session=session, workspace_id=workspace_id, rule=rule)
    canonical = _canonical(session, workspace_id, profile_id)
    if canonical is None:
        return False
    return bool(compiler.evaluate(_context(session, workspace_id, now), tree, {canonical}))


def changes_after(
    *, session: Session, workspace_id: str, after_id: int, limit: int = 1000
) -> list[MembershipChange]:
    """Entries and exits of every segment of the workspace with an id above ``after_id``, in
    id order (journeys' segment triggers read them after a cursor)."""
    c = SegmentChangeRow
    rows = session.execute(
        select(c.id, c.segment_id, c.profile_id, c.entered, c.at)
        .where(c.workspace_id == workspace_id, c.id > after_id)
        .order_by(c.id)
        .limit(limit)
    )
    return [MembershipChange(*row) for row in rows]


def last_change_id(*, session: Session, workspace_id: str) -> int:
    """The id of the workspace's latest membership change (0 when none): where a reader of
    :func:`changes_after` that listens to nothing for now skips ahead to."""
    c = SegmentChangeRow
    found = session.scalar(select(func.max(c.id)).where(c.workspace_id == workspace_id))
    return int(found or 0)


def history(
    *,
    session: Session,
    workspace_id: str,
    segment_id: str,
    limit: int = 50,
    before_id: int | None = None,
) -> list[MembershipChange]:
    """A page of the segment's entries and exits, newest first, before ``before_id``."""
    row = _row(session, workspace_id, segment_id)
    c = SegmentChangeRow
    stmt = select(c.id, c.segment_id, c.profile_id, c.entered, c.at).where(
        c.workspace_id == workspace_id, c.segment_id == row.id
    )
    if before_id is not None:
        stmt = stmt.where(c.id < before_id)
    return [MembershipChange(*r) for r in session.execute(stmt.order_by(c.id.desc()).limit(limit))]


def change_counts(
    *, session: Session, workspace_id: str, segment_id: str, since: datetime
) -> dict[str, int]:
    """Entries and exits of the segment since ``since``."""
    row = _row(session, workspace_id, segment_id)
    c = SegmentChangeRow
    rows = session.execute(
        select(c.entered, func.count())
        .where(c.workspace_id == workspace_id, c.segment_id == row.id, c.at >= since)
        .group_by(c.entered)
    )
    counts = {"entered": 0, "exited": 0}
    for entered, n in rows:
        counts["entered" if entered else "exited"] = int(n)
    return counts


# --- erasure -------------------------------------------------------------------------------------


def erase_subject(*, session: Session, workspace_id: str, profile_ids: Sequence[str]) -> int:
    """Delete every membership, membership change and computed value of these profiles (an
    erased person: pass the canonical id and every member id). Returns the rows deleted."""
    ids = sorted(set(profile_ids))
    if not ids:
        return 0
    gone = 0
    touched: set[str] = set()
    for start in range(0, len(ids), CHUNK):
        part = ids[start : start + CHUNK]
        touched.update(
            session.execute(
                select(SegmentMemberRow.segment_id).where(
                    SegmentMemberRow.workspace_id == workspace_id,
                    SegmentMemberRow.profile_id.in_(part),
                )
            ).scalars()
        )
        for table in (SegmentMemberRow, SegmentChangeRow):
            result = session.execute(
                delete(table).where(table.workspace_id == workspace_id, table.profile_id.in_(part))
            )
            gone += int(getattr(result, "rowcount", 0) or 0)
    gone += computed.erase_values(session=session, workspace_id=workspace_id, profile_ids=ids)
    for segment_id in touched:
        row = session.get(SegmentRow, segment_id)
        if row is not None:
            row.member_count = _count_members(session, segment_id)
    session.flush()
    return gone

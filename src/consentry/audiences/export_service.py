"""Use cases of audience exports: consent-gated, manifested, streamed in batches
(docs/audience-exports.md).

An export runs in three steps. :func:`start_export` validates the request, passes privacy's
transfer gate for a partner export (``check_transfer``, or the delivery destination's
``check_destination``), reads the audience's ids (a segment's members or the given profile
ids), stores the export and records it in the audit trail. Then the audience is walked a batch
at a time (:func:`decide_batch` reads, :func:`record_batch` writes): ``consent.policy`` decides
each subject for the export's purpose and channel, the refused are counted by reason and left
out, the others' identifiers are read from their traits (opened), turned into rows (raw for a
download, normalised and hashed in the platform's layout for a partner), and listed in the
manifest with the consent record, reason and regime that let them out. :func:`finish_export`
stores the counts and the k-anonymous summary.

:func:`stream_file` runs the walk for a file (CSV or JSON) and yields its bytes;
:func:`push` runs it for a webhook destination, each batch's rows queued in the delivery
outbox in messages of ``push_batch`` rows, in the transaction that lists them in the manifest.
Reads and writes of a batch are separate short transactions, so a million-subject export never
holds the store's write lock for long and keeps a batch, never the audience, in memory.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from consentry.audiences import exports
from consentry.audiences.export_tables import AudienceExportRow, AudienceExportSubjectRow
from consentry.audiences.service import member_ids as segment_members
from consentry.config import AudienceExportSettings
from consentry.consent.models import Decision
from consentry.consent.policy import can_use_unified, check_use
from consentry.consent.service import get_config
from consentry.delivery import destinations as delivery_destinations
from consentry.delivery import outbox
from consentry.errors import FieldError, Invalid, NotFound
from consentry.platform import audit
from consentry.platform.db import Bulk, Database, utcnow
from consentry.privacy import processor_service
from consentry.profiles import service as profiles

ACTION = "audience.export"
TARGET = "audience_export"
FILE_DELIVERIES = exports.FILE_FORMATS
PUSH = "push"
RUNNING, COMPLETED, FAILED = "running", "completed", "failed"
DUPLICATE = "duplicate"  # a second id of a person already in the export
MAX_ID = 100
MAX_PAGE = 1000

Progress = Callable[[int, int], None]  # (subjects walked so far, subjects in all)


@dataclass(frozen=True, slots=True)
class ExportRequest:
    """What to export, to whom, for what."""

    purpose: str
    channel: str
    mode: str = exports.DOWNLOAD
    fields: Sequence[str] | None = None  # None: the mode's default fields
    profile_ids: Sequence[str] | None = None
    segment_id: str | None = None
    file_format: str = "csv"  # csv | json: the file's format (not used by a push)
    platform: str = "generic"  # a partner export's layout: google | meta | generic
    destination_id: str | None = None  # a partner push: the delivery destination (webhook)
    processor_id: str | None = None  # a partner file: the processor that receives it
    summary_by: Sequence[str] = exports.DEFAULT_SUMMARY_BY
    k: int | None = None  # None: the setting


@dataclass(frozen=True, slots=True)
class Plan:
    """A started export: validated, allowed through the gate, stored and audited."""

    id: str
    workspace_id: str
    request: ExportRequest
    fields: tuple[str, ...]
    delivery: str  # csv | json | push
    ids: Sequence[str] = field(repr=False)  # the audience: canonical ids, or the given ids
    resolved: bool  # ids are unified profile ids already (a segment's members)
    k: int
    default_region: str
    processor_id: str | None
    destination_channel: str | None
    trait_keys: tuple[str, ...]


@dataclass(slots=True)
class Tally:
    """What a walk has done so far."""

    subjects: int = 0
    batches: int = 0
    seq: int = 0
    left_out: Counter[str] = field(default_factory=Counter)
    seen: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class Batch:
    """One batch decided and read: the rows to write and the manifest entries that justify
    them (one per row, same order)."""

    rows: list[list[Any]]
    manifest: list[tuple[str, Decision]]
    summary_values: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class ExportRecord:
    """An export as stored (no personal data)."""

    id: str
    created_at: datetime
    finished_at: datetime | None
    actor: str
    mode: str
    delivery: str
    platform: str | None
    purpose: str
    channel: str
    source: str
    destination_id: str | None
    processor_id: str | None
    fields: list[str]
    status: str
    subjects: int
    batches: int
    left_out: dict[str, int]
    summary: dict[str, Any] | None

    def document(self) -> dict[str, Any]:
        """The JSON form: the manifest summary."""
        return {
            "id": self.id,
            "created_at": self.created_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "actor": self.actor,
            "mode": self.mode,
            "delivery": self.delivery,
            "platform": self.platform,
            "purpose": self.purpose,
            "channel": self.channel,
            "source": self.source,
            "destination_id": self.destination_id,
            "processor_id": self.processor_id,
            "fields": list(self.fields),
            "status": self.status,
            "subjects": self.subjects,
            "left_out": dict(sorted(self.left_out.items())),
            "batches": self.batches,
            "summary": self.summary,
        }


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """One exported subject and the consent decision that let it out."""

    seq: int
    profile_id: str
    record_id: str | None
    reason: str
    regime: str

    def document(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "profile_id": self.profile_id,
            "record_id": self.record_id,
            "reason": self.reason,
            "regime": self.regime,
        }


# --- starting -----------------------------------------------------------------------------------


def request_problems(request: ExportRequest, settings: AudienceExportSettings) -> list[FieldError]:
    """What is wrong with a request on its face (the store is not asked)."""
    errors: list[FieldError] = []
    if request.mode not in exports.MODES:
        errors.append(FieldError("mode", f"one of {', '.join(exports.MODES)}"))
        return errors
    fields = exports.DEFAULT_FIELDS[request.mode] if request.fields is None else request.fields
    errors += exports.field_problems(request.mode, list(fields))
    errors += exports.summary_problems(list(request.summary_by))
    if request.file_format not in exports.FILE_FORMATS:
        errors.append(FieldError("format", f"one of {', '.join(exports.FILE_FORMATS)}"))
    if request.mode == exports.PARTNER:
        if request.platform not in exports.PLATFORMS:
            errors.append(FieldError("platform", f"one of {', '.join(exports.PLATFORMS)}"))
        if not request.destination_id and not request.processor_id:
            errors.append(
                FieldError(
                    "processor_id",
                    "a partner export names the processor that receives it, or a "
                    "destination_id to push it to",
                )
            )
    else:
        for name in ("destination_id", "processor_id"):
            if getattr(request, name):
                errors.append(
                    FieldError(name, "a download stays internal; use mode=partner to share")
                )
    if request.k is not None and not settings.k_anonymity <= request.k <= 100_000:
        errors.append(
            FieldError("k", f"at least {settings.k_anonymity} (the setting), at most 100000")
        )
    errors += _audience_problems(request, settings)
    return errors


def _audience_problems(
    request: ExportRequest, settings: AudienceExportSettings
) -> list[FieldError]:
    if (request.profile_ids is None) == (request.segment_id is None):
        return [FieldError("segment_id", "name a segment_id or list profile_ids (one of them)")]
    if request.segment_id is not None:
        if not request.segment_id or len(request.segment_id) > MAX_ID:
            return [FieldError("segment_id", f"a segment id (1-{MAX_ID} characters)")]
        return []
    ids = request.profile_ids or []
    if not ids:
        return [FieldError("profile_ids", "list at least one profile id")]
    if len(ids) > settings.max_profile_ids:
        return [
            FieldError(
                "profile_ids",
                f"at most {settings.max_profile_ids} ids; export a segment for more",
            )
        ]
    for i, value in enumerate(ids):
        if not isinstance(value, str) or not value or len(value) > MAX_ID:
            return [FieldError(f"profile_ids[{i}]", f"a profile id (1-{MAX_ID} characters)")]
    return []


def start_export(
    *,
    session: Session,
    workspace_id: str,
    request: ExportRequest,
    actor: str,
    reason: str,
    settings: AudienceExportSettings,
    default_region: str,
) -> Plan:
    """Validate, gate, read the audience's ids, store the export and audit it; the caller
    commits. Invalid names each bad field; TransferRefused (403) names every reason a partner
    export may not go to its processor; NotFound for an unknown segment or destination."""
    errors = request_problems(request, settings)
    if errors:
        raise Invalid("the export request is not valid", errors)
    check_use(
        get_config(session=session, workspace_id=workspace_id), request.purpose, request.channel
    )
    mode = request.mode
    fields = tuple(exports.DEFAULT_FIELDS[mode] if request.fields is None else request.fields)
    processor_id, channel = _gate(session, workspace_id, request, fields)
    if request.segment_id is not None:
        ids: Sequence[str] = segment_members(
            session=session, workspace_id=workspace_id, segment_id=request.segment_id
        )
        source, resolved = f"segment:{request.segment_id}", True
    else:
        ids, source, resolved = list(dict.fromkeys(request.profile_ids or [])), "profiles", False
    delivery = PUSH if request.destination_id else request.file_format
    plan = Plan(
        id=str(uuid.uuid4()),
        workspace_id=workspace_id,
        request=request,
        fields=fields,
        delivery=delivery,
        ids=ids,
        resolved=resolved,
        k=request.k or settings.k_anonymity,
        default_region=default_region,
        processor_id=processor_id,
        destination_channel=channel,
        trait_keys=tuple(
            dict.fromkeys(
                [
                    *exports.TRAIT_KEYS,
                    *exports.trait_keys_of(fields),
                    *exports.trait_keys_of(request.summary_by),
                ]
            )
        ),
    )
    now = utcnow()
    session.add(
        AudienceExportRow(
            id=plan.id,
            workspace_id=workspace_id,
            created_at=now,
            finished_at=None,
            actor=actor[:200],
            mode=mode,
            delivery=delivery,
            platform=request.platform if mode == exports.PARTNER else None,
            purpose=request.purpose,
            channel=request.channel,
            source=source,
            destination_id=request.destination_id,
            processor_id=processor_id,
            fields=list(fields),
            status=RUNNING,
            subjects=0,
            batches=0,
            left_out={},
            summary=None,
        )
    )
    audit.record(
        session=session,
        workspace_id=workspace_id,
        actor=actor,
        action=ACTION,
        target_type=TARGET,
        target_id=plan.id,
        reason=reason,
        details={
            "mode": mode,
            "delivery": delivery,
            "source": "segment" if request.segment_id is not None else "profiles",
            "audience": len(ids),
            "purpose": request.purpose,
            "channel": request.channel,
            "fields": ",".join(fields)[:200],
            **({"processor": processor_id} if processor_id else {}),
        },
        at=now,
    )
    session.flush()
    return plan


def _gate(
    session: Session, workspace_id: str, request: ExportRequest, fields: Sequence[str]
) -> tuple[str | None, str | None]:
    """A partner export's processor (and its destination's channel) once the transfer gate let
    it through; (None, None) for a download."""
    if request.mode != exports.PARTNER:
        return None, None
    categories = exports.categories_of(fields)
    if request.destination_id:
        destination = delivery_destinations.get_destination(
            session=session, workspace_id=workspace_id, destination_id=request.destination_id
        )
        errors = []
        if destination.kind != "webhook":
            errors.append(
                FieldError("destination_id", "a partner export is pushed to a webhook destination")
            )
        if destination.purpose != request.purpose:
            errors.append(
                FieldError("purpose", f"the destination serves the purpose {destination.purpose!r}")
            )
        if request.processor_id and request.processor_id != destination.processor_id:
            errors.append(
                FieldError("processor_id", "the destination belongs to another processor")
            )
        if errors:
            raise Invalid("the destination does not fit the export", errors)
        destination = delivery_destinations.check_destination(
            session=session,
            workspace_id=workspace_id,
            destination_id=request.destination_id,
            categories=categories,
        )
        return destination.processor_id, destination.channel
    assert request.processor_id is not None  # request_problems requires one
    processor = processor_service.check_transfer(
        session=session,
        workspace_id=workspace_id,
        processor_id=request.processor_id,
        purpose=request.purpose,
        categories=categories,
    )
    return processor.id, None


# --- one batch ----------------------------------------------------------------------------------


def decide_batch(*, session: Session, plan: Plan, ids: Sequence[str], tally: Tally) -> Batch:
    """Decide a batch of the audience and read the allowed subjects' rows (reads only; the
    tally counts the left out)."""
    workspace_id, request = plan.workspace_id, plan.request
    if plan.resolved:
        canonical: list[str] = list(ids)
    else:
        found = profiles.canonical_map_many(
            session=session, workspace_id=workspace_id, profile_ids=ids
        )
        canonical = []
        for pid in ids:
            person = found.get(pid)
            if person is None:
                tally.left_out["unknown_profile"] += 1
            elif person in tally.seen:
                tally.left_out[DUPLICATE] += 1
            else:
                tally.seen.add(person)
                canonical.append(person)
    decisions = can_use_unified(
        session=session,
        workspace_id=workspace_id,
        canonical_ids=canonical,
        purpose=request.purpose,
        channel=request.channel,
    )
    allowed = [pid for pid in canonical if decisions[pid].allowed]
    for pid in canonical:
        if not decisions[pid].allowed:
            tally.left_out[decisions[pid].reason] += 1
    traits = profiles.current_traits_many(
        session=session, workspace_id=workspace_id, canonical_ids=allowed, keys=plan.trait_keys
    )
    rows: list[list[Any]] = []
    manifest: list[tuple[str, Decision]] = []
    values: list[dict[str, Any]] = []
    for pid in allowed:
        held = traits.get(pid, {})
        contact = exports.contact_from_traits(held)
        row: list[Any] | None
        if request.mode == exports.PARTNER:
            row = exports.partner_row(contact, plan.fields, request.platform, plan.default_region)
        else:
            row = exports.download_row(pid, contact, held, plan.fields, plan.default_region)
        if row is None:
            tally.left_out[exports.NO_IDENTIFIER] += 1
            continue
        rows.append(row)
        manifest.append((pid, decisions[pid]))
        values.append(_summary_values(request.summary_by, contact, held))
    return Batch(rows, manifest, values)


def _summary_values(
    attributes: Sequence[str], contact: exports.Contact, traits: Mapping[str, Any]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in attributes:
        if name == "country":
            out[name] = contact.country
        else:
            value = traits.get(name[len(exports.TRAIT_PREFIX) :])
            out[name] = value if isinstance(value, str | int | float | bool) else None
    return out


_INSERT_SUBJECTS = Bulk(insert(AudienceExportSubjectRow))


def record_batch(*, session: Session, plan: Plan, batch: Batch, tally: Tally) -> None:
    """List a batch's exported subjects in the manifest (and, for a push, queue its rows in
    the outbox) in the caller's transaction."""
    if not batch.manifest:
        return
    entries = []
    for pid, decision in batch.manifest:
        tally.seq += 1
        entries.append(
            {
                "export_id": plan.id,
                "seq": tally.seq,
                "profile_id": pid,
                "record_id": decision.record_id,
                "reason": decision.reason[:40],
                "regime": decision.regime,
            }
        )
    _INSERT_SUBJECTS.run(session.connection(), entries)
    tally.subjects += len(entries)


def push_batch(*, session: Session, plan: Plan, batch: Batch, tally: Tally, size: int) -> int:
    """Queue a batch's hashed rows to the plan's destination, ``size`` rows a message, each
    message once (its key names the export and its number); returns the messages queued now
    (a replay of a batch queues nothing twice)."""
    request = plan.request
    assert request.destination_id is not None and plan.destination_channel is not None
    columns = exports.partner_columns(plan.fields, request.platform)
    queued = 0
    for start in range(0, len(batch.rows), size):
        number = tally.batches + 1
        body = {
            "export_id": plan.id,
            "batch": number,
            "platform": request.platform,
            "schema": columns,
            "data": batch.rows[start : start + size],
        }
        made = outbox.enqueue(
            session=session,
            workspace_id=plan.workspace_id,
            destination_id=request.destination_id,
            key=f"export:{plan.id}:{number}",
            subject_id=None,
            purpose=request.purpose,
            channel=plan.destination_channel,
            to=None,
            content={"body": body},
            origin=f"export:{plan.id}",
        )
        tally.batches = number
        queued += made is not None  # None: this message was queued before (a replay)
    return queued


def finish_export(
    *, session: Session, plan: Plan, tally: Tally, summary: exports.Summary, status: str
) -> None:
    """Store what the walk did: counts by reason, the k-anonymous summary, the status."""
    session.execute(
        update(AudienceExportRow)
        .where(AudienceExportRow.id == plan.id, AudienceExportRow.workspace_id == plan.workspace_id)
        .values(
            status=status,
            finished_at=utcnow(),
            subjects=tally.subjects,
            batches=tally.batches,
            left_out=dict(tally.left_out),
            summary=summary.document(),
        )
    )


# --- walks --------------------------------------------------------------------------------------


def _walk(
    db: Database,
    plan: Plan,
    settings: AudienceExportSettings,
    tally: Tally,
    summary: exports.Summary,
    progress: Progress | None,
) -> Iterator[Batch]:
    """Each batch decided (one read) and recorded (one write, with its push)."""
    total = len(plan.ids)
    if progress is not None:
        progress(0, total)
    for start in range(0, total, settings.batch):
        ids = plan.ids[start : start + settings.batch]
        with db.read() as session:
            batch = decide_batch(session=session, plan=plan, ids=ids, tally=tally)
        with db.write() as session:
            record_batch(session=session, plan=plan, batch=batch, tally=tally)
            if plan.delivery == PUSH and batch.rows:
                push_batch(
                    session=session, plan=plan, batch=batch, tally=tally, size=settings.push_batch
                )
        for values in batch.summary_values:
            summary.add(values)
        if progress is not None:
            progress(min(start + settings.batch, total), total)
        yield batch


def _finish(
    db: Database, plan: Plan, tally: Tally, summary: exports.Summary, status: str
) -> ExportRecord:
    """Store what the walk did; the export as it now stands."""
    with db.write() as session:
        finish_export(session=session, plan=plan, tally=tally, summary=summary, status=status)
        return get_export(session=session, workspace_id=plan.workspace_id, export_id=plan.id)


def stream_file(
    db: Database,
    plan: Plan,
    settings: AudienceExportSettings,
    *,
    progress: Progress | None = None,
) -> Iterator[bytes]:
    """The export's file, a batch at a time: CSV (a header row, then a row per subject) or
    JSON (``{"export_id", "mode", ..., "rows": [...], "manifest": {summary}}``). The export is
    marked completed when the last byte is out, failed if the walk stops early."""
    if plan.delivery == PUSH:
        raise ValueError("a push export has no file")
    request = plan.request
    if request.mode == exports.PARTNER:
        columns = exports.partner_columns(plan.fields, request.platform)
    else:
        columns = exports.download_columns(plan.fields)
    tally, summary = Tally(), exports.Summary(request.summary_by, plan.k)
    status = FAILED
    try:
        if plan.delivery == "csv":
            yield exports.csv_lines([columns])
        else:
            yield exports.json_head(
                {
                    "export_id": plan.id,
                    "mode": request.mode,
                    "platform": request.platform if request.mode == exports.PARTNER else None,
                    "purpose": request.purpose,
                    "columns": columns,
                }
            )
        first = True
        for batch in _walk(db, plan, settings, tally, summary, progress):
            if not batch.rows:
                continue
            if plan.delivery == "csv":
                yield exports.csv_lines(batch.rows)
            else:
                yield exports.json_rows(columns, batch.rows, first=first)
                first = False
        status = COMPLETED
        record = _finish(db, plan, tally, summary, status)
        if plan.delivery == "json":
            yield exports.json_tail(record.document())
    finally:
        if status == FAILED:
            _finish(db, plan, tally, summary, status)


def push(
    db: Database,
    plan: Plan,
    settings: AudienceExportSettings,
    *,
    progress: Progress | None = None,
) -> ExportRecord:
    """Run a partner push: every batch's rows queued to the destination's outbox."""
    if plan.delivery != PUSH:
        raise ValueError("a file export is streamed, not pushed")
    tally, summary = Tally(), exports.Summary(plan.request.summary_by, plan.k)
    status = FAILED
    try:
        for _ in _walk(db, plan, settings, tally, summary, progress):
            pass
        status = COMPLETED
    finally:
        record = _finish(db, plan, tally, summary, status)
    return record


def export_audience(
    db: Database,
    *,
    workspace_id: str,
    request: ExportRequest,
    actor: str,
    settings: AudienceExportSettings,
    default_region: str,
    reason: str = audit.UNSPECIFIED,
    sink: IO[bytes] | None = None,
    progress: Progress | None = None,
) -> ExportRecord:
    """Start and run an export: a file written to ``sink``, or a push to the destination."""
    with db.write() as session:
        plan = start_export(
            session=session,
            workspace_id=workspace_id,
            request=request,
            actor=actor,
            reason=reason,
            settings=settings,
            default_region=default_region,
        )
    if plan.delivery == PUSH:
        return push(db, plan, settings, progress=progress)
    if sink is None:
        raise ValueError("a file export needs a sink to write to")
    for chunk in stream_file(db, plan, settings, progress=progress):
        sink.write(chunk)
    with db.read() as session:
        return get_export(session=session, workspace_id=workspace_id, export_id=plan.id)


# --- reading ------------------------------------------------------------------------------------


def _record(row: AudienceExportRow) -> ExportRecord:
    return ExportRecord(
        id=row.id,
        created_at=row.created_at,
        finished_at=row.finished_at,
        actor=row.actor,
        mode=row.mode,
        delivery=row.delivery,
        platform=row.platform,
        purpose=row.purpose,
        channel=row.channel,
        source=row.source,
        destination_id=row.destination_id,
        processor_id=row.processor_id,
        fields=list(row.fields),
        status=row.status,
        subjects=row.subjects,
        batches=row.batches,
        left_out=dict(row.left_out or {}),
        summary=row.summary,
    )


def _row(session: Session, workspace_id: str, export_id: str) -> AudienceExportRow:
    row = session.get(AudienceExportRow, export_id) if len(export_id) <= 36 else None
    if row is None or row.workspace_id != workspace_id:
        raise NotFound(f"no audience export {export_id[:100]!r} in this workspace")
    return row


def get_export(*, session: Session, workspace_id: str, export_id: str) -> ExportRecord:
    """One export of the workspace; NotFound otherwise."""
    return _record(_row(session, workspace_id, export_id))


def list_exports(*, session: Session, workspace_id: str, limit: int = 50) -> list[ExportRecord]:
    """The workspace's latest exports, newest first."""
    rows = session.scalars(
        select(AudienceExportRow)
        .where(AudienceExportRow.workspace_id == workspace_id)
        .order_by(AudienceExportRow.created_at.desc(), AudienceExportRow.id)
        .limit(max(1, min(limit, MAX_PAGE)))
    )
    return [_record(row) for row in rows]


def manifest_page(
    *, session: Session, workspace_id: str, export_id: str, after: int = 0, limit: int = MAX_PAGE
) -> list[ManifestEntry]:
    """The manifest's entries after position ``after``, in order, at most ``limit``."""
    _row(session, workspace_id, export_id)
    t = AudienceExportSubjectRow
    rows = session.execute(
        select(t.seq, t.profile_id, t.record_id, t.reason, t.regime)
        .where(t.export_id == export_id, t.seq > after)
        .order_by(t.seq)
        .limit(max(1, min(limit, MAX_PAGE)))
    )
    return [ManifestEntry(*row) for row in rows]

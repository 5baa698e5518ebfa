"""Use cases of the processor register and the transfer gate.

Other capabilities call :func:`check_transfer` before any personal data leaves the platform
(journeys, exports, audiences synced to ad platforms, erasure notifications), and
:func:`erasure_recipients` to learn whom to tell of an erasure. Every change to a processor
appends a version, so :func:`list_processors` and :func:`record_of_processing` can show the
register as it stood at a past date. Functions take a session and keyword-only arguments and
never commit: the caller owns the transaction.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from consentry.consent.service import get_config
from consentry.errors import Conflict, FieldError, Invalid, NotFound, TransferRefused
from consentry.platform import tenancy
from consentry.platform.db import utcnow
from consentry.privacy.processors import (
    REQUIRED_FIELDS,
    SPEC_FIELDS,
    Processor,
    ProcessorSpec,
    ProcessorVersion,
    changed,
    normalise,
    processor_from_document,
    refusal_message,
    refusals,
    request_problems,
    spec_problems,
    with_defaults,
)
from consentry.privacy.ropa import Record, build_record
from consentry.privacy.tables import ProcessorRow, ProcessorVersionRow

__all__ = [
    "allowed_processors",
    "check_transfer",
    "deactivate_processor",
    "erasure_recipients",
    "get_processor",
    "list_processors",
    "processor_history",
    "record_of_processing",
    "register_processor",
    "transfer_refusals",
    "update_processor",
]

# --- the gate -----------------------------------------------------------------------------------


def check_transfer(
    *,
    session: Session,
    workspace_id: str,
    processor_id: str,
    purpose: str,
    categories: Sequence[str],
) -> Processor:
    """The processor, when data of ``categories`` may leave to it for ``purpose``.

    Raises Invalid for a malformed request (no categories, a category outside the vocabulary)
    and TransferRefused (a Forbidden: 403) naming every reason otherwise: not registered in
    this workspace, deactivated, no DPA in force where one is required, a transfer without a
    safeguard, a purpose not configured or not allowed, a category it may not receive.
    """
    processor, errors = transfer_refusals(
        session=session,
        workspace_id=workspace_id,
        processor_id=processor_id,
        purpose=purpose,
        categories=categories,
    )
    if errors or processor is None:
        raise TransferRefused(refusal_message(processor_id, errors), errors)
    return processor


def transfer_refusals(
    *,
    session: Session,
    workspace_id: str,
    processor_id: str,
    purpose: str,
    categories: Sequence[str],
) -> tuple[Processor | None, list[FieldError]]:
    """The processor (None when unknown) and why the transfer is refused ([] when allowed)."""
    malformed = request_problems(purpose, categories)
    if malformed:
        raise Invalid("the transfer request is not valid", malformed)
    row = _row(session, workspace_id, processor_id)
    processor = _processor(row) if row else None
    errors = refusals(
        processor,
        purpose=purpose,
        categories=categories,
        workspace_purposes=get_config(session=session, workspace_id=workspace_id).purpose_keys,
        today=utcnow().date(),
    )
    return processor, errors


def allowed_processors(
    *, session: Session, workspace_id: str, purpose: str, categories: Sequence[str]
) -> list[Processor]:
    """Every processor data of ``categories`` may leave to for ``purpose``, by name."""
    malformed = request_problems(purpose, categories)
    if malformed:
        raise Invalid("the transfer request is not valid", malformed)
    configured = get_config(session=session, workspace_id=workspace_id).purpose_keys
    today = utcnow().date()
    return [
        p
        for p in list_processors(session=session, workspace_id=workspace_id, active=True)
        if not refusals(
            p, purpose=purpose, categories=categories, workspace_purposes=configured, today=today
        )
    ]


def erasure_recipients(*, session: Session, workspace_id: str) -> list[Processor]:
    """Active processors with an erasure-notification webhook, by name: whom to tell when a
    subject's data is erased (GDPR Art. 17(2), 19)."""
    rows = session.scalars(
        select(ProcessorRow)
        .where(
            ProcessorRow.workspace_id == workspace_id,
            ProcessorRow.active.is_(True),
            ProcessorRow.erasure_webhook_url.is_not(None),
        )
        .order_by(ProcessorRow.name_key)
    )
    return [_processor(row) for row in rows]


# --- the register -------------------------------------------------------------------------------


def register_processor(
    *, session: Session, workspace_id: str, spec: ProcessorSpec, actor: str
) -> Processor:
    """Register a processor (version 1); Invalid names each bad field, Conflict a taken name."""
    tenancy.get_workspace(session=session, workspace_id=workspace_id)
    wanted = _checked(session, workspace_id, spec, known_purposes=())
    _refuse_taken_name(session, workspace_id, wanted.name, processor_id=None)
    now = utcnow()
    row = ProcessorRow(id=str(uuid.uuid4()), workspace_id=workspace_id, version=1, created_at=now)
    _write(row, wanted, now)
    try:
        with session.begin_nested():  # a concurrent registration of the same name
            session.add(row)
    except IntegrityError as exc:
        raise Conflict(
            f"a processor named {wanted.name!r} is already registered",
            [FieldError("name", "taken by another processor")],
        ) from exc
    return _append_version(session, row, "registered", actor)


def update_processor(
    *,
    session: Session,
    workspace_id: str,
    processor_id: str,
    changes: Mapping[str, Any],
    actor: str,
) -> Processor:
    """Change some fields of a processor (a PATCH): a new version, unless nothing changed.

    A changed ``transfer_country`` without a ``transfer_safeguard`` clears the old safeguard.
    Purposes kept from before are not checked against the consent configuration again.
    """
    _refuse_bad_changes(changes)
    row = _locked_row(session, workspace_id, processor_id)
    current = _processor(row)
    values = dict(changes)
    if "transfer_country" in values and "transfer_safeguard" not in values:
        values["transfer_safeguard"] = None
    kept = () if "purposes" in values else current.spec.purposes
    wanted = _checked(session, workspace_id, changed(current.spec, values), known_purposes=kept)
    if wanted == current.spec:
        return current
    _refuse_taken_name(session, workspace_id, wanted.name, processor_id=row.id)
    _write(row, wanted, utcnow())
    row.version += 1
    session.flush()
    return _append_version(session, row, _change_of(current.spec, wanted), actor)


def deactivate_processor(
    *, session: Session, workspace_id: str, processor_id: str, actor: str
) -> Processor:
    """Stop every flow to a processor; it stays in the register and its history."""
    return update_processor(
        session=session,
        workspace_id=workspace_id,
        processor_id=processor_id,
        changes={"active": False},
        actor=actor,
    )


def get_processor(*, session: Session, workspace_id: str, processor_id: str) -> Processor:
    """One processor of the workspace as it stands now; NotFound otherwise."""
    row = _row(session, workspace_id, processor_id)
    if row is None:
        raise NotFound(f"no processor {processor_id[:100]!r} in this workspace")
    return _processor(row)


def list_processors(
    *,
    session: Session,
    workspace_id: str,
    at: datetime | None = None,
    active: bool | None = None,
) -> list[Processor]:
    """The workspace's processors by name, now or as they stood at ``at``; ``active`` filters."""
    if at is None:
        query = select(ProcessorRow).where(ProcessorRow.workspace_id == workspace_id)
        found = [_processor(row) for row in session.scalars(query)]
    else:
        found = _as_of(session, workspace_id, at)
    kept = [p for p in found if active is None or p.spec.active == active]
    return sorted(kept, key=lambda p: (p.spec.name.casefold(), p.id))


def processor_history(
    *, session: Session, workspace_id: str, processor_id: str
) -> list[ProcessorVersion]:
    """Every version of a processor, oldest first; NotFound for another workspace's."""
    get_processor(session=session, workspace_id=workspace_id, processor_id=processor_id)
    rows = session.scalars(
        select(ProcessorVersionRow)
        .where(ProcessorVersionRow.processor_id == processor_id)
        .order_by(ProcessorVersionRow.version)
    )
    return [
        ProcessorVersion(r.processor_id, r.version, r.change, r.actor, r.recorded_at, r.document)
        for r in rows
    ]


def record_of_processing(
    *, session: Session, workspace_id: str, at: datetime | None = None
) -> Record:
    """The record of processing activities (Art. 30) from the register, now or at ``at``.

    The purposes are the workspace's consent purposes as configured now (their configuration
    keeps no history); the recipients are the processors active at ``at``.
    """
    workspace = tenancy.get_workspace(session=session, workspace_id=workspace_id)
    return build_record(
        controller_id=workspace.id,
        controller_name=workspace.name,
        config=get_config(session=session, workspace_id=workspace_id),
        processors=list_processors(session=session, workspace_id=workspace_id, at=at),
        as_of=at or utcnow(),
    )


# --- helpers ------------------------------------------------------------------------------------


def _row(session: Session, workspace_id: str, processor_id: str) -> ProcessorRow | None:
    row = session.get(ProcessorRow, processor_id)
    return row if row is not None and row.workspace_id == workspace_id else None


def _locked_row(session: Session, workspace_id: str, processor_id: str) -> ProcessorRow:
    row = session.scalars(
        select(ProcessorRow)
        .where(ProcessorRow.id == processor_id, ProcessorRow.workspace_id == workspace_id)
        .with_for_update()
    ).first()
    if row is None:
        raise NotFound(f"no processor {processor_id[:100]!r} in this workspace")
    return row


def _checked(
    session: Session, workspace_id: str, spec: ProcessorSpec, *, known_purposes: Collection[str]
) -> ProcessorSpec:
    wanted = with_defaults(normalise(spec))
    purposes = get_config(session=session, workspace_id=workspace_id).purpose_keys
    errors = spec_problems(wanted, purposes | set(known_purposes), utcnow().date())
    if errors:
        raise Invalid("the processor is not valid", errors)
    return wanted


def _refuse_bad_changes(changes: Mapping[str, Any]) -> None:
    errors = [
        FieldError(name, "not a field of a processor")
        for name in changes
        if name not in SPEC_FIELDS
    ]
    errors += [
        FieldError(name, "required: may not be null")
        for name in REQUIRED_FIELDS | {"active"}
        if name in changes and changes[name] is None
    ]
    if errors:
        raise Invalid("the changes are not valid", errors)


def _refuse_taken_name(
    session: Session, workspace_id: str, name: str, *, processor_id: str | None
) -> None:
    taken = session.scalars(
        select(ProcessorRow.id).where(
            ProcessorRow.workspace_id == workspace_id,
            ProcessorRow.name_key == _name_key(name),
        )
    ).first()
    if taken is not None and taken != processor_id:
        raise Conflict(
            f"a processor named {name!r} is already registered: {taken}",
            [FieldError("name", f"taken by processor {taken}")],
        )


def _write(row: ProcessorRow, spec: ProcessorSpec, now: datetime) -> None:
    row.name, row.name_key, row.kind = spec.name, _name_key(spec.name), spec.kind
    row.contact = spec.contact
    row.purposes, row.categories = list(spec.purposes), list(spec.categories)
    row.dpa_signed_on = spec.dpa_signed_on
    row.transfer_country, row.transfer_safeguard = spec.transfer_country, spec.transfer_safeguard
    row.retention, row.erasure_webhook_url = spec.retention, spec.erasure_webhook_url
    row.active, row.updated_at = spec.active, now


def _name_key(name: str) -> str:
    """Names are unique whatever their case; a digest, as case-folding may lengthen a name."""
    return hashlib.sha256(name.casefold().encode()).hexdigest()


def _processor(row: ProcessorRow) -> Processor:
    spec = ProcessorSpec(
        name=row.name,
        kind=row.kind,
        transfer_country=row.transfer_country,
        purposes=tuple(row.purposes),
        categories=tuple(row.categories),
        contact=row.contact,
        dpa_signed_on=row.dpa_signed_on,
        transfer_safeguard=row.transfer_safeguard,
        retention=row.retention,
        erasure_webhook_url=row.erasure_webhook_url,
        active=row.active,
    )
    return Processor(row.id, row.workspace_id, row.version, spec, row.created_at, row.updated_at)


def _append_version(session: Session, row: ProcessorRow, change: str, actor: str) -> Processor:
    processor = _processor(row)
    session.add(
        ProcessorVersionRow(
            processor_id=row.id,
            version=row.version,
            workspace_id=row.workspace_id,
            change=change,
            actor=actor[:200],
            recorded_at=row.updated_at,
            document=processor.document(),
        )
    )
    session.flush()
    return processor


def _change_of(before: ProcessorSpec, after: ProcessorSpec) -> str:
    if before.active and not after.active:
        return "deactivated"
    if after.active and not before.active:
        return "reactivated"
    return "updated"


def _as_of(session: Session, workspace_id: str, at: datetime) -> list[Processor]:
    rows = session.execute(
        select(ProcessorVersionRow.processor_id, ProcessorVersionRow.document)
        .where(
            ProcessorVersionRow.workspace_id == workspace_id,
            ProcessorVersionRow.recorded_at <= at,
        )
        .order_by(ProcessorVersionRow.processor_id, ProcessorVersionRow.version)
    )
    latest: dict[str, dict[str, Any]] = {r.processor_id: r.document for r in rows}
    return [processor_from_document(workspace_id, doc) for doc in latest.values()]

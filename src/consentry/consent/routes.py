"""Admin routes of consent: record (one or in bulk), current state, history, decisions,
receipts and verification of the ledger.

A subject is named by profile id, or by ``email`` / ``user_id`` (resolved to the unified profile).
Reads need the scope ``consent:read``; recording and verifying need ``consent:write``. Every read
of a subject's consent is recorded in the audit trail (:class:`consentry.deps.ReadRecorder`).
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from consentry.consent import service
from consentry.consent.models import ANY_CHANNEL, ConsentIn, ConsentRecord, parse_items
from consentry.deps import ConsentRead, ConsentWrite, DbDep, ReadAudit, ReadRecorder
from consentry.errors import Invalid
from consentry.platform.tenancy import Principal

router = APIRouter(prefix="/v1/consent", tags=["consent"])

BULK_LIMIT = 1000
Limit = Annotated[int, Query(ge=1, le=500)]


class BulkIn(BaseModel):
    records: list[dict[str, Any]] = Field(
        ...,
        min_length=1,
        max_length=BULK_LIMIT,
        description="Up to 1,000 items shaped like the body of POST /v1/consent; all or nothing.",
    )


def _actor(principal: Principal) -> str:
    return principal.actor


def _lookup(profile_id: str | None, email: str | None, user_id: str | None) -> str:
    """Which kind of lookup named the subject (recorded instead of the value)."""
    kinds = [
        k for k, v in (("profile_id", profile_id), ("email", email), ("user_id", user_id)) if v
    ]
    return "+".join(kinds) or "none"


def record_json(record: ConsentRecord) -> dict[str, Any]:
    """A record as the API shows it (the proof is left out)."""
    shown = asdict(record)
    del shown["proof"]
    return shown


@router.post("", status_code=201)
def record_consent(body: ConsentIn, principal: ConsentWrite, db: DbDep) -> dict[str, Any]:
    """Record one choice of a subject (profile_id, email or user_id)."""
    with db.write() as session:
        record = service.record_request(
            session=session, workspace_id=principal.workspace_id, item=body, actor=_actor(principal)
        )
    return record_json(record)


@router.post("/bulk", status_code=201)
def record_bulk(body: BulkIn, principal: ConsentWrite, db: DbDep) -> dict[str, Any]:
    """Record up to 1,000 choices, all or nothing: errors name each bad item's index and field."""
    items, errors = parse_items(body.records)
    if errors:
        raise Invalid("consent records are not valid; nothing was recorded", errors)
    with db.write() as session:
        records = service.record_requests(
            session=session,
            workspace_id=principal.workspace_id,
            items=items,
            actor=_actor(principal),
        )
    return {"recorded": len(records), "records": [record_json(r) for r in records]}


@router.get("/decision")
def decision(
    principal: ConsentRead,
    db: DbDep,
    reads: ReadAudit,
    purpose: Annotated[str, Query(max_length=100)],
    channel: Annotated[str, Query(max_length=16)] = ANY_CHANNEL,
    profile_id: Annotated[str | None, Query(max_length=36)] = None,
    email: Annotated[str | None, Query(max_length=512)] = None,
    user_id: Annotated[str | None, Query(max_length=512)] = None,
    at: datetime | None = None,
) -> dict[str, Any]:
    """The policy's decision: may ``purpose`` use this subject over ``channel`` (now or ``at``)?"""
    lookup = _lookup(profile_id, email, user_id)
    with reads.reading(principal, "consent.decision", lookup=lookup) as note:
        with db.read() as session:
            subject = service.resolve_subject(
                session=session,
                workspace_id=principal.workspace_id,
                profile_id=profile_id,
                email=email,
                user_id=user_id,
            )
            found = service.can_use(
                session=session,
                workspace_id=principal.workspace_id,
                profile_id=subject,
                purpose=purpose,
                channel=channel,
                at=at,
            )
        note.found([subject])
    return {"profile_id": subject, "purpose": purpose, "channel": channel, **asdict(found)}


@router.get("/records/{record_id}/receipt")
def get_receipt(
    record_id: str, principal: ConsentRead, db: DbDep, reads: ReadAudit
) -> dict[str, Any]:
    """A consent receipt of one record (Kantara CR v1.1 / ISO/IEC TS 27560 fields)."""
    with reads.reading(principal, "consent.receipt", target_type="consent_record") as note:
        with db.read() as session:
            found = service.receipt(
                session=session, workspace_id=principal.workspace_id, record_id=record_id
            )
        note.found([record_id])
    return found


@router.post("/verify")
def verify_ledger(principal: ConsentWrite, db: DbDep) -> dict[str, Any]:
    """Walk the workspace's hash chain and name the first edited, deleted or reordered record."""
    with db.read() as session:
        report = service.verify(session=session, workspace_id=principal.workspace_id)
    return asdict(report)


def _current(db: DbDep, workspace_id: str, profile_id: str) -> dict[str, Any]:
    with db.read() as session:
        return asdict(
            service.subject_consent(
                session=session, workspace_id=workspace_id, profile_id=profile_id
            )
        )


def _read_current(
    db: DbDep,
    reads: ReadRecorder,
    principal: Principal,
    *,
    profile_id: str | None = None,
    email: str | None = None,
    user_id: str | None = None,
) -> dict[str, Any]:
    """The subject's current consent; the read (or the miss) is recorded by profile id only."""
    lookup = _lookup(profile_id, email, user_id)
    with reads.reading(principal, "consent.read", lookup=lookup) as note:
        if profile_id is None:
            with db.read() as session:
                profile_id = service.resolve_subject(
                    session=session,
                    workspace_id=principal.workspace_id,
                    email=email,
                    user_id=user_id,
                )
        shown = _current(db, principal.workspace_id, profile_id)
        note.found([shown["profile_id"]])
    return shown


@router.get("")
def find_consent(
    principal: ConsentRead,
    db: DbDep,
    reads: ReadAudit,
    email: Annotated[str | None, Query(max_length=512)] = None,
    user_id: Annotated[str | None, Query(max_length=512)] = None,
) -> dict[str, Any]:
    """The current consent of the subject holding this email or user id."""
    return _read_current(db, reads, principal, email=email, user_id=user_id)


@router.get("/{profile_id}")
def get_consent(
    profile_id: str, principal: ConsentRead, db: DbDep, reads: ReadAudit
) -> dict[str, Any]:
    """Per purpose and channel, the current state across the unified profile, with record ids."""
    return _read_current(db, reads, principal, profile_id=profile_id)


@router.get("/{profile_id}/history")
def get_history(
    profile_id: str,
    principal: ConsentRead,
    db: DbDep,
    reads: ReadAudit,
    limit: Limit = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> dict[str, Any]:
    """Every record of the unified profile's members, newest first."""
    with reads.reading(principal, "consent.history", lookup="profile_id") as note:
        with db.read() as session:
            canonical, records = service.subject_history(
                session=session,
                workspace_id=principal.workspace_id,
                profile_id=profile_id,
                limit=limit,
                offset=offset,
            )
        note.found([canonical])
    return {"profile_id": canonical, "records": [record_json(r) for r in records]}

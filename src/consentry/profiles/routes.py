"""Admin routes of profiles: search, the profile 360 view, timeline, merge and unmerge.

The profile 360 view composes three capabilities' public services (profiles, ingest, commerce);
composing them here keeps the services free of each other's tables. Every read of a profile is
recorded in the audit trail by profile id (:class:`consentry.deps.ReadRecorder`), never by the
email, phone or id it was looked up with.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from consentry.analytics import service as analytics
from consentry.commerce import service as commerce
from consentry.deps import (
    DbDep,
    PrivacyWrite,
    ProfilesRead,
    ProfilesWrite,
    ReadAudit,
    SettingsDep,
)
from consentry.errors import FieldError, Invalid
from consentry.ingest import service as ingest
from consentry.platform import audit
from consentry.platform.db import Database
from consentry.profiles import service

router = APIRouter(prefix="/v1", tags=["profiles"])

Limit = Annotated[int, Query(ge=1, le=500)]


class PersonalTraitsIn(BaseModel):
    keys: list[Any] = Field(..., description="Trait names whose values identify a person.")
    reason: str = Field(audit.UNSPECIFIED, max_length=200, description="Why, for the audit trail.")


class MergeIn(BaseModel):
    first: str = Field(..., min_length=1, max_length=36, description="A profile id.")
    second: str = Field(..., min_length=1, max_length=36, description="Another profile id.")


def encode_cursor(timestamp: datetime, event_id: int) -> str:
    """An opaque cursor for the next page of a timeline."""
    return f"{timestamp.isoformat()}|{event_id}"


def decode_cursor(cursor: str | None) -> tuple[datetime, int] | None:
    """The (timestamp, id) inside a cursor, or Invalid."""
    if cursor is None:
        return None
    try:
        ts, event_id = cursor.rsplit("|", 1)
        return datetime.fromisoformat(ts), int(event_id)
    except ValueError as exc:
        raise Invalid("bad cursor", [FieldError("before", "not a cursor from this API")]) from exc


def timeline(
    db: Database, workspace_id: str, member_ids: list[str], limit: int, before: str | None
) -> dict[str, Any]:
    """A page of events and the cursor of the next page."""
    with db.read() as session:
        events = ingest.events_of(
            session=session,
            workspace_id=workspace_id,
            profile_ids=member_ids,
            limit=limit,
            before=decode_cursor(before),
        )
    last = events[-1] if len(events) == limit else None
    return {
        "events": [
            {
                "id": e.id,
                "messageId": e.message_id,
                "type": e.type,
                "event": e.event,
                "timestamp": e.timestamp,
                "receivedAt": e.received_at,
                "payload": e.payload,
            }
            for e in events
        ],
        "next": encode_cursor(last.timestamp, last.id) if last else None,
    }


def profile_360(
    db: Database, workspace_id: str, profile_id: str, events_limit: int = 50
) -> dict[str, Any]:
    """Traits, identifiers, a first page of events, orders, carts, merge history and the
    computed traits of the latest analytics run (RFM segment, CLV, P(alive), churn risk)."""
    with db.read() as session:
        view = service.get_profile(
            session=session, workspace_id=workspace_id, profile_id=profile_id
        )
        orders = commerce.orders_of(
            session=session, workspace_id=workspace_id, profile_ids=view.member_ids
        )
        carts = commerce.open_carts(
            session=session, workspace_id=workspace_id, profile_ids=view.member_ids
        )
        warnings = service.warnings_for(
            session=session, workspace_id=workspace_id, profile_id=view.id
        )
        scores = analytics.find_scores(
            session=session, workspace_id=workspace_id, profile_id=view.id
        )
    return {
        "id": view.id,
        "requested_id": profile_id,
        "member_ids": view.member_ids,
        "created_at": view.created_at,
        "first_seen": view.first_seen,
        "last_seen": view.last_seen,
        "traits": view.traits,
        "identifiers": view.identifiers,
        "orders": [asdict(o) for o in orders],
        "open_carts": carts,
        "merges": [asdict(m) for m in view.merges],
        "warnings": warnings,
        "scores": scores,
        "timeline": timeline(db, workspace_id, view.member_ids, events_limit, None),
    }


@router.get("/profiles")
def search_profiles(
    principal: ProfilesRead,
    db: DbDep,
    settings: SettingsDep,
    reads: ReadAudit,
    email: str | None = None,
    phone: str | None = None,
    user_id: str | None = None,
    anonymous_id: str | None = None,
    limit: Limit = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> dict[str, Any]:
    """Find unified profiles by email, phone, userId or anonymousId; without one, list them."""
    given = {"email": email, "phone": phone, "user_id": user_id, "anonymous_id": anonymous_id}
    lookup = "+".join(k for k, v in given.items() if v is not None) or "list"
    with reads.reading(principal, "profile.search", lookup=lookup) as note, db.read() as session:
        if lookup != "list":
            ids = service.search_identifiers(
                session=session,
                workspace_id=principal.workspace_id,
                email=email,
                phone=phone,
                user_id=user_id,
                anonymous_id=anonymous_id,
                default_region=settings.default_phone_region,
            )
            total = len(ids)
        else:
            ids = [
                pid
                for pid, _ in service.list_profiles(
                    session=session, workspace_id=principal.workspace_id, limit=limit, offset=offset
                )
            ]
            total = service.count_profiles(session=session, workspace_id=principal.workspace_id)
        found = [
            service.get_profile(
                session=session, workspace_id=principal.workspace_id, profile_id=pid
            )
            for pid in ids
        ]
        note.found(p.id for p in found)
    return {
        "total": total,
        "profiles": [
            {"id": p.id, "traits": p.traits, "last_seen": p.last_seen, "identifiers": p.identifiers}
            for p in found
        ],
    }


@router.get("/profiles/{profile_id}")
def get_profile(
    profile_id: str, principal: ProfilesRead, db: DbDep, reads: ReadAudit, events_limit: Limit = 50
) -> dict[str, Any]:
    """The profile 360 view. A merged-away id answers with the profile it now belongs to."""
    with reads.reading(principal, "profile.read", lookup="profile_id") as note:
        shown = profile_360(db, principal.workspace_id, profile_id, events_limit)
        note.found([shown["id"]])
    return shown


@router.get("/profiles/{profile_id}/events")
def get_profile_events(
    profile_id: str,
    principal: ProfilesRead,
    db: DbDep,
    reads: ReadAudit,
    limit: Limit = 50,
    before: str | None = None,
) -> dict[str, Any]:
    """The profile's timeline, newest first; pass ``next`` back as ``before`` to page on."""
    with reads.reading(principal, "profile.events", lookup="profile_id") as note:
        with db.read() as session:
            view = service.get_profile(
                session=session, workspace_id=principal.workspace_id, profile_id=profile_id
            )
        shown = timeline(db, principal.workspace_id, view.member_ids, limit, before)
        note.found([view.id])
    return shown


@router.get("/profiles/{profile_id}/traits/history")
def get_trait_history(
    profile_id: str, principal: ProfilesRead, db: DbDep, reads: ReadAudit, key: str | None = None
) -> dict[str, Any]:
    """Every observed value of the profile's traits, newest first."""
    with reads.reading(principal, "profile.traits", lookup="profile_id") as note:
        with db.read() as session:
            rows = service.trait_history(
                session=session, workspace_id=principal.workspace_id, profile_id=profile_id, key=key
            )
        note.found([profile_id])
    return {"history": rows}


@router.post("/profiles/merge")
def merge_profiles(
    body: MergeIn, principal: ProfilesWrite, db: DbDep, settings: SettingsDep
) -> dict[str, Any]:
    """Merge two profiles by hand (support agents); caps still apply."""
    with db.write() as session:
        record = service.merge_profiles(
            session=session,
            workspace_id=principal.workspace_id,
            first=body.first,
            second=body.second,
            actor=principal.actor,
            cap=settings.identity.cap,
        )
    return asdict(record)


@router.post("/merges/{merge_id}/undo")
def undo_merge(merge_id: str, principal: ProfilesWrite, db: DbDep) -> dict[str, Any]:
    """Unmerge: restore both profiles with their identifiers, traits and events."""
    with db.write() as session:
        record = service.unmerge(
            session=session,
            workspace_id=principal.workspace_id,
            merge_id=merge_id,
            actor=principal.actor,
        )
    return asdict(record)


@router.get("/personal-traits")
def list_personal_traits(principal: ProfilesRead, db: DbDep) -> dict[str, Any]:
    """The traits whose values are stored sealed: built in by name, and marked by the workspace."""
    with db.read() as session:
        marked = service.list_personal(session=session, workspace_id=principal.workspace_id)
    return {
        "builtin": service.builtin_personal(),
        "marked": [
            {"key": m.key, "slug": m.slug, "marked_at": m.marked_at, "marked_by": m.marked_by}
            for m in marked
        ],
    }


@router.post("/personal-traits")
def mark_personal_traits(
    body: PersonalTraitsIn, principal: PrivacyWrite, db: DbDep
) -> dict[str, Any]:
    """Mark traits personal: their values are sealed from now on, and every value already
    stored is sealed in the same transaction. A mark cannot be lifted."""
    with db.write() as session:
        report = service.mark_personal(
            session=session,
            workspace_id=principal.workspace_id,
            keys=body.keys,
            actor=principal.actor,
            reason=body.reason,
        )
    return asdict(report)

"""Collect everything held about one person, through each capability's public service, for
the access and portability archive (:mod:`consentry.privacy.access`)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from consentry.analytics import rfm
from consentry.analytics import service as analytics
from consentry.commerce import service as commerce
from consentry.consent import service as consent
from consentry.ingest import service as ingest
from consentry.platform import tenancy
from consentry.platform.db import utcnow
from consentry.privacy import request_service as requests
from consentry.privacy.access import SubjectData
from consentry.profiles import dedupe_review as dedupe
from consentry.profiles import service as profiles
from consentry.recommend import service as recommend

PAGE = 1000
NO_REQUESTS_YET = (
    "No privacy request of yours was recorded through the request intake; this archive was "
    "prepared on the shop's initiative or from a request received elsewhere."
)


def collect(
    *, session: Session, workspace_id: str, profile_id: str, at: datetime | None = None
) -> SubjectData:
    """The unified profile of ``profile_id`` and everything linked to any of its members.

    NotFound when the profile is not in the workspace.
    """
    view = profiles.get_profile(session=session, workspace_id=workspace_id, profile_id=profile_id)
    members = view.member_ids
    profile = {
        "id": view.id,
        "member_ids": members,
        "created_at": view.created_at,
        "first_seen": view.first_seen,
        "last_seen": view.last_seen,
        "traits": view.traits,
    }
    categories: dict[str, list[dict[str, Any]]] = {
        "profile": [profile],
        "identifiers": [dict(i) for i in view.identifiers],
        "events": _events(session, workspace_id, members),
        "orders": [
            asdict(o)
            for o in commerce.orders_of(
                session=session, workspace_id=workspace_id, profile_ids=members, limit=1_000_000
            )
        ],
        "carts": commerce.open_carts(
            session=session, workspace_id=workspace_id, profile_ids=members
        ),
        "consent": _consent(session, workspace_id, view.id),
        "merges": [asdict(m) for m in view.merges],
        "computed": _computed(session, workspace_id, view.id, members),
        "requests": requests.requests_of_subject(
            session=session,
            workspace_id=workspace_id,
            profile_ids=[view.id, *members],
            emails=[str(i["value"]) for i in view.identifiers if i["type"] == "email"],
        ),
    }
    brand = tenancy.get_workspace(session=session, workspace_id=workspace_id).name
    return SubjectData(
        workspace_id=workspace_id,
        profile_id=view.id,
        generated_at=at or utcnow(),
        categories=categories,
        brand=brand,
        notes=() if categories["requests"] else (NO_REQUESTS_YET,),
    )


def _computed(
    session: Session, workspace_id: str, unified: str, members: list[str]
) -> list[dict[str, Any]]:
    """Computed traits and segments (Art. 15(1)(h): profiling): the latest analytics scores,
    each stored recommendation model's view of the person, and the duplicate checks that named
    one of their profiles (the other profile's id left out: it may be someone else)."""
    found: list[dict[str, Any]] = []
    scores = analytics.find_scores(session=session, workspace_id=workspace_id, profile_id=unified)
    if scores is not None:
        segment = rfm.SEGMENTS[scores["rfm"]["segment"]]
        found.append({"source": "analytics", **scores, "segment_meaning": segment.meaning})
    found.extend(
        recommend.subject_data(
            session=session, workspace_id=workspace_id, profile_ids=[unified, *members]
        )
    )
    for pair in dedupe.pairs_of(session=session, workspace_id=workspace_id, profile_ids=members):
        found.append({"source": "duplicate check", **pair})
    return found


def _events(session: Session, workspace_id: str, members: list[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    before: tuple[datetime, int] | None = None
    while True:
        page = ingest.events_of(
            session=session,
            workspace_id=workspace_id,
            profile_ids=members,
            limit=PAGE,
            before=before,
        )
        out.extend(
            {
                "message_id": e.message_id,
                "type": e.type,
                "event": e.event,
                "profile_id": e.profile_id,
                "timestamp": e.timestamp,
                "received_at": e.received_at,
                "message": e.payload,
            }
            for e in page
        )
        if len(page) < PAGE:
            return out
        before = (page[-1].timestamp, page[-1].id)


def _consent(session: Session, workspace_id: str, profile_id: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    offset = 0
    while True:
        _, records = consent.subject_history(
            session=session,
            workspace_id=workspace_id,
            profile_id=profile_id,
            limit=PAGE,
            offset=offset,
        )
        out.extend(asdict(r) for r in records)
        if len(records) < PAGE:
            return out
        offset += PAGE

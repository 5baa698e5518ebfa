"""Erasure routes: erase a person, read erasures and their certificates, lift a suppression,
the secret a processor checks erasure webhooks with, and rectification (correcting a person's
traits, which names its subject the same way).

Erasing and lifting need ``privacy:write``; reading needs ``privacy:read`` (the privacy officer
and admin roles hold both). The person is named by ``profile_id``, ``email`` or ``user_id``;
404 when no profile matches (an erased person has none), 409 when the email and user id name
different people. The answer comes once the erasure is committed; the processors' webhooks
are called right after, and again later when they fail (docs/erasure.md).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from consentry.config import Settings
from consentry.consent import service as consent
from consentry.deps import DbDep, PrivacyRead, PrivacyWrite, SettingsDep
from consentry.errors import FieldError, Invalid
from consentry.platform.db import Database
from consentry.platform.tenancy import Principal
from consentry.privacy import (
    erasure_service,
    notification_service,
    processor_service,
    rectification_service,
)
from consentry.privacy.erasure import webhook_secret
from consentry.privacy.erasure_service import Erasure

router = APIRouter(prefix="/v1/privacy", tags=["privacy"])


class ErasureIn(BaseModel):
    """Who to erase (one of profile_id, email, user_id) and why."""

    model_config = ConfigDict(extra="forbid")

    profile_id: str | None = Field(None, min_length=1, max_length=36)
    email: str | None = Field(None, min_length=3, max_length=320)
    user_id: str | None = Field(None, min_length=1, max_length=512)
    reason: str = Field(
        ...,
        min_length=1,
        max_length=200,
        description="Why (no personal data), e.g. 'erasure request by email'.",
        examples=["erasure request received by email"],
    )
    request_id: str | None = Field(None, max_length=36, description="The request it fulfils.")


class LiftIn(BaseModel):
    """Identifiers of an erased person who came back by a new, explicit action."""

    model_config = ConfigDict(extra="forbid")

    email: str | None = Field(None, max_length=320)
    phone: str | None = Field(None, max_length=64)
    user_id: str | None = Field(None, max_length=512)
    anonymous_id: str | None = Field(None, max_length=512)
    reason: str = Field(..., min_length=1, max_length=200)


class RectificationIn(BaseModel):
    """Whose traits to correct (one of profile_id, email, user_id), the correct values, why."""

    model_config = ConfigDict(extra="forbid")

    profile_id: str | None = Field(None, min_length=1, max_length=36)
    email: str | None = Field(None, min_length=3, max_length=320)
    user_id: str | None = Field(None, min_length=1, max_length=512)
    traits: dict[str, Any] = Field(..., examples=[{"last_name": "Lovelace"}])
    reason: str = Field(..., min_length=1, max_length=200)
    purge_history: bool = Field(
        False, description="Also delete the earlier values of these traits from the history."
    )


def _subject(session: Session, principal: Principal, body: ErasureIn | RectificationIn) -> str:
    """The profile the body names by profile_id, email or user_id (404, 409 otherwise)."""
    return consent.resolve_subject(
        session=session,
        workspace_id=principal.workspace_id,
        profile_id=body.profile_id,
        email=body.email,
        user_id=body.user_id,
    )


def _actor(principal: Principal) -> str:
    return principal.actor


def _answer(
    erasure: Erasure, db: Database, settings: Settings, background: BackgroundTasks
) -> dict[str, Any]:
    """After the erasure's commit: purge the store's files, have the processors' webhooks
    called once the answer is sent, and answer with the erasure."""
    db.purge_deleted()
    if erasure.notifications:
        background.add_task(
            notification_service.deliver_due, db=db, server_secret=settings.secret_key
        )
    return erasure.document()


@router.post("/erasures", status_code=201)
def erase(
    body: ErasureIn,
    principal: PrivacyWrite,
    db: DbDep,
    settings: SettingsDep,
    background: BackgroundTasks,
) -> dict[str, Any]:
    """Erase the person everywhere, destroy their keys, and issue the erasure certificate."""
    with db.write() as session:
        profile_id = _subject(session, principal, body)
        erasure = erasure_service.erase(
            session=session,
            workspace_id=principal.workspace_id,
            profile_id=profile_id,
            actor=_actor(principal),
            reason=body.reason,
            request_id=body.request_id,
            order_hold=settings.erasure.order_hold,
        )
    return _answer(erasure, db, settings, background)


@router.post("/requests/{request_id}/erase", status_code=201)
def fulfil_request(
    request_id: str,
    principal: PrivacyWrite,
    db: DbDep,
    settings: SettingsDep,
    background: BackgroundTasks,
) -> dict[str, Any]:
    """Fulfil a verified erasure request: erase the person linked to it, complete the request,
    and answer with the erasure and its certificate. 400 when the request is of another type or
    names no profile; 409 when it is not verified or in progress; 404 when the person is gone."""
    with db.write() as session:
        erasure = erasure_service.fulfil_request(
            session=session,
            workspace_id=principal.workspace_id,
            request_id=request_id,
            actor=_actor(principal),
            order_hold=settings.erasure.order_hold,
        )
    return _answer(erasure, db, settings, background)


@router.post("/rectifications")
def rectify(body: RectificationIn, principal: PrivacyWrite, db: DbDep) -> dict[str, Any]:
    """Correct a person's traits (GDPR Art. 16): the values become current; recorded in the
    audit trail with the keys (never the values). 404 for an unknown person, 400 naming a bad
    field."""
    with db.write() as session:
        profile_id = _subject(session, principal, body)
        canonical, keys, purged = rectification_service.rectify(
            session=session,
            workspace_id=principal.workspace_id,
            profile_id=profile_id,
            traits=body.traits,
            actor=_actor(principal),
            reason=body.reason,
            purge_history=body.purge_history,
        )
    return {"profile_id": canonical, "rectified": keys, "history_deleted": purged}


@router.get("/erasures")
def list_erasures(
    principal: PrivacyRead,
    db: DbDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> dict[str, Any]:
    """The workspace's erasures, newest first."""
    with db.read() as session:
        found = erasure_service.list_erasures(
            session=session, workspace_id=principal.workspace_id, limit=limit, offset=offset
        )
    return {"erasures": [e.document() for e in found]}


@router.get("/erasures/{erasure_id}")
def read_erasure(erasure_id: str, principal: PrivacyRead, db: DbDep) -> dict[str, Any]:
    """One erasure: its certificate and its notifications."""
    with db.read() as session:
        found = erasure_service.get_erasure(
            session=session, workspace_id=principal.workspace_id, erasure_id=erasure_id
        )
    return found.document()


@router.post("/suppressions/lift")
def lift(body: LiftIn, principal: PrivacyWrite, db: DbDep) -> dict[str, Any]:
    """Let an erased person's identifiers be used again (they came back by a new, explicit
    action the shop verified). Recorded in the audit trail."""
    with db.write() as session:
        lifted = erasure_service.lift_suppression(
            session=session,
            workspace_id=principal.workspace_id,
            identifiers=body.model_dump(exclude={"reason"}),
            actor=_actor(principal),
            reason=body.reason,
        )
    return {"lifted": lifted}


@router.get("/processors/{processor_id}/webhook-secret")
def secret(
    processor_id: str, principal: PrivacyWrite, db: DbDep, settings: SettingsDep
) -> dict[str, Any]:
    """The secret a processor checks the ``Consentry-Signature`` of erasure webhooks with."""
    with db.read() as session:
        processor = processor_service.get_processor(
            session=session, workspace_id=principal.workspace_id, processor_id=processor_id
        )
    if processor.spec.erasure_webhook_url is None:
        raise Invalid(
            "this processor has no erasure webhook",
            [FieldError("erasure_webhook_url", "register one first")],
        )
    return {
        "processor_id": processor.id,
        "secret": webhook_secret(settings.secret_key, principal.workspace_id, processor.id),
        "header": "Consentry-Signature",
        "scheme": "t=<unix time>,v1=<hex HMAC-SHA256 of '<t>.<body>'>",
    }

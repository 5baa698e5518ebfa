"""Routes of data-subject requests (docs/privacy-requests.md).

Public (no token; the workspace is named in the body):
  ``POST /v1/privacy/requests/public`` files a request and mails a code and a link;
  ``POST /v1/privacy/requests/{id}/verify`` checks a code; ``POST .../{id}/resend`` mails a new
  one. A mail the SMTP server does not take is a 502 ``delivery_failed`` (the request stays;
  resend once the server is back), as for double opt-in. Over a limit of the public intake
  (requests per email address and per client network, new codes per request, codes tried per
  network: ``request_limits``) the answer is 429 ``rate_limited``, its ``errors`` naming what
  was limited, with a ``Retry-After`` header (seconds) and ``retry_after`` in the body.

Admin (``privacy:read`` to read, ``privacy:write`` to act; every query scoped to the token's
workspace, so another workspace's request is a 404):
  ``POST /v1/privacy/requests`` (staff intake, optionally already verified by staff),
  ``GET /v1/privacy/requests`` (the queue), ``GET .../{id}``, ``GET .../{id}/history``,
  ``POST .../{id}/start|complete|reject|extend|link``. Reads are recorded in the audit trail
  (``dsr.list``, ``dsr.read``, ``dsr.history``); every change is recorded by the service.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from consentry.config import Settings
from consentry.delivery.models import Mailer
from consentry.deps import DbDep, PrivacyRead, PrivacyWrite, ReadAudit, SettingsDep
from consentry.errors import Conflict, FieldError, Invalid
from consentry.platform.db import utcnow
from consentry.platform.tenancy import Principal
from consentry.privacy import request_limits as limits
from consentry.privacy import request_service as service
from consentry.privacy import requests as rq

router = APIRouter(prefix="/v1/privacy/requests", tags=["privacy"])

TYPES_TEXT = ", ".join(rq.TYPES)
Workspace = Annotated[str, Field(min_length=1, max_length=64, description="The workspace id.")]
FAILED: dict[int | str, dict[str, Any]] = {
    502: {
        "description": "The SMTP server did not take the mail; the request is kept.",
        "content": {"application/json": {}},
    }
}
LIMITED: dict[int | str, dict[str, Any]] = {
    429: {
        "description": "Over a limit of the public intake: the errors name it; try again after "
        "Retry-After seconds. Nothing was recorded.",
        "content": {"application/json": {}},
    }
}


class PublicRequestIn(BaseModel):
    """A request filed by the person."""

    model_config = ConfigDict(extra="forbid")

    workspace: Workspace
    type: str = Field(..., max_length=32, description=TYPES_TEXT)
    email: str = Field(..., max_length=320, description="Where the code is sent.")
    country: str | None = Field(None, max_length=8, description="ISO 3166-1 alpha-2.")
    message: str | None = Field(None, max_length=rq.MAX_MESSAGE, description="In your words.")


class StaffRequestIn(BaseModel):
    """A request received by the shop; ``verified`` when staff identified a known profile."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(..., max_length=32, description=TYPES_TEXT)
    email: str | None = Field(None, max_length=320)
    profile_id: str | None = Field(None, min_length=1, max_length=36)
    user_id: str | None = Field(None, min_length=1, max_length=512)
    country: str | None = Field(None, max_length=8)
    message: str | None = Field(None, max_length=rq.MAX_MESSAGE)
    verified: bool = Field(False, description="Staff verified the person (a known profile).")
    reason: str | None = Field(None, max_length=1000)


class VerifyIn(BaseModel):
    """The code the person received."""

    model_config = ConfigDict(extra="forbid")

    workspace: Workspace
    code: str = Field(..., pattern=r"^[0-9]{6}$", description="Six digits.")


class ResendIn(BaseModel):
    """Which workspace the request belongs to."""

    model_config = ConfigDict(extra="forbid")

    workspace: Workspace


class ActionIn(BaseModel):
    """Why (required to reject and to extend; the extension's reason is told to the person)."""

    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(None, max_length=1000)


class LinkIn(BaseModel):
    """The person's profile: one of profile_id, email, user_id."""

    model_config = ConfigDict(extra="forbid")

    profile_id: str | None = Field(None, min_length=1, max_length=36)
    email: str | None = Field(None, min_length=3, max_length=320)
    user_id: str | None = Field(None, min_length=1, max_length=512)
    reason: str | None = Field(None, max_length=1000)


def guard_of(request: Request) -> limits.Guard:
    """The limits' view of the caller: its address as the server sees it (behind a reverse
    proxy, the proxy's unless uvicorn trusts its ``X-Forwarded-For``)."""
    return limits.Guard(request.client.host if request.client else None)


def rules_of(settings: Settings) -> rq.Rules:
    """The request rules of the app's settings."""
    return rq.rules_from(settings.privacy)


def mailer_of(request: Request) -> Mailer:
    mailer: Mailer = request.app.state.mailer
    return mailer


def _actor(principal: Principal) -> str:
    return principal.actor


def send_challenge(
    request: Request, settings: Settings, challenge: service.Challenge
) -> service.Delivery:
    """Mail a challenge through the app's mailer."""
    return service.send_challenge(
        mailer=mailer_of(request),
        challenge=challenge,
        public_url=settings.public_url,
        from_address=settings.smtp.from_address,
        from_name=settings.smtp.from_name,
    )


def send_notice(
    request: Request, settings: Settings, extension: service.Extension
) -> service.Delivery | None:
    """Mail an extension's notice to the person; None when there is no address to write to."""
    if extension.address is None:
        return None
    return service.send(
        mailer=mailer_of(request),
        to=extension.address,
        mail=extension.mail,
        from_address=settings.smtp.from_address,
        from_name=settings.smtp.from_name,
    )


def _challenge_answer(
    challenge: service.Challenge, delivery: service.Delivery, body: dict[str, Any], status: int
) -> JSONResponse:
    request_id = challenge.request.id
    body["verification"] = {
        "sent": delivery.sent is not None,
        "expires_at": challenge.expires_at.isoformat(),
        "verify_url": f"{router.prefix}/{request_id}/verify",
        "resend_url": f"{router.prefix}/{request_id}/resend",
    }
    if delivery.error is not None:
        body = {"code": "delivery_failed", "message": delivery.error.message, "errors": [], **body}
        return JSONResponse(jsonable_encoder(body), status_code=502)
    return JSONResponse(jsonable_encoder(body), status_code=status)


# --- public -------------------------------------------------------------------------------------


@router.post("/public", status_code=201, responses={**FAILED, **LIMITED})
def file_request(
    body: PublicRequestIn, db: DbDep, settings: SettingsDep, request: Request
) -> JSONResponse:
    """File a request (no token). It starts ``unverified``: a six-digit code and a link are
    mailed to the address; either one verifies it. 404 for an unknown workspace, 400 naming
    each bad field, 429 over the requests of the email address (``email``) or of the client's
    network (``client``)."""
    with db.write() as session:
        intake = service.submit(
            session=session,
            workspace_id=body.workspace,
            request_type=body.type,
            email=body.email,
            country=body.country,
            message=body.message,
            rules=rules_of(settings),
            secret=settings.secret_key,
            guard=guard_of(request),
        )
    assert intake.challenge is not None
    delivery = send_challenge(request, settings, intake.challenge)
    return _challenge_answer(
        intake.challenge, delivery, {"request": rq.public_json(intake.request)}, 201
    )


def verification_refused(found: service.Verification) -> Exception:
    """The error of a code that did not verify."""
    if found.outcome == rq.WRONG:
        left = found.attempts_left
        return Invalid(
            "the code is not right",
            [FieldError("code", f"wrong code; {left} attempt{'s' if left != 1 else ''} left")],
        )
    if found.outcome == rq.EXHAUSTED:
        return Conflict("too many wrong codes: ask for a new code (resend)")
    return Conflict("the code has expired: ask for a new code (resend)")


@router.post("/{request_id}/verify", response_model=None, responses=LIMITED)
def verify(
    request_id: str, body: VerifyIn, db: DbDep, settings: SettingsDep, request: Request
) -> dict[str, Any]:
    """Verify with the mailed code (no token). 400 naming ``code`` for a wrong code (each uses
    an attempt), 409 when the code expired or too many were wrong (ask for a new one), or when
    the request is not unverified, 429 over the codes tried from the client's network. When it
    repeats an open request of the same type from the same address, it is closed and
    ``duplicate_of`` names the one that goes on."""
    with db.write() as session:
        found = service.verify_code(
            session=session,
            workspace_id=body.workspace,
            request_id=request_id,
            code=body.code,
            rules=rules_of(settings),
            secret=settings.secret_key,
            guard=guard_of(request),
        )
    if not found.verified:
        raise verification_refused(found)
    duplicate = found.duplicate_of
    return {
        "verified": True,
        "request": rq.public_json(found.request),
        "duplicate_of": rq.public_json(duplicate) if duplicate else None,
    }


@router.post("/{request_id}/resend", responses={**FAILED, **LIMITED})
def resend(
    request_id: str, body: ResendIn, db: DbDep, settings: SettingsDep, request: Request
) -> JSONResponse:
    """Mail a new code and link (no token); the older ones stop working. 409 when the request
    is not unverified or when the most codes were sent; 429 over the new codes of the request
    (``request``) or of the client's network (``client``)."""
    with db.write() as session:
        challenge = service.resend(
            session=session,
            workspace_id=body.workspace,
            request_id=request_id,
            rules=rules_of(settings),
            secret=settings.secret_key,
            guard=guard_of(request),
        )
    delivery = send_challenge(request, settings, challenge)
    return _challenge_answer(
        challenge, delivery, {"request": rq.public_json(challenge.request)}, 200
    )


# --- admin --------------------------------------------------------------------------------------


@router.post("", status_code=201, responses={200: {"description": "A duplicate."}, **FAILED})
def intake(
    body: StaffRequestIn,
    principal: PrivacyWrite,
    db: DbDep,
    settings: SettingsDep,
    request: Request,
) -> JSONResponse:
    """Record a request the shop received. With ``verified: true`` the person must be a known
    profile (404 otherwise): the request starts verified by staff, and an open request of the
    same type from the same person is answered instead (200, ``duplicate_of``). Otherwise the
    code and link are mailed to ``email`` (or the profile's address)."""
    now = utcnow()
    with db.write() as session:
        made = service.submit_for_staff(
            session=session,
            workspace_id=principal.workspace_id,
            request_type=body.type,
            actor=_actor(principal),
            email=body.email,
            profile_id=body.profile_id,
            user_id=body.user_id,
            country=body.country,
            message=body.message,
            verified=body.verified,
            reason=body.reason,
            rules=rules_of(settings),
            secret=settings.secret_key,
            now=now,
        )
    shown = rq.request_json(made.request, now)
    if made.duplicate:
        body_out = {"duplicate_of": made.request.id, "request": shown}
        return JSONResponse(jsonable_encoder(body_out), status_code=200)
    if made.challenge is None:
        return JSONResponse(jsonable_encoder({"request": shown}), status_code=201)
    delivery = send_challenge(request, settings, made.challenge)
    return _challenge_answer(made.challenge, delivery, {"request": shown}, 201)


@router.get("")
def queue(
    principal: PrivacyRead,
    db: DbDep,
    reads: ReadAudit,
    status: Annotated[
        str | None, Query(max_length=16, description="open (default), all, or a status")
    ] = None,
    type: Annotated[str | None, Query(max_length=32, description=TYPES_TEXT)] = None,
    limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> dict[str, Any]:
    """The queue: open requests by default, overdue first, then by due date, each with its
    ``due_at`` and ``days_left``."""
    now = utcnow()
    with reads.reading(principal, "dsr.list", target_type=service.TARGET, lookup="queue") as note:
        with db.read() as session:
            total, found = service.list_requests(
                session=session,
                workspace_id=principal.workspace_id,
                status=status,
                request_type=type,
                limit=limit,
                offset=offset,
                now=now,
            )
        note.found(r.id for r in found)
    return {"total": total, "requests": [rq.request_json(r, now) for r in found]}


@router.get("/{request_id}")
def read(request_id: str, principal: PrivacyRead, db: DbDep, reads: ReadAudit) -> dict[str, Any]:
    """One request, with the requester's email and words (the read is recorded)."""
    now = utcnow()
    with reads.reading(
        principal, "dsr.read", target_type=service.TARGET, lookup="request_id"
    ) as note:
        with db.read() as session:
            detail = service.get_detail(
                session=session, workspace_id=principal.workspace_id, request_id=request_id
            )
        note.found([detail.request.id])
    shown = rq.request_json(detail.request, now)
    shown.update(email=detail.email, message=detail.message)
    return shown


@router.get("/{request_id}/history")
def history(request_id: str, principal: PrivacyRead, db: DbDep, reads: ReadAudit) -> dict[str, Any]:
    """Every step of the request, oldest first: who did what, when, from which status."""
    with reads.reading(
        principal, "dsr.history", target_type=service.TARGET, lookup="request_id"
    ) as note:
        with db.read() as session:
            steps = service.history(
                session=session, workspace_id=principal.workspace_id, request_id=request_id
            )
        note.found([request_id])
    return {"request_id": request_id, "history": [rq.history_json(s) for s in steps]}


def _transition(
    action: str, request_id: str, body: ActionIn | None, principal: Principal, db: DbDep
) -> dict[str, Any]:
    with db.write() as session:
        found = service.transition(
            session=session,
            workspace_id=principal.workspace_id,
            request_id=request_id,
            action=action,
            actor=_actor(principal),
            reason=body.reason if body else None,
        )
    return rq.request_json(found, utcnow())


@router.post("/{request_id}/start")
def start(
    request_id: str, principal: PrivacyWrite, db: DbDep, body: ActionIn | None = None
) -> dict[str, Any]:
    """verified -> in_progress (409 naming the status otherwise: an unverified request cannot
    be started)."""
    return _transition("start", request_id, body, principal, db)


@router.post("/{request_id}/complete")
def complete(
    request_id: str, principal: PrivacyWrite, db: DbDep, body: ActionIn | None = None
) -> dict[str, Any]:
    """in_progress -> completed; ``reason`` is kept as the resolution."""
    return _transition("complete", request_id, body, principal, db)


@router.post("/{request_id}/reject")
def reject(request_id: str, body: ActionIn, principal: PrivacyWrite, db: DbDep) -> dict[str, Any]:
    """Refuse an open request, with a ``reason`` (required)."""
    return _transition("reject", request_id, body, principal, db)


@router.post("/{request_id}/extend")
def extend(
    request_id: str,
    body: ActionIn,
    principal: PrivacyWrite,
    db: DbDep,
    settings: SettingsDep,
    request: Request,
) -> dict[str, Any]:
    """Extend the deadline once, with a ``reason``; the person is mailed the new date and the
    reason (``notice_sent``). 409 when extended already, not verified or in progress, or
    overdue."""
    with db.write() as session:
        found = service.extend(
            session=session,
            workspace_id=principal.workspace_id,
            request_id=request_id,
            actor=_actor(principal),
            reason=body.reason,
            rules=rules_of(settings),
        )
    sent = send_notice(request, settings, found)
    shown = rq.request_json(found.request, utcnow())
    shown["notice_sent"] = bool(sent and sent.sent)
    shown["notice_error"] = sent.error.message if sent and sent.error else None
    return shown


@router.post("/{request_id}/link")
def link(request_id: str, body: LinkIn, principal: PrivacyWrite, db: DbDep) -> dict[str, Any]:
    """Link the request to the person's unified profile (profile_id, email or user_id), so it
    can be fulfilled; 404 when no profile matches, 409 once the request is closed."""
    with db.write() as session:
        found = service.link_profile(
            session=session,
            workspace_id=principal.workspace_id,
            request_id=request_id,
            actor=_actor(principal),
            profile_id=body.profile_id,
            email=body.email,
            user_id=body.user_id,
            reason=body.reason,
        )
    return rq.request_json(found, utcnow())

"""Dashboard pages of data-subject requests: the queue (open requests with their days left,
overdue ones first and highlighted) and one request with its history and the steps staff can
take. Auth by the admin cookie, like every dashboard page; reads need ``privacy:read`` and are
recorded in the audit trail (``details.via = "dashboard"``); actions need ``privacy:write``
and a CSRF token."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from consentry.deps import DbDep, PrivacyRead, PrivacyWrite, ReadAudit, SettingsDep
from consentry.errors import FieldError, Invalid
from consentry.platform.db import utcnow
from consentry.platform.tenancy import Scope
from consentry.privacy import request_service as service
from consentry.privacy import requests as rq
from consentry.privacy.request_routes import rules_of, send_notice
from consentry.web.routes import CsrfChecked, PageRoute, redirect, render

router = APIRouter(prefix="/app", route_class=PageRoute, include_in_schema=False)
STATUS_CHOICES = ("open", *rq.STATUSES, "all")
ACTIONS = ("start", "complete", "reject", "extend")


@router.get("/privacy/requests")
def queue_page(
    request: Request,
    principal: PrivacyRead,
    db: DbDep,
    reads: ReadAudit,
    status: str = "open",
    type: str = "",  # noqa: A002 - the query parameter is ?type=
) -> Response:
    """The queue of requests: overdue first, then by due date."""
    if status not in STATUS_CHOICES:
        raise Invalid("unknown status", [FieldError("status", ", ".join(STATUS_CHOICES))])
    if type and type not in rq.TYPES:
        raise Invalid("unknown type", [FieldError("type", ", ".join(rq.TYPES))])
    now = utcnow()
    with reads.reading(
        principal, "dsr.list", target_type=service.TARGET, lookup="queue", via="dashboard"
    ) as note:
        with db.read() as session:
            total, found = service.list_requests(
                session=session,
                workspace_id=principal.workspace_id,
                status=status,
                request_type=type or None,
                limit=service.MAX_PAGE,
                now=now,
            )
        note.found(r.id for r in found)
    return render(
        request,
        "privacy_requests.html",
        principal=principal,
        requests=found,
        total=total,
        now=now,
        status=status,
        type=type,
        statuses=STATUS_CHOICES,
        types=list(rq.TYPES),
        overdue=sum(1 for r in found if r.overdue(now)),
    )


@router.get("/privacy/requests/{request_id}")
def request_page(
    request: Request,
    request_id: str,
    principal: PrivacyRead,
    db: DbDep,
    reads: ReadAudit,
    done: str = "",
    notice: str = "",
) -> Response:
    """One request: its dates, the requester's email and words, its history, and the steps
    that can be taken now."""
    now = utcnow()
    with reads.reading(
        principal, "dsr.read", target_type=service.TARGET, lookup="request_id", via="dashboard"
    ) as note:
        with db.read() as session:
            detail = service.get_detail(
                session=session, workspace_id=principal.workspace_id, request_id=request_id
            )
            steps = service.history(
                session=session, workspace_id=principal.workspace_id, request_id=request_id
            )
        note.found([detail.request.id])
    found = detail.request
    can_write = principal.allows(Scope.PRIVACY_WRITE)
    possible = [
        a
        for a in ACTIONS
        if can_write
        and (
            (a == "extend" and found.status in rq.ACTIVE and not found.extended)
            or (a != "extend" and found.status in rq.TRANSITIONS[a][0])
        )
    ]
    return render(
        request,
        "privacy_request.html",
        principal=principal,
        r=found,
        detail=detail,
        steps=steps,
        now=now,
        actions=possible,
        done=done if done in ACTIONS else "",
        notice=notice if notice in ("sent", "failed", "none") else "",
        type_name=rq.TYPE_NAMES.get(found.type, found.type),
    )


@router.post("/privacy/requests/{request_id}/{action}", dependencies=[CsrfChecked])
def act(
    request: Request,
    request_id: str,
    action: str,
    principal: PrivacyWrite,
    db: DbDep,
    settings: SettingsDep,
    reason: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    """Start, complete, reject or extend (the extension notice is mailed to the person)."""
    if action not in ACTIONS:
        raise Invalid("unknown step", [FieldError("action", ", ".join(ACTIONS))])
    actor = principal.actor
    if action == "extend":
        with db.write() as session:
            extended = service.extend(
                session=session,
                workspace_id=principal.workspace_id,
                request_id=request_id,
                actor=actor,
                reason=reason,
                rules=rules_of(settings),
            )
        sent = send_notice(request, settings, extended)
        notice = "none" if sent is None else "sent" if sent.error is None else "failed"
        return redirect(f"{_page(request_id)}?done=extend&notice={notice}")
    with db.write() as session:
        service.transition(
            session=session,
            workspace_id=principal.workspace_id,
            request_id=request_id,
            action=action,
            actor=actor,
            reason=reason or None,
        )
    return redirect(f"{_page(request_id)}?done={action}")


def _page(request_id: str) -> str:
    return f"/app/privacy/requests/{quote(request_id, safe='')}"

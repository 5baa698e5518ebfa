"""Routes of double opt-in for email.

``router`` (admin, scope ``consent:write``): ``POST /v1/consent/double-opt-in`` records a pending
request and mails the confirmation link; ``POST /v1/consent/double-opt-in/{record_id}/resend``
mails a fresh link for a request still open. When the SMTP server does not take the mail the
answer is 502 with ``code`` ``delivery_failed``, the message and the pending record's id: the
record stays (the subject did ask), and the resend route sends it once the server is back.

``pages`` (public, no JavaScript): ``GET /c/{token}`` shows a button, so a mail scanner that
fetches the link confirms nothing; ``POST /c/{token}`` confirms. Statuses: 200 (asking,
confirmed, already confirmed), 400 (malformed or forged link), 409 (superseded by a later
denial or withdrawal), 410 (expired).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import HTMLResponse, JSONResponse

from consentry.config import Settings
from consentry.consent import customer_pages, doi, doi_service, links
from consentry.consent.routes import record_json
from consentry.delivery.models import Mailer
from consentry.deps import ConsentWrite, DbDep, SettingsDep
from consentry.errors import NotFound
from consentry.platform.tenancy import Principal

router = APIRouter(prefix="/v1/consent/double-opt-in", tags=["consent"])
pages = APIRouter(include_in_schema=False)

PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    **customer_pages.PAGE_HEADERS,
}
FAILED: dict[int | str, dict[str, Any]] = {
    502: {
        "description": "The SMTP server did not take the mail; the pending record is kept.",
        "content": {"application/json": {}},
    }
}


def get_mailer(request: Request) -> Mailer:
    """The mailer ``api.create_app`` wired from the settings."""
    mailer: Mailer = request.app.state.mailer
    return mailer


def _answer(
    pending: doi_service.Pending, delivery: doi_service.Delivery, status: int
) -> JSONResponse:
    record = pending.record
    body: dict[str, Any] = {
        "record_id": record.id,
        "profile_id": record.profile_id,
        "purpose": record.purpose,
        "channel": record.channel,
        "state": record.state,
        "to": pending.address,
        "language": pending.language,
        "sent": delivery.sent is not None,
        "message_id": delivery.sent.message_id if delivery.sent else None,
        "link_expires_at": delivery.expires_at.isoformat(),
        "resend_url": f"{router.prefix}/{record.id}/resend",
        "record": record_json(record),
    }
    if delivery.error is not None:
        body = {"code": "delivery_failed", "message": delivery.error.message, "errors": [], **body}
        return JSONResponse(jsonable_encoder(body), status_code=502)
    return JSONResponse(jsonable_encoder(body), status_code=status)


def _send(
    request: Request, settings: Settings, pending: doi_service.Pending
) -> doi_service.Delivery:
    return doi_service.send(
        mailer=get_mailer(request),
        pending=pending,
        secret=settings.secret_key,
        public_url=settings.public_url,
        ttl=timedelta(hours=settings.double_opt_in.link_ttl_hours),
        from_address=settings.smtp.from_address,
        from_name=settings.smtp.from_name,
    )


def _actor(principal: Principal) -> str:
    return principal.actor


@router.post("", status_code=201, responses=FAILED)
def request_double_opt_in(
    body: doi.DoubleOptInIn,
    principal: ConsentWrite,
    db: DbDep,
    settings: SettingsDep,
    request: Request,
) -> JSONResponse:
    """Record a pending request for the subject's email and mail the confirmation link.

    The subject must exist (404 otherwise). 201 when the SMTP server took the mail, 502 when it
    did not (the pending record stays; use ``resend_url``); 409 when a grant is in force.
    """
    with db.write() as session:
        pending = doi_service.request_confirmation(
            session=session, workspace_id=principal.workspace_id, item=body, actor=_actor(principal)
        )
    return _answer(pending, _send(request, settings, pending), 201)


@router.post("/{record_id}/resend", responses=FAILED)
def resend_double_opt_in(
    record_id: str, principal: ConsentWrite, db: DbDep, settings: SettingsDep, request: Request
) -> JSONResponse:
    """Mail a fresh confirmation link for a request that is still open (409 when it was
    confirmed or superseded, 404 when ``record_id`` is not a double opt-in request)."""
    with db.read() as session:
        pending = doi_service.pending_request(
            session=session, workspace_id=principal.workspace_id, record_id=record_id
        )
    return _answer(pending, _send(request, settings, pending), 200)


# --- the customer's pages -----------------------------------------------------------------------


def _page(
    status: int,
    language: str,
    kind: str,
    brand: str = "",
    *,
    button: bool = False,
    note: bool = False,
) -> HTMLResponse:
    w = doi.words(language)
    values = {"brand": brand}
    title, text = w[f"{kind}_title"], w[f"{kind}_text"]
    content = (
        customer_pages.templates()
        .get_template("doi/page.html")
        .render(
            lang=language,
            brand=brand,
            title=title.format(**values),
            text=text.format(**values),
            button=w["page_button"] if button else "",
            note=w["page_note"] if note else "",
        )
    )
    return HTMLResponse(content, status_code=status, headers=PAGE_HEADERS)


_STATUS = {doi.ALREADY_CONFIRMED: (200, "already"), doi.SUPERSEDED: (409, "superseded")}


def _link_error(exc: links.LinkError, token: str) -> HTMLResponse:
    language = doi.claimed_language(token)
    if exc.reason == "expired":
        return _page(410, language, "expired")
    return _page(400, language, "invalid")


@pages.get("/c/{token}", response_class=HTMLResponse)
def confirmation_page(token: str, db: DbDep, settings: SettingsDep) -> HTMLResponse:
    """Ask the customer to confirm (a button; opening the link changes nothing)."""
    try:
        link = doi_service.read_link(secret=settings.secret_key, token=token)
        with db.read() as session:
            state = doi_service.link_state(session=session, link=link)
    except links.LinkError as exc:
        return _link_error(exc, token)
    except NotFound:
        return _page(400, doi.claimed_language(token), "invalid")
    if state.outcome == doi.OPEN:
        return _page(200, state.language, "page", state.brand, button=True, note=True)
    status, kind = _STATUS[state.outcome]
    return _page(status, state.language, kind, state.brand)


@pages.post("/c/{token}", response_class=HTMLResponse)
def confirm(token: str, request: Request, db: DbDep, settings: SettingsDep) -> HTMLResponse:
    """Confirm: a grant is recorded once; a second press says it is already confirmed."""
    try:
        link = doi_service.read_link(secret=settings.secret_key, token=token)
        with db.write() as session:
            state = doi_service.confirm(
                session=session,
                link=link,
                ip=request.client.host if request.client else None,
                user_agent=request.headers.get("user-agent"),
            )
    except links.LinkError as exc:
        return _link_error(exc, token)
    except NotFound:
        return _page(400, doi.claimed_language(token), "invalid")
    if state.outcome == doi.OPEN:
        return _page(200, state.language, "done", state.brand)
    status, kind = _STATUS[state.outcome]
    return _page(status, state.language, kind, state.brand)

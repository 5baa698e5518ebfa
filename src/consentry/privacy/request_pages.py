"""The person's pages of data-subject requests (public, no login), in the look of the
preference center (the workspace's branding and colours).

``GET /privacy-request/{workspace}``: the form. ``POST``: file the request, mail the code and
the link, then 303 to the request's page. ``GET /privacy-request/{workspace}/{id}``: the
request and a box for the code; ``POST``: check the code; ``POST .../{id}/resend``: a new code.
``GET /dsr/{token}``: the mailed link shows one button (a mail scanner that fetches the link
verifies nothing); ``POST /dsr/{token}`` verifies.

Every form carries a CSRF token: a random value in the cookie ``consentry_dsr_csrf``
(HttpOnly, SameSite=Strict) and in a hidden field, compared in constant time (double submit),
so another site cannot file or confirm requests from a visitor's browser. No script runs on
these pages; the Content-Security-Policy allows only the page's own stylesheet.

Statuses: 400 a form or link that is not valid, 403 a stale form (CSRF), 404 an unknown
workspace or request, 409 a request that cannot take the step, 410 an expired link, 429 over a
limit of the public intake (``request_limits``: the page says what and how long to wait, with a
``Retry-After`` header; what was typed is kept).
"""

from __future__ import annotations

import hmac
import re
import secrets
from functools import lru_cache
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment
from starlette.concurrency import run_in_threadpool

from consentry.config import Settings
from consentry.consent import customer_pages
from consentry.consent import preferences as pc
from consentry.consent import service as consent
from consentry.consent.i18n import Translator
from consentry.deps import DbDep, SettingsDep
from consentry.errors import Conflict, Invalid, NotFound
from consentry.platform.db import Database, utcnow
from consentry.privacy import request_service as service
from consentry.privacy import requests as rq
from consentry.privacy.request_routes import guard_of, rules_of, send_challenge

pages = APIRouter(include_in_schema=False)

FORM_PATH = customer_pages.REQUEST_FORM_PATH
CSRF_COOKIE = "consentry_dsr_csrf"
CSRF_FIELD = "csrf_token"
_CSRF_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")
MAX_FIELDS = 10
PAGE_HEADERS = customer_pages.PAGE_HEADERS
ENGLISH = Translator("en")  # the form is in English only (the frame's footer, too)


def templates() -> Environment:
    """These pages' templates, framed by the preference center's (``preferences/base.html``)."""
    return customer_pages.environment("consentry.privacy")


@lru_cache(maxsize=1)
def _extra_css() -> str:
    """The form's rules, added to the preference center's stylesheet."""
    return templates().get_template("requests/extra.css").render()


# --- CSRF (double submit) -----------------------------------------------------------------------


def _csrf_token(request: Request) -> tuple[str, bool]:
    current = request.cookies.get(CSRF_COOKIE, "")
    if _CSRF_SHAPE.fullmatch(current):
        return current, False
    return secrets.token_urlsafe(32), True


def _csrf_ok(request: Request, sent: str | None) -> bool:
    cookie = request.cookies.get(CSRF_COOKIE, "")
    return bool(
        sent
        and _CSRF_SHAPE.fullmatch(cookie)
        and hmac.compare_digest(sent.encode(), cookie.encode())
    )


def render(
    request: Request,
    template: str,
    status: int,
    branding: pc.Branding | None,
    **context: Any,
) -> HTMLResponse:
    """A whole page in the workspace's look, carrying the CSRF token its forms post back."""
    token, fresh = _csrf_token(request)
    response = customer_pages.page(
        templates(),
        template,
        status,
        branding,
        t=ENGLISH,
        languages=[],
        extra_css=_extra_css(),
        csrf_token=token,
        **context,
    )
    if fresh:
        response.set_cookie(
            CSRF_COOKIE,
            token,
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
    return response


def message_page(
    request: Request,
    status: int,
    branding: pc.Branding | None,
    title: str,
    *lines: str,
    status_class: str = "",
) -> HTMLResponse:
    """A page that says something (an answer or an error), without a form."""
    return render(
        request,
        "requests/link.html",
        status,
        branding,
        title=title,
        lines=list(lines),
        status_class=status_class,
        button=False,
        action="",
    )


async def _fields(request: Request) -> dict[str, str] | None:
    """The text fields of a posted form (the first of each name), None when malformed."""
    fields = await customer_pages.form_fields(request, MAX_FIELDS)
    if fields is None:
        return None
    out: dict[str, str] = {}
    for name, value in fields:
        out.setdefault(name, value)
    return out


def _stale(request: Request, branding: pc.Branding | None) -> HTMLResponse:
    return message_page(
        request,
        403,
        branding,
        "This form has expired",
        "The page was open too long or came from another site. Reload it and try again.",
        status_class="error",
    )


def _unknown(request: Request) -> HTMLResponse:
    return message_page(
        request, 404, None, "Page not found", "There is no privacy request form at this address."
    )


# --- the form -----------------------------------------------------------------------------------


def _form(
    request: Request,
    workspace: str,
    branding: pc.Branding,
    status: int = 200,
    values: dict[str, str] | None = None,
    problems: list[tuple[str, str]] | None = None,
    limited: list[str] | None = None,
) -> HTMLResponse:
    shown = {k: (values or {}).get(k, "") for k in ("type", "email", "country", "message")}
    return render(
        request,
        "requests/form.html",
        status,
        branding,
        title="Make a privacy request",
        action=customer_pages.request_form_path(workspace),
        types=[(k, rq.TYPE_NAMES[k], rq.TYPES[k]) for k in rq.TYPES],
        values=shown,
        problems=problems or [],
        invalid={field for field, _ in problems or []},
        limited=limited or [],
    )


def _limited_lines(exc: rq.RateLimited) -> list[str]:
    """What the person reads when a limit refused them: what was limited, how long to wait."""
    fields = {e.field for e in exc.errors}
    wait = rq.wait_text(exc.retry_after)
    lines = []
    if "email" in fields:
        lines.append(
            "Several requests were made for this email address recently. The codes we mailed "
            "for them still work: look for our mails, or try again in " + wait + "."
        )
    if "client" in fields:
        lines.append(f"Too many requests came from your network. Try again in {wait}.")
    if "request" in fields:
        lines.append(
            f"You asked for new codes too often. The last code we sent still works; "
            f"or ask again in {wait}."
        )
    if "code" in fields:
        lines.append(f"Too many codes were tried from your network. Try again in {wait}.")
    return lines


def _retry_after(response: HTMLResponse, exc: rq.RateLimited) -> HTMLResponse:
    response.headers["Retry-After"] = str(exc.retry_after)
    return response


@pages.get(FORM_PATH + "{workspace}")
def request_form(workspace: str, request: Request, db: DbDep) -> Response:
    """The form to file a request."""
    branding = customer_pages.branding_of(db, workspace)
    if branding is None:
        return _unknown(request)
    return _form(request, workspace, branding)


@pages.post(FORM_PATH + "{workspace}")
async def file_request(
    workspace: str, request: Request, db: DbDep, settings: SettingsDep
) -> Response:
    """File the request, mail the code and link, then show the request's page."""
    fields = await _fields(request)
    return await run_in_threadpool(_file, workspace, request, db, settings, fields)


def _file(
    workspace: str,
    request: Request,
    db: Database,
    settings: Settings,
    fields: dict[str, str] | None,
) -> Response:
    branding = customer_pages.branding_of(db, workspace)
    if branding is None:
        return _unknown(request)
    if fields is None or not _csrf_ok(request, fields.get(CSRF_FIELD)):
        return _stale(request, branding)
    try:
        with db.write() as session:
            intake = service.submit(
                session=session,
                workspace_id=workspace,
                request_type=fields.get("type", ""),
                email=fields.get("email", ""),
                country=fields.get("country") or None,
                message=fields.get("message") or None,
                rules=rules_of(settings),
                secret=settings.secret_key,
                guard=guard_of(request),
            )
    except rq.RateLimited as exc:
        page = _form(request, workspace, branding, 429, fields, limited=_limited_lines(exc))
        return _retry_after(page, exc)
    except Invalid as exc:
        problems = [(e.field, e.reason) for e in exc.errors] or [("form", exc.message)]
        return _form(request, workspace, branding, 400, fields, problems)
    assert intake.challenge is not None
    return _mailed(request, settings, workspace, intake.challenge)


def _mailed(
    request: Request, settings: Settings, workspace: str, challenge: service.Challenge
) -> Response:
    """Mail a challenge's code and link, then 303 to the request's page, which says whether
    the mail went."""
    delivery = send_challenge(request, settings, challenge)
    sent = "1" if delivery.error is None else "0"
    return RedirectResponse(
        f"{_request_path(workspace, challenge.request.id)}?sent={sent}",
        status_code=303,
        headers=PAGE_HEADERS,
    )


def _request_path(workspace: str, request_id: str) -> str:
    return f"{customer_pages.request_form_path(workspace)}/{quote(request_id, safe='')}"


# --- the request's page: the code ---------------------------------------------------------------


def _request_page(
    request: Request,
    workspace: str,
    found: rq.Request,
    branding: pc.Branding | None,
    status: int = 200,
    notices: list[str] | None = None,
    errors: list[str] | None = None,
) -> HTMLResponse:
    path = _request_path(workspace, found.id)
    title = "Confirm your request" if found.status == rq.UNVERIFIED else "Your privacy request"
    return render(
        request,
        "requests/code.html",
        status,
        branding,
        title=title,
        r=found,
        type_name=rq.TYPE_NAMES.get(found.type, found.type),
        jurisdiction=rq.JURISDICTION_NAMES.get(found.jurisdiction, found.jurisdiction),
        can_verify=found.status == rq.UNVERIFIED,
        action=path,
        resend_action=f"{path}/resend",
        notices=notices or [],
        errors=errors or [],
    )


def _load(db: Database, workspace: str, request_id: str) -> tuple[rq.Request, pc.Branding] | None:
    """The request and its workspace's branding (one read), None when it is not there."""
    try:
        with db.read() as session:
            found = service.get_request(
                session=session, workspace_id=workspace, request_id=request_id
            )
            return found, consent.get_branding(session=session, workspace_id=workspace)
    except NotFound:
        return None


def _reload(db: Database, workspace: str, request_id: str, before: rq.Request) -> rq.Request:
    """The request as it stands now (after a step was refused)."""
    loaded = _load(db, workspace, request_id)
    return loaded[0] if loaded is not None else before


SENT = (
    "We sent a six-digit code to your email address. Enter it below, or open the link in the mail."
)
NOT_SENT = "We could not send the mail just now. Wait a moment, then ask for a new code below."


@pages.get(FORM_PATH + "{workspace}/{request_id}")
def request_page(
    workspace: str, request_id: str, request: Request, db: DbDep, sent: str = ""
) -> Response:
    """The request's status and, while unverified, the box for the code."""
    loaded = _load(db, workspace, request_id)
    if loaded is None:
        return _unknown(request)
    found, branding = loaded
    unverified = found.status == rq.UNVERIFIED
    notices = [SENT] if sent == "1" and unverified else []
    errors = [NOT_SENT] if sent == "0" and unverified else []
    if not unverified:
        notices.append(_status_line(found))
    return _request_page(request, workspace, found, branding, 200, notices, errors)


def _status_line(found: rq.Request) -> str:
    if found.status in rq.ACTIVE:
        return f"Your request is confirmed. We will answer by {found.due_at.date().isoformat()}."
    if found.status == rq.COMPLETED:
        return "Your request was answered."
    if found.status == rq.EXPIRED:
        return "This request was not confirmed in time. Make a new request if you still wish to."
    if found.duplicate_of:
        return f"This request repeats your open request {found.duplicate_of}: we answer that one."
    return "This request is closed."


def _posted(
    request: Request,
    db: Database,
    workspace: str,
    request_id: str,
    fields: dict[str, str] | None,
) -> tuple[rq.Request, pc.Branding] | Response:
    """The request a form of its page posted to, or the page that refuses the post (404 for
    no such request, 403 for a stale form)."""
    loaded = _load(db, workspace, request_id)
    if loaded is None:
        return _unknown(request)
    if fields is None or not _csrf_ok(request, fields.get(CSRF_FIELD)):
        return _stale(request, loaded[1])
    return loaded


@pages.post(FORM_PATH + "{workspace}/{request_id}")
async def enter_code(
    workspace: str, request_id: str, request: Request, db: DbDep, settings: SettingsDep
) -> Response:
    """Check the code."""
    fields = await _fields(request)
    return await run_in_threadpool(
        _enter_code, workspace, request_id, request, db, settings, fields
    )


def _enter_code(
    workspace: str,
    request_id: str,
    request: Request,
    db: Database,
    settings: Settings,
    fields: dict[str, str] | None,
) -> Response:
    posted = _posted(request, db, workspace, request_id, fields)
    if isinstance(posted, Response):
        return posted
    found, branding = posted
    assert fields is not None
    code = re.sub(r"[\s-]", "", fields.get("code", ""))
    if not re.fullmatch(r"[0-9]{6}", code):
        errors = ["Enter the six digits of the code from the mail."]
        return _request_page(request, workspace, found, branding, 400, errors=errors)
    try:
        with db.write() as session:
            outcome = service.verify_code(
                session=session,
                workspace_id=workspace,
                request_id=request_id,
                code=code,
                rules=rules_of(settings),
                secret=settings.secret_key,
                guard=guard_of(request),
            )
    except rq.RateLimited as exc:
        page = _request_page(request, workspace, found, branding, 429, errors=_limited_lines(exc))
        return _retry_after(page, exc)
    except Conflict:
        current = _reload(db, workspace, request_id, found)
        return _request_page(request, workspace, current, branding, 409, [_status_line(current)])
    return _verified_page(request, workspace, outcome, branding)


def _verified_page(
    request: Request, workspace: str, outcome: service.Verification, branding: pc.Branding | None
) -> HTMLResponse:
    found = outcome.request
    if outcome.verified:
        return _request_page(request, workspace, found, branding, 200, [_status_line(found)])
    if outcome.outcome == rq.WRONG:
        left = outcome.attempts_left
        line = f"That code is not right. {left} attempt{'s' if left != 1 else ''} left."
        return _request_page(request, workspace, found, branding, 400, errors=[line])
    line = (
        "Too many wrong codes. Ask for a new code below."
        if outcome.outcome == rq.EXHAUSTED
        else "The code has expired. Ask for a new code below."
    )
    return _request_page(request, workspace, found, branding, 409, errors=[line])


@pages.post(FORM_PATH + "{workspace}/{request_id}/resend")
async def resend_code(
    workspace: str, request_id: str, request: Request, db: DbDep, settings: SettingsDep
) -> Response:
    """Mail a new code and link, then show the request's page again."""
    fields = await _fields(request)
    return await run_in_threadpool(_resend, workspace, request_id, request, db, settings, fields)


def _resend(
    workspace: str,
    request_id: str,
    request: Request,
    db: Database,
    settings: Settings,
    fields: dict[str, str] | None,
) -> Response:
    posted = _posted(request, db, workspace, request_id, fields)
    if isinstance(posted, Response):
        return posted
    found, branding = posted
    try:
        with db.write() as session:
            challenge = service.resend(
                session=session,
                workspace_id=workspace,
                request_id=request_id,
                rules=rules_of(settings),
                secret=settings.secret_key,
                guard=guard_of(request),
            )
    except rq.RateLimited as exc:
        page = _request_page(request, workspace, found, branding, 429, errors=_limited_lines(exc))
        return _retry_after(page, exc)
    except Conflict as exc:
        current = _reload(db, workspace, request_id, found)
        lines = [_status_line(current)] if current.status != rq.UNVERIFIED else []
        return _request_page(request, workspace, current, branding, 409, lines, [exc.message])
    return _mailed(request, settings, workspace, challenge)


# --- the mailed link ----------------------------------------------------------------------------


def _link(
    request: Request, settings: Settings, token: str
) -> tuple[rq.VerificationLink | None, HTMLResponse | None]:
    try:
        link = rq.read_link(settings.secret_key, token, utcnow())
    except rq.LinkError as exc:
        if exc.reason == "expired":
            return None, message_page(
                request,
                410,
                None,
                "This link has expired",
                "Open the request page and ask for a new code, or make a new request.",
                status_class="error",
            )
        return None, message_page(
            request,
            400,
            None,
            "This link is not valid",
            "Copy the whole link from the mail.",
            status_class="error",
        )
    return link, None


@pages.get(rq.VERIFY_PATH + "{token}")
def link_page(token: str, request: Request, db: DbDep, settings: SettingsDep) -> Response:
    """Ask the person to confirm (a button: opening the link changes nothing)."""
    link, refused = _link(request, settings, token)
    if link is None:
        assert refused is not None
        return refused
    loaded = _load(db, link.workspace_id, link.request_id)
    if loaded is None:
        branding = customer_pages.branding_of(db, link.workspace_id)
        return message_page(request, 400, branding, "This link is not valid")
    found, branding = loaded
    if found.status != rq.UNVERIFIED:
        return message_page(request, 200, branding, "Your privacy request", _status_line(found))
    what = rq.TYPE_NAMES.get(found.type, found.type)
    return render(
        request,
        "requests/link.html",
        200,
        branding,
        title="Confirm your privacy request",
        lines=[f"Press the button to confirm your request: {what}."],
        status_class="",
        button=True,
        action=f"{rq.VERIFY_PATH}{token}",
    )


@pages.post(rq.VERIFY_PATH + "{token}")
async def confirm_link(token: str, request: Request, db: DbDep, settings: SettingsDep) -> Response:
    """Verify the request the link names."""
    fields = await _fields(request)
    return await run_in_threadpool(_confirm, token, request, db, settings, fields)


def _confirm(
    token: str,
    request: Request,
    db: Database,
    settings: Settings,
    fields: dict[str, str] | None,
) -> Response:
    link, refused = _link(request, settings, token)
    if link is None:
        assert refused is not None
        return refused
    branding = customer_pages.branding_of(db, link.workspace_id)
    if fields is None or not _csrf_ok(request, fields.get(CSRF_FIELD)):
        return _stale(request, branding)
    try:
        with db.write() as session:
            outcome = service.verify_link(session=session, link=link)
    except NotFound:
        return message_page(request, 400, branding, "This link is not valid")
    except Conflict:
        loaded = _load(db, link.workspace_id, link.request_id)
        assert loaded is not None
        return message_page(request, 200, branding, "Your privacy request", _status_line(loaded[0]))
    if not outcome.verified:
        return message_page(
            request,
            410,
            branding,
            "This link was replaced",
            "A newer code was sent for this request: use the latest mail.",
            status_class="error",
        )
    return message_page(
        request,
        200,
        branding,
        "Your request is confirmed",
        _status_line(outcome.request),
        status_class="ok",
    )

"""Routes of the preference center and one-click unsubscribe (rules: ``consent.preferences``).

``admin`` (an admin token):
  ``POST /v1/consent/links`` (consent:write): a signed link for a subject, ``{url, token,
  expires_at}``, with the mail headers ``List-Unsubscribe`` and ``List-Unsubscribe-Post`` for
  kind ``unsubscribe``. ``GET``/``PUT /v1/consent/branding`` (consent:read / consent:write).

``pages`` (public; the signed token in the path is the only credential, no cookies are set):
  ``GET /p/{token}``: the preference center. ``POST /p/{token}``: save what changed in one
  transaction, then 303 back to the page (with htmx: a status fragment, no reload).
  ``GET /u/{token}``: a page with one button. ``POST /u/{token}``: RFC 8058 one-click, body
  ``List-Unsubscribe=One-Click``; 200, no redirect.

Statuses of the pages: 400 for a malformed or forged link (or one made for another page) and for
a form naming a choice the page does not offer; 404 when the subject (or the unsubscribe link's
purpose) no longer exists; 410 for an expired link. Every error is a translated page, never a 500.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from consentry.config import Settings
from consentry.consent import customer_pages, doi_service, links, service
from consentry.consent import preferences as pc
from consentry.consent.i18n import NATIVE_NAMES, Translator, negotiate
from consentry.consent.models import GRANTED, PENDING, ConsentConfig
from consentry.consent.signals import GPC_PURPOSE
from consentry.deps import ConsentRead, ConsentWrite, DbDep, SettingsDep
from consentry.errors import NotFound
from consentry.platform.db import Database, lock_workspace, utcnow

log = logging.getLogger(__name__)
admin = APIRouter(prefix="/v1/consent", tags=["consent"])
pages = APIRouter(include_in_schema=False)

PATHS = {links.PREFERENCES: pc.PREFERENCES_PATH, links.UNSUBSCRIBE: pc.UNSUBSCRIBE_PATH}
PAGE_HEADERS = customer_pages.PAGE_HEADERS
DONE = {"saved": "done.saved", "unsubscribed": "done.unsubscribed_all", "pending": "done.pending"}


# --- admin: links and branding ------------------------------------------------------------------


@admin.post("/links", status_code=201)
def issue_link(
    body: pc.LinkIn, principal: ConsentWrite, db: DbDep, settings: SettingsDep
) -> dict[str, Any]:
    """A signed, expiring link for a subject (profile_id, email or user_id): ``url`` opens the
    preference center (kind ``preferences``) or one-click unsubscribe from ``purpose`` (kind
    ``unsubscribe``, which also answers the ``List-Unsubscribe`` headers of the mail)."""
    workspace = principal.workspace_id
    with db.read() as session:
        profile_id = service.resolve_subject(
            session=session,
            workspace_id=workspace,
            profile_id=body.profile_id,
            email=body.email,
            user_id=body.user_id,
        )
        config = service.get_config(session=session, workspace_id=workspace)
        branding = service.get_branding(session=session, workspace_id=workspace)
    extra = pc.link_claims(body, config)
    key = links.link_key(settings.secret_key, workspace)
    now = utcnow()
    token = links.sign(
        key,
        workspace_id=workspace,
        profile_id=profile_id,
        kind=body.kind,
        now=now,
        ttl=timedelta(days=body.ttl_days) if body.ttl_days else None,
        **extra,
    )
    link = links.verify(key, token, kind=body.kind, now=now)
    url = pc.link_url(settings.public_url, PATHS[body.kind], token, body.language)
    answer: dict[str, Any] = {
        "kind": body.kind,
        "profile_id": profile_id,
        "url": url,
        "token": token,
        "expires_at": link.expires_at.isoformat(),
    }
    if body.kind == links.UNSUBSCRIBE:
        answer.update(extra)
        answer["headers"] = pc.unsubscribe_headers(url, body.mailto or branding.support_email)
    return answer


@admin.get("/branding")
def read_branding(principal: ConsentRead, db: DbDep) -> dict[str, Any]:
    """The look of the customer pages (the workspace's name and defaults until it is set)."""
    with db.read() as session:
        branding = service.get_branding(session=session, workspace_id=principal.workspace_id)
    return pc.branding_json(branding)


@admin.put("/branding")
def write_branding(body: pc.BrandingIn, principal: ConsentWrite, db: DbDep) -> dict[str, Any]:
    """Replace the look of the customer pages: brand name, primary colour (#rrggbb), logo
    (https), default language, privacy policy URL and support email."""
    with db.write() as session:
        branding = service.set_branding(
            session=session, workspace_id=principal.workspace_id, branding=body.branding()
        )
    return pc.branding_json(branding)


# --- rendering the customer pages ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Look:
    """The language and the branding of one customer page (no branding: a link not trusted)."""

    language: str
    branding: pc.Branding | None = None

    @property
    def t(self) -> Translator:
        return Translator(self.language)


def _look(request: Request, branding: pc.Branding | None) -> Look:
    default = branding.default_language if branding else None
    language = negotiate(
        request.query_params.get("lang"), request.headers.get("accept-language"), default
    )
    return Look(language, branding)


def render(template: str, status: int, look: Look, **context: Any) -> HTMLResponse:
    """A whole customer page in the look's language and colours."""
    return customer_pages.page(
        customer_pages.templates(),
        template,
        status,
        look.branding,
        t=look.t,
        languages=list(NATIVE_NAMES.items()),
        scripts=True,
        **context,
    )


def fragment(lines: list[str], status: int = 200, *, error: bool = False) -> HTMLResponse:
    """The status message htmx swaps into the page."""
    template = customer_pages.templates().get_template("preferences/_status.html")
    html = template.render(lines=lines, error=error)
    return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)


def _gpc(request: Request) -> bool:
    """The browser sends Global Privacy Control (docs/consent.md, "GPC")."""
    return request.headers.get("sec-gpc", "").strip() == "1"


def _is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def refuse(
    request: Request,
    status: int,
    look: Look,
    title_key: str,
    lines: list[str],
    problems: list[tuple[str, str]] | None = None,
    back: str | None = None,
) -> HTMLResponse:
    """A translated error page (for htmx, the same words as a status fragment)."""
    t = look.t
    if _is_htmx(request):
        details = [
            t("error.field", field=field, reason=t(f"error.reason.{reason}"))
            for field, reason in problems or []
        ]
        return fragment([t(title_key), *lines, *details], status, error=True)
    return render(
        "preferences/error.html",
        status,
        look,
        title=t(title_key),
        code=status,
        lines=lines,
        problems=[(field[:200], reason) for field, reason in problems or []],
        back=back,
    )


def verify(settings: Settings, token: str, kind: str) -> links.Link:
    """The link a token opens: the workspace it names picks the key, the signature decides."""
    return links.read(settings.secret_key, token, kind=kind, now=utcnow())


def link_refused(request: Request, db: Database, token: str, exc: links.LinkError) -> HTMLResponse:
    """400 for a malformed or forged link (or one made for another page), 410 when expired."""
    trusted = exc.reason in ("expired", "kind")  # the signature held: the workspace is real
    look = _look(
        request, customer_pages.branding_of(db, links.workspace_of(token)) if trusted else None
    )
    t = look.t
    if exc.reason == "expired":
        return refuse(request, 410, look, "error.title.expired", [t("error.expired")])
    message = t("error.kind") if exc.reason == "kind" else t("error.invalid")
    return refuse(request, 400, look, "error.title.invalid", [message])


def gone(request: Request, db: Database, link: links.Link) -> HTMLResponse:
    """404: the subject of a valid link (or the purpose it names) no longer exists."""
    look = _look(request, customer_pages.branding_of(db, link.workspace_id))
    return refuse(request, 404, look, "error.title.gone", [look.t("error.gone")])


# --- the subject's choices ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Opened:
    """What a verified link shows: the workspace's look and purposes, the subject's choices."""

    branding: pc.Branding
    config: ConsentConfig
    regime: str
    offered: list[pc.Choice]


def open_subject(session: Session, link: links.Link) -> Opened:
    """The choices of the link's subject (NotFound when the subject or workspace is gone)."""
    workspace = link.workspace_id
    branding = service.get_branding(session=session, workspace_id=workspace)
    config = service.get_config(session=session, workspace_id=workspace)
    subject = service.subject_consent(
        session=session, workspace_id=workspace, profile_id=link.profile_id
    )
    offered = pc.choices(config, subject.states, subject.regime, utcnow())
    return Opened(branding, config, subject.regime, offered)


@dataclass(frozen=True, slots=True)
class Item:
    """A choice as the page shows it, in the page's language."""

    choice: pc.Choice
    name: str
    description: str | None

    @property
    def described_by(self) -> str:
        ids = [f"{self.choice.dom_id}-desc"] if self.description else []
        if self.choice.pending:
            ids.append(f"{self.choice.dom_id}-pending")
        return " ".join(ids)


def _groups(t: Translator, offered: list[pc.Choice]) -> list[tuple[str, list[Item]]]:
    groups: dict[str, list[Item]] = {}
    for choice in offered:
        item = Item(
            choice, pc.purpose_name(t, choice.purpose), pc.purpose_description(t, choice.purpose)
        )
        groups.setdefault(choice.group, []).append(item)
    return list(groups.items())


def _proof(request: Request, settings: Settings, path: str, token: str) -> dict[str, str] | None:
    return pc.page_proof(
        ip=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
        public_url=settings.public_url,
        path=path,
        token=token,
    )


async def _form_fields(request: Request) -> list[tuple[str, str]] | None:
    """The text fields of a posted form, or None when it is too large or malformed."""
    return await customer_pages.form_fields(request, pc.MAX_FIELDS + 1)


# --- the preference center ----------------------------------------------------------------------


@pages.get("/p/{token}")
def preferences_page(token: str, request: Request, db: DbDep, settings: SettingsDep) -> Response:
    """The subject's current choice per channel and purpose, as a form."""
    try:
        link = verify(settings, token, links.PREFERENCES)
    except links.LinkError as exc:
        return link_refused(request, db, token, exc)
    try:
        if _gpc(request):  # honoured before the choices are shown
            with db.write() as session:
                service.record_gpc(
                    session=session,
                    workspace_id=link.workspace_id,
                    profile_id=link.profile_id,
                    actor=pc.PAGE_ACTOR,
                    proof=_proof(request, settings, pc.PREFERENCES_PATH, token),
                )
        with db.read() as session:
            opened = open_subject(session, link)
    except NotFound:
        return gone(request, db, link)
    look = _look(request, opened.branding)
    t = look.t
    done = DONE.get(request.query_params.get("done", ""))
    base = f"{pc.PREFERENCES_PATH}{token}"
    return render(
        "preferences/preferences.html",
        200,
        look,
        htmx=True,
        title=t("page.title"),
        groups=_groups(t, opened.offered),
        has_marketing=any(c.group == pc.MARKETING for c in opened.offered),
        done=t(done) if done else None,
        action=f"{base}?lang={look.language}",
        base=base,
        request_url=customer_pages.request_form_path(link.workspace_id),
    )


@pages.post("/p/{token}")
async def save_preferences(
    token: str, request: Request, db: DbDep, settings: SettingsDep
) -> Response:
    """Record what changed (one record per change, one transaction), then show the page again."""
    fields = await _form_fields(request)
    return await run_in_threadpool(_save, token, request, db, settings, fields)


def _save(
    token: str,
    request: Request,
    db: Database,
    settings: Settings,
    fields: list[tuple[str, str]] | None,
) -> Response:
    try:
        link = verify(settings, token, links.PREFERENCES)
    except links.LinkError as exc:
        return link_refused(request, db, token, exc)
    now = utcnow()
    proof = _proof(request, settings, pc.PREFERENCES_PATH, token)
    gpc = _gpc(request)
    if gpc:  # a grant made on this request saw the signal, so it acknowledges it
        proof = {**(proof or {}), "gpc": "1"}
    try:
        with db.write() as session:
            lock_workspace(session, link.workspace_id)  # state read under append's lock:
            opened = open_subject(session, link)  # a double submit records once
            look = _look(request, opened.branding)
            try:
                if fields is None:
                    raise pc.FormRejected([("form", "too_many")])
                submission = pc.parse_form(fields, opened.offered, opened.config.purpose_keys)
            except pc.FormRejected as exc:  # nothing was written
                back = f"{pc.PREFERENCES_PATH}{token}?lang={look.language}"
                lines = [look.t("error.form")]
                return refuse(request, 400, look, "error.title.form", lines, exc.problems, back)
            found = pc.changes(opened.offered, submission)
            entries = pc.entries(found, profile_id=link.profile_id, occurred_at=now, proof=proof)
            if settings.double_opt_in.preference_center:
                entries = doi_service.route_page_grants(
                    session=session,
                    workspace_id=link.workspace_id,
                    profile_id=link.profile_id,
                    regime=opened.regime,
                    entries=entries,
                    language=look.language,
                )
            if gpc and not any(e.purpose == GPC_PURPOSE and e.state == GRANTED for e in entries):
                service.record_gpc(
                    session=session,
                    workspace_id=link.workspace_id,
                    profile_id=link.profile_id,
                    actor=pc.PAGE_ACTOR,
                    occurred_at=now,
                    proof=proof,
                )
            records = service.append(
                session=session, workspace_id=link.workspace_id, entries=entries, recorded_at=now
            )
            to_confirm = doi_service.pending_of_records(session=session, records=records)
    except NotFound:
        return gone(request, db, link)
    for pending in to_confirm:  # after the commit: a slow mail server holds no lock
        _mail_confirmation(request, settings, pending)
    done = (
        "pending"
        if any(r.state == PENDING for r in records)
        else "unsubscribed"
        if submission.action == pc.UNSUBSCRIBE_ALL
        else "saved"
    )
    if _is_htmx(request):
        return fragment(_saved_lines(look, found, done))
    target = f"{pc.PREFERENCES_PATH}{token}?lang={look.language}&done={done}"
    return RedirectResponse(target, status_code=303, headers=PAGE_HEADERS)


def _mail_confirmation(request: Request, settings: Settings, pending: doi_service.Pending) -> None:
    """Send the confirmation of a request made on the page. A failure is logged (without the
    address); the pending record stays and the subject, or the shop through the API's
    ``resend_url``, can ask again."""
    delivery = doi_service.send(
        mailer=request.app.state.mailer,
        pending=pending,
        secret=settings.secret_key,
        public_url=settings.public_url,
        ttl=timedelta(hours=settings.double_opt_in.link_ttl_hours),
        from_address=settings.smtp.from_address,
        from_name=settings.smtp.from_name,
    )
    if delivery.error is not None:
        log.warning(  # not the server's words: a refusal may quote the address
            "double opt-in mail for consent record %s was not sent (%s failure)",
            pending.record.id,
            "permanent" if delivery.error.permanent else "temporary",
        )


def _saved_lines(look: Look, found: list[pc.Change], done: str) -> list[str]:
    t = look.t
    if done == "saved" and len(found) == 1:
        change = found[0]
        answer = t("choice.yes") if change.state == GRANTED else t("choice.no")
        return [t("done.item", name=pc.purpose_name(t, change.choice.purpose), choice=answer)]
    return [t(DONE[done])]


# --- one-click unsubscribe ----------------------------------------------------------------------


def _one_click_choice(opened: Opened, link: links.Link) -> pc.Choice | None:
    purpose, channel = link.extra.get("purpose"), link.extra.get("channel")
    if not isinstance(purpose, str) or not isinstance(channel, str):
        return None
    return pc.one_click_choice(opened.offered, purpose, channel)


@pages.get("/u/{token}")
def unsubscribe_page(token: str, request: Request, db: DbDep, settings: SettingsDep) -> Response:
    """A page with one button that posts what a mail client's one-click unsubscribe posts."""
    try:
        link = verify(settings, token, links.UNSUBSCRIBE)
    except links.LinkError as exc:
        return link_refused(request, db, token, exc)
    try:
        with db.read() as session:
            opened = open_subject(session, link)
    except NotFound:
        return gone(request, db, link)
    choice = _one_click_choice(opened, link)
    if choice is None:
        return gone(request, db, link)
    look = _look(request, opened.branding)
    return render(
        "preferences/unsubscribe.html",
        200,
        look,
        title=look.t("unsubscribe.title"),
        purpose=pc.purpose_name(look.t, choice.purpose),
        action=f"{pc.UNSUBSCRIBE_PATH}{token}?lang={look.language}",
        done=False,
    )


@pages.post("/u/{token}")
async def one_click_unsubscribe(
    token: str, request: Request, db: DbDep, settings: SettingsDep
) -> Response:
    """RFC 8058: withdraw the link's purpose (source ``preference_center``); 200, no redirect,
    no cookies. The body must be ``List-Unsubscribe=One-Click``."""
    fields = await _form_fields(request)
    return await run_in_threadpool(_unsubscribe, token, request, db, settings, fields)


def _unsubscribe(
    token: str,
    request: Request,
    db: Database,
    settings: Settings,
    fields: list[tuple[str, str]] | None,
) -> Response:
    try:
        link = verify(settings, token, links.UNSUBSCRIBE)
    except links.LinkError as exc:
        return link_refused(request, db, token, exc)
    now = utcnow()
    proof = _proof(request, settings, pc.UNSUBSCRIBE_PATH, token)
    try:
        with db.write() as session:
            lock_workspace(session, link.workspace_id)  # state read under append's lock:
            opened = open_subject(session, link)  # a double submit records once
            look = _look(request, opened.branding)
            if (pc.ONE_CLICK_FIELD, pc.ONE_CLICK_VALUE) not in (fields or []):
                problem = [(pc.ONE_CLICK_FIELD, "one_click")]
                return refuse(request, 400, look, "error.title.request", [], problem)
            choice = _one_click_choice(opened, link)
            change = pc.one_click_change(choice) if choice is not None else None
            if change is not None:
                entries = pc.entries(
                    [change],
                    profile_id=link.profile_id,
                    occurred_at=now,
                    actor=pc.UNSUBSCRIBE_ACTOR,
                    proof=proof,
                )
                service.append(
                    session=session,
                    workspace_id=link.workspace_id,
                    entries=entries,
                    recorded_at=now,
                )
    except NotFound:
        return gone(request, db, link)
    if choice is None:  # the workspace no longer offers the purpose
        return gone(request, db, link)
    return render(
        "preferences/unsubscribe.html",
        200,
        look,
        title=look.t("unsubscribe.done.title"),
        purpose=pc.purpose_name(look.t, choice.purpose),
        action="",
        done=True,
    )

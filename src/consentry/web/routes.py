"""Dashboard pages: sign-in, profile search and the profile 360 view (Jinja2 + htmx).

A page authenticates with the admin token kept in the HttpOnly cookie ``consentry_token`` (the
same credential :func:`consentry.deps.get_principal` reads), so pages declare the usual aliases
(``ProfilesRead``, ``ProfilesWrite``). Every POST form carries a CSRF token: a random value in the
cookie ``consentry_csrf`` and in a hidden field, compared in constant time (double submit).

A domain error raised by a page renders ``error.html`` with the status ``api.STATUS`` gives it;
``Unauthorized`` sends the browser to the sign-in page instead (``HX-Redirect`` for htmx calls).
"""

from __future__ import annotations

import hmac
import json
import math
import re
import secrets
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Form, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, StrictUndefined
from sqlalchemy.orm import Session

from consentry.api import STATUS
from consentry.commerce import service as commerce
from consentry.consent.config_routes import tallies as consent_tallies
from consentry.deps import (
    TOKEN_COOKIE,
    ConsentRead,
    DbDep,
    ProfilesRead,
    ProfilesWrite,
    ReadAudit,
    ReadRecorder,
    SettingsDep,
)
from consentry.errors import ConsentryError, FieldError, Forbidden, Invalid, Unauthorized
from consentry.ingest import service as ingest
from consentry.platform import tenancy
from consentry.platform.db import Database
from consentry.platform.tenancy import Principal, Scope
from consentry.profiles import service as profiles
from consentry.profiles.models import ANONYMOUS_ID, EMAIL, PHONE, USER_ID
from consentry.profiles.routes import profile_360, timeline
from consentry.web.charts import rate_chart

CSRF_COOKIE = "consentry_csrf"
CSRF_FIELD = "csrf_token"
COOKIE_PATH = "/app"
LOGIN_URL = "/app/login"
PAGE_SIZE = 25
EVENTS_PAGE = 25
MAX_QUERY = 320
_CSRF_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
_TITLES = {400: "Bad request", 403: "Not allowed", 404: "Not found", 409: "Conflict"}


# --- templates ------------------------------------------------------------------------------


def when(value: datetime | None) -> str:
    """A timestamp as ``2024-05-01 12:30 UTC``; an em dash when absent."""
    return value.strftime("%Y-%m-%d %H:%M UTC") if value is not None else "—"


def display(value: Any) -> str:
    """A trait or property value as text: strings as they are, anything else as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def summary(payload: Mapping[str, Any], limit: int = 4) -> str:
    """A few ``key: value`` pairs of an event's properties (or traits) for the timeline."""
    fields = payload.get("properties") or payload.get("traits") or {}
    if not isinstance(fields, Mapping):
        return ""
    pairs = [f"{k}: {display(v)}" for k, v in fields.items() if not isinstance(v, dict | list)]
    more = len(fields) - min(len(pairs), limit)
    return " · ".join(pairs[:limit]) + (f" (+{more} more)" if more > 0 else "")


@lru_cache(maxsize=1)
def templates() -> Environment:
    """The dashboard's Jinja2 environment; autoescape is on for every template."""
    env = Environment(
        loader=PackageLoader("consentry.web", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(when=when, display=display, summary=summary)
    return env


# --- search ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProfileSummary:
    """One row of a profile list."""

    id: str
    name: str | None
    email: str | None
    last_seen: datetime


@dataclass(frozen=True, slots=True)
class SearchResult:
    """What a search found and which identifier type matched."""

    query: str
    kind: str | None
    profiles: list[ProfileSummary]


def query_kinds(query: str) -> list[str]:
    """The identifier types a query may be, in the order to try them, judged by its shape:
    with ``@`` an email; from ``+``, or digits and separators only, a phone first."""
    text = query.strip()
    if "@" in text:
        return [EMAIL]
    compact = re.sub(r"[\s()./-]", "", text)  # what people type between a phone's digits
    if text.startswith("+") or (len(compact) >= 5 and compact.isdecimal()):
        return [PHONE, USER_ID, ANONYMOUS_ID]  # a numeric userId still matches after the phone
    return [USER_ID, ANONYMOUS_ID]


def person_name(traits: Mapping[str, Any]) -> str | None:
    """``first_name last_name`` from the traits, else the ``name`` trait, else None."""
    name = " ".join(display(traits[k]) for k in ("first_name", "last_name") if traits.get(k))
    return name or (display(traits["name"]) if traits.get("name") else None)


def _summary(view: profiles.ProfileView) -> ProfileSummary:
    email = view.traits.get("email") or next(
        (i["value"] for i in view.identifiers if i["type"] == EMAIL), None
    )
    return ProfileSummary(
        id=view.id,
        name=person_name(view.traits),
        email=display(email) if email else None,
        last_seen=view.last_seen,
    )


def summaries(session: Session, workspace_id: str, ids: list[str]) -> list[ProfileSummary]:
    """One list row per profile id, in order: name, email, last seen (for a page of rows)."""
    return [
        _summary(profiles.get_profile(session=session, workspace_id=workspace_id, profile_id=pid))
        for pid in ids
    ]


def _find(session: Session, workspace_id: str, kind: str, query: str, region: str) -> list[str]:
    try:
        return profiles.search_identifiers(
            session=session,
            workspace_id=workspace_id,
            email=query if kind == EMAIL else None,
            phone=query if kind == PHONE else None,
            user_id=query if kind == USER_ID else None,
            anonymous_id=query if kind == ANONYMOUS_ID else None,
            default_region=region,
        )
    except Invalid:  # not a usable value of this type: try the next one
        return []


def search(db: Database, workspace_id: str, query: str, region: str) -> SearchResult:
    """Profiles holding the identifier ``query``, trying each type its shape allows."""
    query = query.strip()[:MAX_QUERY]
    with db.read() as session:
        for kind in query_kinds(query) if query else []:
            ids = _find(session, workspace_id, kind, query, region)
            if ids:
                return SearchResult(query, kind, summaries(session, workspace_id, ids))
    return SearchResult(query, None, [])


def recent_profiles(db: Database, workspace_id: str, page: int) -> dict[str, Any]:
    """A page of the most recently seen profiles and the numbers of the pager."""
    with db.read() as session:
        rows = profiles.list_profiles(
            session=session,
            workspace_id=workspace_id,
            limit=PAGE_SIZE,
            offset=(page - 1) * PAGE_SIZE,
        )
        total = profiles.count_profiles(session=session, workspace_id=workspace_id)
        found = summaries(session, workspace_id, [pid for pid, _ in rows])
    return {"profiles": found, "total": total, "page": page, "pages": math.ceil(total / PAGE_SIZE)}


def workspace_counts(db: Database, workspace_id: str) -> dict[str, int]:
    """The KPI counts of the header: events, profiles, orders (and products, carts)."""
    with db.read() as session:
        counts = commerce.counts(session=session, workspace_id=workspace_id)
        counts["events"] = ingest.count_events(session=session, workspace_id=workspace_id)
        counts["profiles"] = profiles.count_profiles(session=session, workspace_id=workspace_id)
    return counts


# --- responses, cookies and CSRF ------------------------------------------------------------


def _set_cookie(request: Request, response: Response, name: str, value: str) -> None:
    response.set_cookie(
        name,
        value,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def _csrf_token(request: Request) -> tuple[str, bool]:
    """The CSRF token of this browser, and whether it is new (the cookie must then be set)."""
    current = request.cookies.get(CSRF_COOKIE, "")
    if _CSRF_SHAPE.fullmatch(current):
        return current, False
    return secrets.token_urlsafe(32), True


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
    """A full page; it carries the CSRF token its forms post back."""
    token, fresh = _csrf_token(request)
    html = templates().get_template(template).render(csrf_token=token, **context)
    response = HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)
    if fresh:
        _set_cookie(request, response, CSRF_COOKIE, token)
    return response


def fragment(template: str, **context: Any) -> Response:
    """A piece of a page that htmx swaps in."""
    html = templates().get_template(template).render(**context)
    return HTMLResponse(html, headers=SECURITY_HEADERS)


def redirect(url: str) -> RedirectResponse:
    """See other: the browser follows with a GET."""
    return RedirectResponse(url, status_code=303)


async def check_csrf(request: Request) -> None:
    """Refuse a form whose CSRF field does not equal the CSRF cookie."""
    form = await request.form()
    sent = form.get(CSRF_FIELD)
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if (
        not isinstance(sent, str)
        or not cookie
        or not hmac.compare_digest(sent.encode(), cookie.encode())
    ):
        raise Forbidden("this form has expired or came from another site; reload and try again")


CsrfChecked = Depends(check_csrf)


def _to_login(request: Request) -> Response:
    response: Response
    if request.headers.get("hx-request") == "true":
        response = Response(status_code=401, headers={"HX-Redirect": LOGIN_URL})
    else:
        response = redirect(LOGIN_URL)
    if request.cookies.get(TOKEN_COOKIE):
        response.delete_cookie(TOKEN_COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict")
    return response


def error_page(request: Request, status_code: int, message: str) -> Response:
    """The friendly page of a 4xx answer."""
    title = _TITLES.get(status_code, "Something went wrong")
    return render(
        request, "error.html", status_code, code=status_code, title=title, message=message
    )


def _status_of(exc: ConsentryError) -> int:
    return next((code for kind, code in STATUS if isinstance(exc, kind)), 500)


class PageRoute(APIRoute):
    """A page: errors render ``error.html`` (never JSON), and no sign-in leads to the form."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except Unauthorized:
                return _to_login(request)
            except ConsentryError as exc:
                return error_page(request, _status_of(exc), exc.message)
            except RequestValidationError:
                return error_page(request, 400, "The address has a malformed parameter.")

        return guarded


router = APIRouter(prefix="/app", route_class=PageRoute, include_in_schema=False)
PageNumber = Annotated[int, Query(ge=1, le=100_000)]


# --- pages ----------------------------------------------------------------------------------


@router.get("/login")
def login_form(request: Request) -> Response:
    """The sign-in form."""
    return render(request, "login.html", error=None)


@router.post("/login", dependencies=[CsrfChecked])
def login(request: Request, db: DbDep, token: Annotated[str, Form()] = "") -> Response:
    """Check the admin token, keep it in an HttpOnly cookie and open the dashboard."""
    secret = token.strip()
    try:
        with db.read() as session:
            tenancy.authenticate(session=session, secret=secret, kind="token")
    except Unauthorized:
        message = "That admin token is not valid, or it was revoked." if secret else None
        return render(request, "login.html", 401, error=message or "Enter an admin token.")
    response = redirect("/app")
    _set_cookie(request, response, TOKEN_COOKIE, secret)
    _set_cookie(request, response, CSRF_COOKIE, secrets.token_urlsafe(32))  # a new one per sign-in
    return response


@router.post("/logout", dependencies=[CsrfChecked])
def logout() -> Response:
    """Forget the token cookie."""
    response = redirect(LOGIN_URL)
    response.delete_cookie(TOKEN_COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict")
    return response


def audited_search(
    reads: ReadRecorder, principal: Principal, db: Database, query: str, region: str
) -> SearchResult:
    """:func:`search`, the profiles it shows recorded in the audit trail (never the query)."""
    with reads.reading(principal, "profile.search", lookup="query", via="dashboard") as note:
        found = search(db, principal.workspace_id, query, region)
        note.found(p.id for p in found.profiles)
    return found


@router.get("")
def search_page(
    request: Request,
    principal: ProfilesRead,
    db: DbDep,
    settings: SettingsDep,
    reads: ReadAudit,
    q: str = "",
    page: PageNumber = 1,
) -> Response:
    """The search box, the most recently seen profiles and the workspace's counts."""
    ws = principal.workspace_id
    region = settings.default_phone_region
    with reads.reading(principal, "profile.list", lookup="list", via="dashboard") as note:
        recent = recent_profiles(db, ws, page)
        note.found(p.id for p in recent["profiles"])
    return render(
        request,
        "search.html",
        principal=principal,
        counts=workspace_counts(db, ws),
        result=audited_search(reads, principal, db, q, region) if q.strip() else None,
        recent=recent,
    )


@router.get("/profiles/search")
def search_results(
    principal: ProfilesRead, db: DbDep, settings: SettingsDep, reads: ReadAudit, q: str = ""
) -> Response:
    """The results table of a search (an htmx fragment)."""
    found = audited_search(reads, principal, db, q, settings.default_phone_region)
    return fragment("_results.html", result=found if found.query else None)


@router.get("/profiles/{profile_id}")
def profile_page(
    request: Request,
    profile_id: str,
    principal: ProfilesRead,
    db: DbDep,
    reads: ReadAudit,
    undone: str = "",
) -> Response:
    """The profile 360 view; a merged-away id shows the profile it now belongs to."""
    with reads.reading(principal, "profile.read", lookup="profile_id", via="dashboard") as note:
        view = profile_360(db, principal.workspace_id, profile_id, EVENTS_PAGE)
        note.found([view["id"]])
    return render(
        request,
        "profile.html",
        principal=principal,
        profile=view,
        name=person_name(view["traits"]),
        can_write=principal.allows(Scope.PROFILES_WRITE),
        undone=next((m for m in view["merges"] if m["id"] == undone and m["undone_at"]), None),
    )


@router.get("/profiles/{profile_id}/events")
def profile_events(
    profile_id: str,
    principal: ProfilesRead,
    db: DbDep,
    reads: ReadAudit,
    before: str | None = None,
) -> Response:
    """The next page of a timeline: event rows and a new "Load more" row (an htmx fragment)."""
    with reads.reading(principal, "profile.events", lookup="profile_id", via="dashboard") as note:
        with db.read() as session:
            view = profiles.get_profile(
                session=session, workspace_id=principal.workspace_id, profile_id=profile_id
            )
        page = timeline(db, principal.workspace_id, view.member_ids, EVENTS_PAGE, before)
        note.found([view.id])
    return fragment("_events.html", profile_id=profile_id, timeline=page)


@router.post("/merges/{merge_id}/undo", dependencies=[CsrfChecked])
def undo_merge(
    merge_id: str, principal: ProfilesWrite, db: DbDep, profile_id: Annotated[str, Form()] = ""
) -> Response:
    """Unmerge, then show the profile again with a note naming both profiles."""
    with db.write() as session:
        record = profiles.unmerge(
            session=session,
            workspace_id=principal.workspace_id,
            merge_id=merge_id,
            actor=principal.actor,
        )
    back = quote(profile_id or record.winner_id, safe="")
    return redirect(f"/app/profiles/{back}?undone={quote(record.id, safe='')}")


RATE_INTERVALS = ("day", "week", "month")
RATE_DIMENSIONS = ("purpose", "channel", "source", "notice_version")
RATE_WINDOWS = {"day": 30, "week": 182, "month": 730}  # days shown per interval


@router.get("/consent")
def consent_page(
    request: Request,
    principal: ConsentRead,
    db: DbDep,
    interval: str = "week",
    by: str = "purpose",
) -> Response:
    """Consent rates over time: opt-in rate per purpose, channel, source or notice version as a
    chart and a table, and the share of opt-outs carried by GPC."""
    if interval not in RATE_INTERVALS:
        raise Invalid("unknown interval", [FieldError("interval", ", ".join(RATE_INTERVALS))])
    if by not in RATE_DIMENSIONS:
        raise Invalid("unknown dimension", [FieldError("by", ", ".join(RATE_DIMENSIONS))])
    now = datetime.now(UTC)
    since = now - timedelta(days=RATE_WINDOWS[interval])
    _, _, series, overall = consent_tallies(db, principal.workspace_id, interval, by, since, now)
    periods = sorted({t.period for t in series})
    values: dict[str, dict[str, float | None]] = {}
    for t in series:
        values.setdefault(t.key, {})[t.period] = t.opt_in_rate
    return render(
        request,
        "consent.html",
        principal=principal,
        interval=interval,
        by=by,
        intervals=RATE_INTERVALS,
        dimensions=RATE_DIMENSIONS,
        overall=overall,
        series=series,
        chart=rate_chart(periods, values),
    )


def mount(app: FastAPI) -> None:
    """Mount the dashboard pages and static files on ``app``."""
    from consentry.web.analytics_page import router as analytics_pages  # it imports this module
    from consentry.web.deliveries_page import router as deliveries_pages  # it imports this module
    from consentry.web.identity_page import router as identity_pages  # it imports this module
    from consentry.web.journeys_page import router as journeys_pages  # it imports this module
    from consentry.web.quality_page import router as quality_pages  # it imports this module
    from consentry.web.requests_page import router as requests_pages  # it imports this module
    from consentry.web.segments_page import router as segments_pages  # it imports this module

    app.include_router(router)
    app.include_router(requests_pages)  # /app/privacy/requests: the queue of privacy requests
    app.include_router(identity_pages)  # /app/identity/review: possible duplicates to decide
    app.include_router(analytics_pages)  # /app/analytics: KPIs, cohorts, RFM, CLV, churn
    app.include_router(quality_pages)  # /app/quality: the data-quality audit
    app.include_router(segments_pages)  # /app/segments: segments, builder, history
    app.include_router(journeys_pages)  # /app/journeys: journeys, presets, attribution
    app.include_router(deliveries_pages)  # /app/deliveries: destinations, dead letters
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")

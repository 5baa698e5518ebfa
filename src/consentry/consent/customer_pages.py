"""The frame every customer page shares (public pages, no login, in the workspace's branding):
the preference center and one-click unsubscribe (``preference_routes``), the double opt-in
confirmation (``doi_routes``) and the privacy-request form of ``privacy.request_pages``.

It holds the Jinja2 environments (consent's templates frame every page: a page of another
package extends ``preferences/base.html``), the stylesheet in the brand's colours with its CSP
hash, the Content-Security-Policy and headers, a workspace's branding, and the fields of a posted
form. A capability that shows a customer page depends on this module, never on another
capability's routes.
"""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import ChoiceLoader, Environment, PackageLoader, StrictUndefined
from markupsafe import Markup
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException

from consentry.consent import preferences as pc
from consentry.consent import service
from consentry.consent.i18n import Translator
from consentry.errors import NotFound
from consentry.platform.db import Database

PAGE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # a link's token is in the URL
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex, nofollow",
}
REQUEST_FORM_PATH = "/privacy-request/"  # privacy.request_pages; the preference center links it


def request_form_path(workspace_id: str) -> str:
    """The privacy-request form of a workspace."""
    return f"{REQUEST_FORM_PATH}{quote(workspace_id, safe='')}"


@lru_cache(maxsize=8)
def environment(*packages: str) -> Environment:
    """The Jinja2 environment over the templates of ``packages``, then consent's (the frame);
    autoescape on."""
    loaders = [PackageLoader(p, "templates") for p in (*packages, "consentry.consent")]
    return Environment(
        loader=ChoiceLoader(loaders),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def templates() -> Environment:
    """The environment of consent's own customer pages."""
    return environment()


@lru_cache(maxsize=64)
def stylesheet(theme: pc.Theme, extra: str = "") -> tuple[Markup, str]:
    """The page's stylesheet in the brand's colours (plus a page's ``extra`` rules), and its
    CSP hash (no inline style else)."""
    css = templates().get_template("preferences/page.css").render(theme=theme)
    if extra:
        css = f"{css}\n{extra}"
    digest = base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
    return Markup(css), f"'sha256-{digest}'"  # our templates and validated colours


def csp(style_hash: str, logo_url: str | None, *, scripts: bool) -> str:
    """The Content-Security-Policy of a page: its stylesheet, its logo's origin, and with
    ``scripts`` the site's own scripts (htmx) and calls."""
    images = "'self' data:"
    if logo_url:
        parts = urlsplit(logo_url)
        images += f" {parts.scheme}://{parts.netloc.rpartition('@')[2]}"
    script = "script-src 'self'; " if scripts else ""
    connect = "connect-src 'self'; " if scripts else ""
    return (
        f"default-src 'none'; {script}style-src {style_hash}; img-src {images}; {connect}"
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )


def page(
    env: Environment,
    template: str,
    status: int,
    branding: pc.Branding | None,
    *,
    t: Translator,
    languages: list[tuple[str, str]],
    scripts: bool = False,
    htmx: bool = False,
    extra_css: str = "",
    **context: Any,
) -> HTMLResponse:
    """A whole customer page in the branding's colours and ``t``'s language; ``languages``
    (code, native name) are offered in the header (none: no choice); ``scripts`` lets the page
    run the site's scripts, ``htmx`` loads htmx."""
    css, style_hash = stylesheet(
        pc.theme_for(branding.primary_color if branding else ""), extra_css
    )
    html = env.get_template(template).render(
        t=t,
        lang=t.language,
        branding=branding,
        brand=branding.brand_name if branding else "",
        css=css,
        languages=languages,
        htmx=htmx,
        **context,
    )
    logo = branding.logo_url if branding else None
    headers = {**PAGE_HEADERS, "Content-Security-Policy": csp(style_hash, logo, scripts=scripts)}
    return HTMLResponse(html, status_code=status, headers=headers)


def branding_of(db: Database, workspace_id: str) -> pc.Branding | None:
    """The workspace's branding, None when there is no such workspace."""
    try:
        with db.read() as session:
            return service.get_branding(session=session, workspace_id=workspace_id)
    except NotFound:
        return None


async def form_fields(request: Request, max_fields: int) -> list[tuple[str, str]] | None:
    """The text fields of a posted form, or None when it is too large or malformed."""
    try:
        form = await request.form(max_files=0, max_fields=max_fields)
    except (HTTPException, MultiPartException):
        return None
    return [(name, value) for name, value in form.multi_items() if isinstance(value, str)]

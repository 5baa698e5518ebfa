"""The dashboard pages over plain HTTP (TestClient), on SQLite and PostgreSQL.

Sign-in and its cookies, CSRF on every form, search, the profile 360 view, the timeline fragment,
unmerge, and friendly error pages for bad input.
"""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from markupsafe import escape

from consentry.api import create_app
from consentry.config import Settings
from consentry.platform import tenancy
from consentry.platform.db import Database
from consentry.web.routes import EVENTS_PAGE, PAGE_SIZE, query_kinds
from tests.support.segment import basic, bearer, identify, track

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_LOAD_MORE = re.compile(r'hx-get="([^"]+/events\?before=[^"]+)"')


def csrf(client: TestClient, path: str = "/app/login") -> str:
    """The CSRF token a page puts in its forms (its cookie is then in the client's jar)."""
    found = _CSRF.search(client.get(path).text)
    assert found is not None
    return found.group(1)


def sign_in(client: TestClient, token: str) -> None:
    response = client.post(
        "/app/login", data={"token": token, "csrf_token": csrf(client)}, follow_redirects=False
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/app"


def seed(client: TestClient, write_key: str, *messages: dict[str, Any]) -> None:
    """Send a batch; the suite's client returns once the events are applied."""
    response = client.post("/v1/batch", json={"batch": list(messages)}, headers=basic(write_key))
    assert response.status_code == 200, response.text


def profile_id(client: TestClient, token: str, **identifier: str) -> str:
    found = client.get("/v1/profiles", params=identifier, headers=bearer(token)).json()
    return str(found["profiles"][0]["id"])


def issue_token(db: Database, workspace: str, role: tenancy.Role) -> str:
    with db.write() as session:
        return tenancy.issue_key(
            session=session, workspace_id=workspace, kind="token", name=role.value, role=role
        ).secret


def merged_pair(client: TestClient, write_key: str, token: str) -> dict[str, Any]:
    """Two profiles joined by an identify naming both; return the merge record."""
    seed(
        client,
        write_key,
        identify(anonymousId="anon-1", traits={"email": "kim@example.com"}),
        identify(userId="user-1", traits={"first_name": "Kim"}),
        identify(userId="user-1", anonymousId="anon-1"),
    )
    pid = profile_id(client, token, user_id="user-1")
    merges = client.get(f"/v1/profiles/{pid}", headers=bearer(token)).json()["merges"]
    assert len(merges) == 1
    return dict(merges[0])


# --- shape of a search query -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "kinds"),
    [
        ("Ada@Example.com", ["email"]),
        ("+44 20 7946 0958", ["phone", "user_id", "anonymous_id"]),
        ("(555) 010-0000", ["phone", "user_id", "anonymous_id"]),
        ("user-42", ["user_id", "anonymous_id"]),
        ("123e4567-e89b-12d3-a456-426614174000", ["user_id", "anonymous_id"]),
        ("", ["user_id", "anonymous_id"]),
    ],
)
def test_query_kinds_are_judged_by_shape(query: str, kinds: list[str]) -> None:
    assert query_kinds(query) == kinds


# --- sign-in, cookies and CSRF ---------------------------------------------------------------


def test_pages_without_a_token_go_to_the_sign_in_form(client: TestClient) -> None:
    for path in ("/app", "/app/profiles/any", "/app/profiles/any/events"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"] == "/app/login"
    htmx = client.get("/app/profiles/search?q=x", headers={"HX-Request": "true"})
    assert htmx.status_code == 401 and htmx.headers["HX-Redirect"] == "/app/login"


def test_login_form_sets_a_strict_httponly_csrf_cookie(client: TestClient) -> None:
    response = client.get("/app/login")
    assert response.status_code == 200
    assert "text/html" in response.headers["content-type"]
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("consentry_csrf=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" not in cookie
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    token = _CSRF.search(response.text)
    assert token is not None and token.group(1) == client.cookies["consentry_csrf"]


def test_a_wrong_token_shows_the_form_again_with_401(client: TestClient, write_key: str) -> None:
    for secret, message in (("cst_wrong", "not valid"), (write_key, "not valid"), ("", "Enter")):
        response = client.post("/app/login", data={"token": secret, "csrf_token": csrf(client)})
        assert response.status_code == 401
        assert message in response.text and 'name="token"' in response.text
        assert "consentry_token" not in response.headers.get("set-cookie", "")


def test_the_admin_token_signs_in_with_a_strict_httponly_cookie(
    client: TestClient, admin_token: str, workspace: str
) -> None:
    response = client.post(
        "/app/login",
        data={"token": admin_token, "csrf_token": csrf(client)},
        follow_redirects=False,
    )
    assert response.status_code == 303 and response.headers["location"] == "/app"
    token_cookie = next(
        c for c in response.headers.get_list("set-cookie") if c.startswith("consentry_token=")
    )
    assert "HttpOnly" in token_cookie and "SameSite=strict" in token_cookie
    assert "Secure" not in token_cookie
    page = client.get("/app")
    assert page.status_code == 200
    assert workspace in page.text and ">admin<" in page.text


def test_the_cookie_is_secure_over_https(
    settings: Settings, db: Database, admin_token: str
) -> None:
    with TestClient(create_app(settings, db), base_url="https://testserver") as client:
        response = client.post(
            "/app/login",
            data={"token": admin_token, "csrf_token": csrf(client)},
            follow_redirects=False,
        )
    assert response.status_code == 303
    cookies = response.headers.get_list("set-cookie")
    assert all("; Secure" in c for c in cookies) and len(cookies) == 2


def test_forms_without_the_matching_csrf_token_are_403(
    client: TestClient, admin_token: str
) -> None:
    token = csrf(client)
    for data in ({"token": admin_token}, {"token": admin_token, "csrf_token": token[::-1]}):
        response = client.post("/app/login", data=data, follow_redirects=False)
        assert response.status_code == 403 and "Not allowed" in response.text
    client.cookies.clear()
    response = client.post("/app/login", data={"token": admin_token, "csrf_token": token})
    assert response.status_code == 403  # a field without its cookie


def test_logout_clears_the_token_cookie(client: TestClient, admin_token: str) -> None:
    sign_in(client, admin_token)
    response = client.post(
        "/app/logout", data={"csrf_token": csrf(client, "/app")}, follow_redirects=False
    )
    assert response.status_code == 303 and response.headers["location"] == "/app/login"
    assert 'consentry_token=""' in response.headers["set-cookie"]
    assert client.get("/app", follow_redirects=False).status_code == 303


def test_a_revoked_token_is_signed_out(
    client: TestClient, db: Database, workspace: str, admin_token: str
) -> None:
    sign_in(client, admin_token)
    with db.write() as session:
        key = tenancy.authenticate(session=session, secret=admin_token, kind="token")
        tenancy.revoke_key(session=session, workspace_id=workspace, key_id=key.key_id)
    response = client.get("/app", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/app/login"
    assert 'consentry_token=""' in response.headers["set-cookie"]


def test_a_role_without_profiles_read_gets_a_403_page(
    client: TestClient, db: Database, workspace: str
) -> None:
    sign_in(client, issue_token(db, workspace, tenancy.Role.ANALYST))
    response = client.get("/app")
    assert response.status_code == 403 and "profiles:read" in response.text


# --- search and the list of profiles ---------------------------------------------------------


def test_search_page_shows_counts_and_recent_profiles(
    client: TestClient, write_key: str, admin_token: str
) -> None:
    seed(
        client,
        write_key,
        identify(userId="u1", traits={"first_name": "Ada", "last_name": "Lovelace"}),
        identify(userId="u2", traits={"email": "grace@example.com"}),
        track("Order Completed", userId="u1", properties={"order_id": "o1", "total": 5}),
    )
    sign_in(client, admin_token)
    page = client.get("/app").text
    assert re.search(r'id="kpi-events"><span class="value">3<', page)
    assert re.search(r'id="kpi-profiles"><span class="value">2<', page)
    assert re.search(r'id="kpi-orders"><span class="value">1<', page)
    assert "Ada Lovelace" in page and "grace@example.com" in page
    assert 'hx-trigger="keyup changed delay:300ms, submit"' in page


@pytest.mark.parametrize(
    ("query", "kind"),
    [
        ("  ADA@Example.COM ", "email"),
        ("+1 415 555 2671", "phone"),
        ("(415) 555-2671", "phone"),
        ("user-ada", "user id"),
        ("anon-ada", "anonymous id"),
    ],
)
def test_search_finds_a_profile_by_any_identifier(
    client: TestClient, write_key: str, admin_token: str, query: str, kind: str
) -> None:
    traits = {"email": "ada@example.com", "phone": "+14155552671", "first_name": "Ada"}
    seed(
        client,
        write_key,
        identify(userId="user-ada", anonymousId="anon-ada", traits=traits),
    )
    sign_in(client, admin_token)
    fragment = client.get("/app/profiles/search", params={"q": query})
    assert fragment.status_code == 200
    assert "<html" not in fragment.text  # a fragment, not a page
    assert f"1 profile with {kind}" in fragment.text and ">Ada<" in fragment.text
    page = client.get("/app", params={"q": query}).text  # the same search without htmx
    assert 'id="search-results"' in page and ">Ada<" in page


def test_search_without_a_match_says_so(client: TestClient, admin_token: str) -> None:
    sign_in(client, admin_token)
    for query in ("nobody@example.com", "not an email@", "12345", "null"):
        fragment = client.get("/app/profiles/search", params={"q": query})
        assert fragment.status_code == 200 and 'id="no-results"' in fragment.text
    assert client.get("/app/profiles/search", params={"q": "  "}).text.strip() == ""


def test_recent_profiles_are_paginated(
    client: TestClient, write_key: str, admin_token: str
) -> None:
    seed(client, write_key, *(identify(userId=f"u{i}") for i in range(PAGE_SIZE + 1)))
    sign_in(client, admin_token)
    first, second = client.get("/app").text, client.get("/app", params={"page": 2}).text
    assert first.count('href="/app/profiles/') == PAGE_SIZE and "Page 1 of 2" in first
    assert second.count('href="/app/profiles/') == 1 and 'rel="prev"' in second
    for bad in ("0", "abc"):
        response = client.get("/app", params={"page": bad})
        assert response.status_code == 400 and "Bad request" in response.text


# --- the profile 360 view --------------------------------------------------------------------


def test_profile_page_shows_traits_identifiers_orders_and_carts(
    client: TestClient, write_key: str, admin_token: str
) -> None:
    order = {
        "order_id": "o-77",
        "total": "129.90",
        "currency": "eur",
        "products": [{"product_id": "p1", "name": "Mug", "price": 14.95, "quantity": 2}],
    }
    seed(
        client,
        write_key,
        identify(userId="u1", traits={"email": "ada@example.com", "first_name": "Ada"}),
        identify(userId="u1", traits={"vip": True, "visits": 3, "address": {"city": "Bonn"}}),
        track("Order Completed", userId="u1", properties=order),
        track("Product Added", userId="u1", properties={"cart_id": "c-5", "product_id": "p2"}),
    )
    pid = profile_id(client, admin_token, user_id="u1")
    sign_in(client, admin_token)
    page = client.get(f"/app/profiles/{pid}")
    assert page.status_code == 200
    text = page.text
    assert "<h1>Ada</h1>" in text and pid in text
    for key, shown in (("vip", "true"), ("visits", "3"), ("address", '{"city": "Bonn"}')):
        assert f'<th scope="row">{key}</th><td>{escape(shown)}</td>' in text
    assert "ada@example.com" in text and "user_id" in text
    assert "o-77" in text and '<span class="money">129.90</span> EUR' in text
    assert "2 × Mug" in text and "c-5" in text
    assert "Undo merge" not in text and 'id="merged-note"' not in text


def test_everything_shown_is_escaped(client: TestClient, write_key: str, admin_token: str) -> None:
    evil = "<script>alert(1)</script>"
    seed(
        client,
        write_key,
        identify(userId="u-evil", traits={"first_name": evil, evil: evil}),
    )
    pid = profile_id(client, admin_token, user_id="u-evil")
    sign_in(client, admin_token)
    for text in (
        client.get(f"/app/profiles/{pid}").text,
        client.get("/app").text,
        client.get("/app/profiles/search", params={"q": "u-evil"}).text,
        client.get("/app/profiles/search", params={"q": evil}).text,
    ):
        assert evil not in text
    assert html.escape(evil, quote=False) in client.get(f"/app/profiles/{pid}").text


def test_unknown_profile_is_a_friendly_404_page(client: TestClient, admin_token: str) -> None:
    sign_in(client, admin_token)
    for path in ("/app/profiles/no-such-id", "/app/profiles/no-such-id/events"):
        response = client.get(path)
        assert response.status_code == 404
        assert "text/html" in response.headers["content-type"] and "Not found" in response.text


def test_timeline_pages_on_with_a_cursor_and_refuses_a_bad_one(
    client: TestClient, write_key: str, admin_token: str
) -> None:
    count = EVENTS_PAGE + 5
    seed(
        client,
        write_key,
        *(track("Viewed", userId="u1", properties={"n": n}) for n in range(count)),
    )
    pid = profile_id(client, admin_token, user_id="u1")
    sign_in(client, admin_token)
    page = client.get(f"/app/profiles/{pid}").text
    assert page.count('<tr class="event">') == EVENTS_PAGE
    more = _LOAD_MORE.search(page)
    assert more is not None and 'hx-swap="outerHTML"' in page
    rest = client.get(html.unescape(more.group(1)))
    assert rest.status_code == 200 and "<html" not in rest.text
    assert rest.text.count('<tr class="event">') == 5 and 'id="load-more"' not in rest.text
    bad = client.get(f"/app/profiles/{pid}/events", params={"before": "not-a-cursor"})
    assert bad.status_code == 400 and "Bad request" in bad.text


# --- merges ----------------------------------------------------------------------------------


def test_a_merged_away_id_shows_the_unified_profile(
    client: TestClient, write_key: str, admin_token: str
) -> None:
    merge = merged_pair(client, write_key, admin_token)
    sign_in(client, admin_token)
    page = client.get(f"/app/profiles/{merge['loser_id']}").text
    assert 'id="merged-note"' in page and "merged into" in page
    assert merge["winner_id"] in page and "Undo merge" in page
    assert "kim@example.com" in page and "user-1" in page


def test_undo_merge_separates_the_profiles(
    client: TestClient, write_key: str, admin_token: str
) -> None:
    merge = merged_pair(client, write_key, admin_token)
    winner, loser = merge["winner_id"], merge["loser_id"]
    sign_in(client, admin_token)
    token = csrf(client, f"/app/profiles/{loser}")
    url = f"/app/merges/{merge['id']}/undo"
    response = client.post(
        url, data={"csrf_token": token, "profile_id": loser}, follow_redirects=False
    )
    assert response.status_code == 303
    assert response.headers["location"] == f"/app/profiles/{loser}?undone={merge['id']}"
    page = client.get(response.headers["location"]).text
    assert 'id="undone-note"' in page and winner in page and 'id="merged-note"' not in page
    assert client.get(f"/v1/profiles/{loser}", headers=bearer(admin_token)).json()["id"] == loser
    assert client.get(f"/v1/profiles/{winner}", headers=bearer(admin_token)).json()["id"] == winner
    again = client.post(url, data={"csrf_token": token, "profile_id": loser})
    assert again.status_code == 409 and "already undone" in again.text


def test_undo_merge_needs_csrf_and_profiles_write(
    client: TestClient, db: Database, workspace: str, write_key: str, admin_token: str
) -> None:
    merge = merged_pair(client, write_key, admin_token)
    url = f"/app/merges/{merge['id']}/undo"
    sign_in(client, admin_token)
    assert client.post(url, data={"csrf_token": "forged"}).status_code == 403
    client.cookies.clear()
    sign_in(client, issue_token(db, workspace, tenancy.Role.MARKETER))
    page = client.get(f"/app/profiles/{merge['winner_id']}").text
    assert "Undo merge" not in page  # a marketer may read profiles, not unmerge them
    response = client.post(url, data={"csrf_token": csrf(client, "/app")})
    assert response.status_code == 403 and "profiles:write" in response.text
    unknown = client.post("/app/merges/nope/undo", data={"csrf_token": csrf(client, "/app")})
    assert unknown.status_code == 403  # the scope is checked before the merge is looked up


def test_static_files_are_served(client: TestClient) -> None:
    htmx = client.get("/static/htmx.min.js")
    assert htmx.status_code == 200 and "htmx" in htmx.text
    css = client.get("/static/consentry.css")
    assert css.status_code == 200 and "text/css" in css.headers["content-type"]


def test_consent_page_charts_the_opt_in_rate(
    client: TestClient, write_key: str, admin_token: str
) -> None:
    seed(client, write_key, identify(userId="c-1"), identify(userId="c-2"))
    auth = bearer(admin_token)
    today = datetime.now(UTC)
    for days, user, state, source in (
        (20, "c-1", "granted", "web_form"),
        (13, "c-2", "denied", "gpc"),
        (6, "c-1", "granted", "checkout"),
    ):
        body = {
            "user_id": user,
            "purpose": "marketing.communications.email",
            "channel": "email",
            "state": state,
            "source": source,
            "occurred_at": (today - timedelta(days=days)).isoformat(),
        }
        assert client.post("/v1/consent", json=body, headers=auth).status_code == 201
    sign_in(client, admin_token)
    page = client.get("/app/consent", params={"interval": "week", "by": "source"})
    assert page.status_code == 200, page.text
    html = page.text
    assert 'id="rate-chart"' in html and 'data-key="web_form"' in html
    assert html.count("<circle") == 3  # one dot per (week, source) with a rate
    assert ">66.7%<" in html  # 2 of 3 said yes over the window
    assert ">100.0%<" in html  # every opt-out came from GPC
    assert client.get("/app/consent", params={"by": "colour"}).status_code == 400

"""The data-quality API and dashboard page through the real app, on SQLite and PostgreSQL: an
audit of planted problems, reading it back, scopes, bad input as 4xx, and a page that prints
the numbers the API answers with."""

from __future__ import annotations

import html
import re

from fastapi.testclient import TestClient

from consentry.platform import tenancy
from consentry.platform.db import Database
from tests.conftest import new_workspace
from tests.http.test_web_pages import csrf, issue_token, sign_in
from tests.quality.planted import FIELDS, check_report, messages
from tests.support.segment import basic, bearer

BASE = "/v1/quality/audits"


def _plant(client: TestClient, write_key: str) -> None:
    response = client.post("/v1/batch", json={"batch": messages()}, headers=basic(write_key))
    assert response.status_code == 200, response.text


def test_run_then_read_the_audit(client: TestClient, write_key: str, admin_token: str) -> None:
    auth = bearer(admin_token)
    missing = client.get(f"{BASE}/latest", headers=auth)
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    assert client.get(BASE, headers=auth).json() == {"audits": []}
    _plant(client, write_key)

    run = client.post(BASE, headers=auth)
    assert run.status_code == 200, run.text
    document = run.json()
    check_report(document)
    assert document["actor"].startswith("token:")
    assert client.get(f"{BASE}/latest", headers=auth).json() == document
    assert client.get(f"{BASE}/{document['id']}", headers=auth).json() == document

    again = client.post(BASE, json={"stale_days": 100_000 // 4}, headers=auth).json()
    assert again["stale"] == {**again["stale"], "after_days": 25_000, "stale": 0}
    listed = client.get(BASE, params={"limit": 5}, headers=auth).json()["audits"]
    assert [a["id"] for a in listed] == [again["id"], document["id"]]
    assert listed[1]["totals"] == document["totals"]
    assert [
        a["id"] for a in client.get(BASE, params={"limit": 1}, headers=auth).json()["audits"]
    ] == [again["id"]]


def test_bad_input_is_a_4xx(client: TestClient, db: Database, admin_token: str) -> None:
    auth = bearer(admin_token)
    assert client.get(f"{BASE}/no-such-audit", headers=auth).status_code == 404
    for params in ({"limit": 0}, {"limit": 101}, {"limit": "many"}):
        bad = client.get(BASE, params=params, headers=auth)
        assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "limit", params
    for body in ({"stale_days": 0}, {"stale_days": "soon"}, {"colour": "red"}):
        bad = client.post(BASE, json=body, headers=auth)
        assert bad.status_code == 400, body
    not_json = client.post(BASE, content=b"{", headers={**auth, "Content-Type": "application/json"})
    assert not_json.status_code == 400
    assert client.get(f"{BASE}/latest").status_code == 401

    other = new_workspace(db)  # another workspace's audit is not found, not forbidden
    with db.write() as session:
        theirs = tenancy.issue_key(
            session=session, workspace_id=other, kind="token", name="t", role=tenancy.Role.ADMIN
        ).secret
    their_audit = client.post(BASE, headers=bearer(theirs)).json()["id"]
    assert client.get(f"{BASE}/{their_audit}", headers=auth).status_code == 404


def test_scopes_by_role(client: TestClient, db: Database, workspace: str) -> None:
    for role, can_run in (
        (tenancy.Role.ANALYST, True),
        (tenancy.Role.MARKETER, True),
        (tenancy.Role.SUPPORT, False),
        (tenancy.Role.PRIVACY_OFFICER, False),
    ):
        auth = bearer(issue_token(db, workspace, role))
        run = client.post(BASE, headers=auth)
        assert run.status_code == (200 if can_run else 403), (role, run.text)
        assert client.get(BASE, headers=auth).status_code == 200, role


def _cell(page: str, field: str, css: str) -> str:
    row = re.search(rf'<tr data-field="{field}">(.*?)</tr>', page, re.S)
    assert row is not None, field
    found = re.search(rf'class="num {css}">([^<]*)<', row.group(1))
    assert found is not None, (field, css)
    return found.group(1)


def _text(page: str, element_id: str) -> str:
    found = re.search(rf'id="{element_id}"[^>]*>(?:\s*<span class="value">)?([^<]*)<', page)
    assert found is not None, element_id
    return found.group(1).strip()


def test_the_page_shows_what_the_api_answers(
    client: TestClient, write_key: str, admin_token: str
) -> None:
    _plant(client, write_key)
    sign_in(client, admin_token)
    empty = client.get("/app/quality")
    assert empty.status_code == 200 and 'id="no-audit"' in empty.text
    refused = client.post("/app/quality/run", data={}, follow_redirects=False)
    assert refused.status_code == 403
    token = csrf(client, "/app/quality")
    done = client.post("/app/quality/run", data={"csrf_token": token}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/app/quality"

    api = client.get(f"{BASE}/latest", headers=bearer(admin_token)).json()
    check_report(api)
    page = html.unescape(client.get("/app/quality").text)
    assert 'href="/app/quality"' in page  # the nav link
    assert _text(page, "profiles") == str(api["profiles"])
    for name in FIELDS:
        field = api["fields"][name]
        assert _cell(page, name, "present") == str(field["present"])
        assert _cell(page, name, "valid") == str(field["valid"])
        assert _cell(page, name, "invalid") == str(field["invalid_total"])
        assert f"{field['share'] * 100:.1f}%" in page
    for kind in ("invalid", "warnings"):
        for name, field in api["fields"].items():
            for code, count in field[kind].items():
                row = re.search(
                    rf'<tr data-field="{name}" data-code="{re.escape(code)}">(.*?)</tr>', page, re.S
                )
                assert row is not None and f'class="num count">{count["count"]}<' in row.group(1)
                for example in count["examples"]:
                    assert f"/app/profiles/{example}" in row.group(1)
    totals = api["totals"]
    assert _text(page, "total-clean") == str(totals["records_clean"])
    assert _text(page, "total-errors") == str(totals["records_with_errors"])
    assert _text(page, "total-duplicates") == str(totals["likely_duplicates"])
    assert _text(page, "likely-duplicates") == str(api["duplicates"]["likely_duplicates"])
    assert _text(page, "duplicate-pairs") == str(api["duplicates"]["pairs"])
    assert _text(page, "stale-count") == str(api["stale"]["stale"])
    assert f'data-audit="{api["id"]}"' in page

    older = client.get("/app/quality", params={"audit": api["id"]})
    assert older.status_code == 200 and api["id"] in older.text
    unknown = client.get("/app/quality", params={"audit": "nope"})
    assert unknown.status_code == 404 and "text/html" in unknown.headers["content-type"]


def test_a_reader_sees_the_page_without_the_run_button(
    client: TestClient, db: Database, workspace: str, admin_token: str
) -> None:
    assert client.post(BASE, headers=bearer(admin_token)).status_code == 200
    sign_in(client, issue_token(db, workspace, tenancy.Role.SUPPORT))
    page = client.get("/app/quality")
    assert page.status_code == 200 and 'id="run-now"' not in page.text
    token = csrf(client, "/app/quality")
    refused = client.post("/app/quality/run", data={"csrf_token": token}, follow_redirects=False)
    assert refused.status_code == 403

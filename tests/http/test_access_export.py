"""The access and portability archive through the real app, on both stores: every category of
one person (across merged profiles), nothing of anyone else, files that check out."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile
from typing import Any

import pytest
from fastapi.testclient import TestClient

from consentry.platform import tenancy
from consentry.platform.db import Database
from consentry.privacy import access
from tests.support.segment import basic, bearer, identify, msg, track

MARK = "zq-marker-7731"


def token(db: Database, workspace: str, role: tenancy.Role) -> dict[str, str]:
    with db.write() as session:
        issued = tenancy.issue_key(
            session=session, workspace_id=workspace, kind="token", name=role.value, role=role
        )
    return bearer(issued.secret)


def send(client: TestClient, write_key: str, *messages: dict[str, Any]) -> None:
    answer = client.post("/v1/batch", json={"batch": list(messages)}, headers=basic(write_key))
    assert answer.status_code == 200, answer.text


@pytest.fixture
def shop(client: TestClient, write_key: str, admin_token: str) -> dict[str, Any]:
    """Ada (a visitor who signed in, so two merged profiles) and Bob, each with a history."""
    send(
        client,
        write_key,
        identify(
            userId="u-ada",
            traits={"email": f"ada.{MARK}@example.com", "first_name": "Ada", "note": "=cmd()"},
        ),
        track("Product Viewed", anonymousId="anon-ada", properties={"product_id": "p1"}),
        track(
            "Order Completed",
            userId="u-ada",
            properties={
                "order_id": "o-ada-1",
                "total": 42.5,
                "currency": "EUR",
                "products": [{"product_id": "p1", "price": 42.5, "quantity": 1}],
            },
        ),
        msg(  # the visitor signs in on this page: the two profiles are one person
            "page",
            userId="u-ada",
            anonymousId="anon-ada",
            name="Home",
            properties={"url": "https://shop.example/"},
        ),
        identify(userId="u-bob", traits={"email": "bob@example.com"}),
        track("Product Viewed", userId="u-bob", properties={"product_id": "p2"}),
    )
    auth = bearer(admin_token)
    ada = client.get("/v1/profiles", params={"user_id": "u-ada"}, headers=auth).json()
    ada_id = ada["profiles"][0]["id"]
    body = {"profile_id": ada_id, "purpose": "analytics", "channel": "any", "state": "granted"}
    assert client.post("/v1/consent", json=body, headers=auth).status_code == 201
    return {"ada": ada_id}


def open_zip(content: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def test_the_archive_holds_every_category_of_the_person_and_nothing_else(
    client: TestClient, db: Database, workspace: str, shop: dict[str, Any]
) -> None:
    officer = token(db, workspace, tenancy.Role.PRIVACY_OFFICER)
    answer = client.post(
        "/v1/privacy/access-exports", json={"email": f"Ada.{MARK}@example.com"}, headers=officer
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/zip"
    assert answer.headers["cache-control"] == "no-store"
    assert f"consentry-access-{shop['ada']}-" in answer.headers["content-disposition"]
    files = open_zip(answer.content)
    expected = {f"{kind}/{c}.{kind}" for c in access.CATEGORIES for kind in ("json", "csv")}
    assert set(files) == expected | {"summary.html", "manifest.json"}

    manifest = json.loads(files["manifest.json"])
    for name, digest in manifest["files"].items():
        assert hashlib.sha256(files[name]).hexdigest() == digest
    data = {c: json.loads(files[f"json/{c}.json"]) for c in access.CATEGORIES}
    assert manifest["counts"] == {c: len(rows) for c, rows in data.items()}

    (profile,) = data["profile"]
    assert profile["id"] == shop["ada"] and len(profile["member_ids"]) == 2  # anon + signed in
    assert profile["traits"]["email"] == f"ada.{MARK}@example.com"
    assert {(i["type"], i["value"]) for i in data["identifiers"]} >= {
        ("user_id", "u-ada"),
        ("anonymous_id", "anon-ada"),
    }
    assert sorted(e["type"] for e in data["events"]) == ["identify", "page", "track", "track"]
    assert [o["order_id"] for o in data["orders"]] == ["o-ada-1"]
    assert data["orders"][0]["total"] == "42.50"  # exact, as text (two decimals as stored)
    assert [(r["purpose"], r["state"]) for r in data["consent"]] == [("analytics", "granted")]
    assert len(data["merges"]) == 1 and data["requests"] == []
    assert data["computed"] == []  # nothing computed yet: no analytics run, no model
    everything = b"".join(files.values())
    assert b"bob@example.com" not in everything and b"u-bob" not in everything

    rows = list(csv.DictReader(io.StringIO(files["csv/profile.csv"].decode("utf-8-sig"))))
    assert rows[0]["id"] == shop["ada"]
    assert json.loads(rows[0]["traits"])["note"] == "=cmd()"  # nested: JSON text, not a formula
    events = list(csv.reader(io.StringIO(files["csv/events.csv"].decode("utf-8-sig"))))
    assert events[0][:3] == ["message_id", "type", "event"] and len(events) == 5
    summary = files["summary.html"].decode()
    assert "Your data held by" in summary and f"ada.{MARK}@example.com" in summary
    assert "<script" not in summary

    again = client.post(
        "/v1/privacy/access-exports",
        json={"profile_id": shop["ada"]},
        headers={**officer, "X-Consentry-Reason": "DSR 42"},
    )
    assert set(open_zip(again.content)) == set(files)
    trail = client.get(
        "/v1/audit", params={"action": "privacy.access_export"}, headers=officer
    ).json()
    found = [(e["target_id"], e["reason"], e["details"]) for e in trail["entries"]]
    assert sorted(found, key=str) == sorted(
        [
            (shop["ada"], "unspecified", {"lookup": "email"}),
            (shop["ada"], "DSR 42", {"lookup": "profile_id"}),
        ],
        key=str,
    )


def test_the_archive_holds_what_was_computed_about_the_person(
    client: TestClient,
    db: Database,
    workspace: str,
    write_key: str,
    admin_token: str,
    shop: dict[str, Any],
) -> None:
    auth = bearer(admin_token)
    usd = {"order_id": "o-ada-2", "total": 20, "currency": "USD"}  # the reporting currency
    send(client, write_key, track("Order Completed", userId="u-ada", properties=usd))
    ran = client.post("/v1/analytics/runs", json={}, headers=auth)
    assert ran.status_code == 200, ran.text
    trained = client.post("/v1/recommendations/train", headers=auth)
    assert trained.status_code == 200, trained.text
    scores = client.get(f"/v1/analytics/customers/{shop['ada']}", headers=auth).json()
    officer = token(db, workspace, tenancy.Role.PRIVACY_OFFICER)
    answer = client.post(
        "/v1/privacy/access-exports", json={"profile_id": shop["ada"]}, headers=officer
    )
    files = open_zip(answer.content)
    computed = json.loads(files["json/computed.json"])
    by_source = {row["source"]: row for row in computed}
    assert set(by_source) == {"analytics", "recommendations"}
    analytics = by_source["analytics"]
    assert analytics["rfm"] == scores["rfm"] and analytics["segment_meaning"]
    model = by_source["recommendations"]
    assert model["model_version"] == trained.json()["version"] and model["active"] is True
    assert model["orders_counted"] >= 1
    assert "u-bob" not in files["json/computed.json"].decode()
    assert json.loads(files["manifest.json"])["counts"]["computed"] == 2


def test_csv_cells_that_a_spreadsheet_would_run_are_quoted() -> None:
    assert access.csv_cell("=SUM(A1)") == "'=SUM(A1)"
    assert access.csv_cell("+1 555") == "'+1 555"
    assert access.csv_cell("-2") == "'-2"
    assert access.csv_cell("@x") == "'@x"
    assert access.csv_cell("plain") == "plain"
    assert access.csv_cell(None) == "" and access.csv_cell(True) == "true"
    assert access.csv_cell({"b": 1, "a": [1]}) == '{"a": [1], "b": 1}'


def test_who_may_ask_and_what_a_bad_request_gets(
    client: TestClient, db: Database, workspace: str, shop: dict[str, Any]
) -> None:
    url = "/v1/privacy/access-exports"
    analyst = token(db, workspace, tenancy.Role.ANALYST)
    assert client.post(url, json={"profile_id": shop["ada"]}, headers=analyst).status_code == 403
    assert client.post(url, json={"profile_id": shop["ada"]}).status_code == 401
    officer = token(db, workspace, tenancy.Role.PRIVACY_OFFICER)
    missing = client.post(url, json={"email": "nobody@example.com"}, headers=officer)
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    empty = client.post(url, json={}, headers=officer)
    assert empty.status_code == 400 and empty.json()["errors"][0]["field"] == "profile_id"
    extra = client.post(url, json={"profile_id": shop["ada"], "why": 1}, headers=officer)
    assert extra.status_code == 400
    other = tenancy_workspace(db)
    foreign = token(db, other, tenancy.Role.PRIVACY_OFFICER)
    elsewhere = client.post(url, json={"profile_id": shop["ada"]}, headers=foreign)
    assert elsewhere.status_code == 404  # another workspace's profile does not exist here


def tenancy_workspace(db: Database) -> str:
    from tests.conftest import new_workspace

    return new_workspace(db)


def test_the_export_command_writes_the_same_archive(
    client: TestClient,
    workspace: str,
    shop: dict[str, Any],
    database_url: str,
    tmp_path: Any,
) -> None:
    from typer.testing import CliRunner

    from consentry.cli import app

    out = tmp_path / "ada.zip"
    runner = CliRunner()
    args = ["privacy", "export", "--workspace", workspace, "--database-url", database_url]
    done = runner.invoke(app, [*args, "--user-id", "u-ada", "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert f"archive of {shop['ada']} written" in done.output and "events 4" in done.output
    files = open_zip(out.read_bytes())
    assert json.loads(files["json/profile.json"])[0]["id"] == shop["ada"]
    missing = runner.invoke(app, [*args, "--email", "nobody@example.com", "--out", str(out)])
    assert missing.exit_code == 1 and "no profile" in missing.output
    unnamed = runner.invoke(app, [*args, "--out", str(out)])
    assert unnamed.exit_code == 1

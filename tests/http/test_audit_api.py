"""The audit trail through the real app, on both stores: reads of personal data are recorded by
profile id with the caller's reason and no personal data; only audit:read sees the trail, and
only its own workspace's; verify and export."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import text

from consentry.platform import tenancy
from consentry.platform.db import Database
from tests.conftest import new_workspace
from tests.http.test_web_pages import sign_in
from tests.support.segment import basic, bearer, identify, track

EMAIL = "Grace.Hopper@Example.org"
PHONE = "+14155550123"
NAME = "Grace"
REASON = "ZD-4711 customer asked for a copy"


def issue(db: Database, workspace: str, role: tenancy.Role) -> tenancy.IssuedKey:
    with db.write() as session:
        return tenancy.issue_key(
            session=session, workspace_id=workspace, kind="token", name=role.value, role=role
        )


def seed(client: TestClient, write_key: str, user_id: str = "gh-1") -> None:
    traits = {"email": EMAIL, "phone": PHONE, "first_name": NAME, "country": "US"}
    sent = client.post(
        "/v1/identify", json=identify(userId=user_id, traits=traits), headers=basic(write_key)
    )
    assert sent.status_code == 200, sent.text


def trail(client: TestClient, token: str, **params: Any) -> list[dict[str, Any]]:
    got = client.get("/v1/audit", params=params, headers=bearer(token))
    assert got.status_code == 200, got.text
    return list(got.json()["entries"])


def test_a_support_read_is_recorded_by_profile_id_with_the_reason_and_no_pii(
    client: TestClient, db: Database, workspace: str, write_key: str
) -> None:
    seed(client, write_key)
    support = issue(db, workspace, tenancy.Role.SUPPORT)
    officer = issue(db, workspace, tenancy.Role.PRIVACY_OFFICER)
    headers = {**bearer(support.secret), "X-Consentry-Reason": REASON}
    found = client.get("/v1/profiles", params={"email": EMAIL.lower()}, headers=headers)
    assert found.status_code == 200, found.text
    (profile,) = found.json()["profiles"]
    pid = profile["id"]
    shown = client.get(f"/v1/profiles/{pid}", headers=bearer(support.secret))
    assert shown.status_code == 200 and shown.json()["traits"]["first_name"] == NAME

    search, read = trail(client, officer.secret)
    assert search["action"] == "profile.search" and read["action"] == "profile.read"
    assert {search["target_id"], read["target_id"]} == {pid}
    assert search["target_type"] == read["target_type"] == "profile"
    assert search["actor"] == read["actor"] == f"token:{support.id}"
    assert (search["reason"], read["reason"]) == (REASON, "unspecified")
    assert search["details"] == {"lookup": "email"}
    assert (search["seq"], read["seq"]) == (1, 2) and read["prev_hash"] == search["hash"]

    for kind in ("jsonl", "csv"):
        export = client.get(
            "/v1/audit/export", params={"format": kind}, headers=bearer(officer.secret)
        )
        assert export.status_code == 200, export.text
        body = export.text
        assert pid in body and REASON in body
        for secret in (EMAIL, EMAIL.lower(), PHONE, NAME, support.secret, officer.secret):
            assert secret not in body, f"{secret!r} leaked into the {kind} export"
    lines = client.get("/v1/audit/export", headers=bearer(officer.secret)).text.splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [1, 2]
    rows = list(
        csv.DictReader(
            io.StringIO(
                client.get(
                    "/v1/audit/export", params={"format": "csv"}, headers=bearer(officer.secret)
                ).text
            )
        )
    )
    assert [r["action"] for r in rows] == ["profile.search", "profile.read"]


def test_a_lookup_that_finds_nothing_is_still_recorded(
    client: TestClient, db: Database, workspace: str, admin_token: str
) -> None:
    support = issue(db, workspace, tenancy.Role.SUPPORT)
    missing = client.get(
        "/v1/profiles", params={"email": "nobody@example.org"}, headers=bearer(support.secret)
    )
    assert missing.status_code == 200 and missing.json()["profiles"] == []
    consent = client.get(
        "/v1/consent", params={"email": "nobody@example.org"}, headers=bearer(support.secret)
    )
    assert consent.status_code == 404
    unknown = client.get("/v1/profiles/not-a-profile", headers=bearer(support.secret))
    assert unknown.status_code == 404
    recorded = trail(client, admin_token)
    assert [(e["action"], e["target_id"], e["details"]) for e in recorded] == [
        ("profile.search", None, {"lookup": "email"}),
        ("consent.read", None, {"lookup": "email"}),
        ("profile.read", None, {"lookup": "profile_id"}),
    ]
    assert "nobody" not in json.dumps(recorded)


def test_consent_reads_are_recorded(
    client: TestClient, db: Database, workspace: str, write_key: str, admin_token: str
) -> None:
    seed(client, write_key)
    auth = bearer(admin_token)
    current = client.get("/v1/consent", params={"email": EMAIL}, headers=auth)
    assert current.status_code == 200, current.text
    pid = current.json()["profile_id"]
    assert client.get(f"/v1/consent/{pid}/history", headers=auth).status_code == 200
    decided = client.get(
        "/v1/consent/decision",
        params={"user_id": "gh-1", "purpose": "analytics", "channel": "any"},
        headers=auth,
    )
    assert decided.status_code == 200, decided.text
    recorded = trail(client, admin_token)
    assert [(e["action"], e["target_id"], e["details"]) for e in recorded] == [
        ("consent.read", pid, {"lookup": "email"}),
        ("consent.history", pid, {"lookup": "profile_id"}),
        ("consent.decision", pid, {"lookup": "user_id"}),
    ]


def test_only_audit_read_sees_the_trail(client: TestClient, db: Database, workspace: str) -> None:
    for role in (tenancy.Role.ANALYST, tenancy.Role.SUPPORT, tenancy.Role.MARKETER):
        token = issue(db, workspace, role).secret
        for method, path in (
            ("GET", "/v1/audit"),
            ("POST", "/v1/audit/verify"),
            ("GET", "/v1/audit/export"),
        ):
            answer = client.request(method, path, headers=bearer(token))
            assert answer.status_code == 403, (role, path, answer.text)
            assert answer.json()["code"] == "forbidden"
    assert client.get("/v1/audit").status_code == 401


def test_a_workspace_never_sees_another_workspaces_entries(
    client: TestClient, db: Database, workspace: str, write_key: str
) -> None:
    other = new_workspace(db)
    seed(client, write_key)
    mine, theirs = (issue(db, ws, tenancy.Role.PRIVACY_OFFICER) for ws in (workspace, other))
    assert client.get("/v1/profiles", params={"email": EMAIL}, headers=bearer(mine.secret))
    assert client.get("/v1/profiles", params={"email": EMAIL}, headers=bearer(theirs.secret))
    (own,) = trail(client, mine.secret)
    (their,) = trail(client, theirs.secret)
    assert own["workspace_id"] == workspace and own["target_id"] is not None
    assert their["workspace_id"] == other and their["target_id"] is None  # nothing found there
    assert own["id"] not in client.get("/v1/audit/export", headers=bearer(theirs.secret)).text
    assert trail(client, theirs.secret, target_id=own["target_id"]) == []


def test_paging_filters_and_bad_input(
    client: TestClient, db: Database, workspace: str, admin_token: str
) -> None:
    auth = bearer(admin_token)
    for n in range(5):
        client.get("/v1/profiles", params={"user_id": f"nobody-{n}"}, headers=auth)
    page = client.get("/v1/audit", params={"limit": 2}, headers=auth).json()
    assert [e["seq"] for e in page["entries"]] == [1, 2] and page["next_after_seq"] == 2
    rest = client.get("/v1/audit", params={"after_seq": 2, "limit": 3}, headers=auth).json()
    assert [e["seq"] for e in rest["entries"]] == [3, 4, 5]
    assert trail(client, admin_token, action="profile.read") == []
    assert len(trail(client, admin_token, since="2000-01-01T00:00:00Z")) == 5
    assert trail(client, admin_token, until="2000-01-01T00:00:00") == []

    for params, field in (
        ({"limit": 0}, "limit"),
        ({"after_seq": -1}, "after_seq"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "until"),
    ):
        bad = client.get("/v1/audit", params=params, headers=auth)
        assert bad.status_code == 400, (params, bad.text)
        body = bad.json()
        assert body["code"] == "invalid" and body["errors"][0]["field"] == field, body
    bad = client.get("/v1/audit/export", params={"format": "xml"}, headers=auth)
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "format"


def test_a_reason_that_cannot_be_stored_refuses_the_read(
    client: TestClient, admin_token: str
) -> None:
    for reason in ("x" * 201, "for grace@example.org"):
        headers = {**bearer(admin_token), "X-Consentry-Reason": reason}
        refused = client.get("/v1/profiles", params={"user_id": "gh-1"}, headers=headers)
        assert refused.status_code == 400, refused.text
        assert refused.json()["errors"][0]["field"] == "X-Consentry-Reason"
        assert "grace@" not in refused.text
    assert trail(client, admin_token) == []


def test_verify_over_http_names_the_tampered_entry(
    client: TestClient, db: Database, admin_token: str
) -> None:
    auth = bearer(admin_token)
    for n in range(3):
        client.get("/v1/profiles", params={"user_id": f"u-{n}"}, headers=auth)
    assert client.post("/v1/audit/verify", headers=auth).json() == {
        "ok": True,
        "checked": 3,
        "problem": None,
    }
    second = trail(client, admin_token)[1]
    with db.engine.begin() as conn:
        conn.execute(
            text("UPDATE audit_entries SET reason = 'routine' WHERE id = :id"), {"id": second["id"]}
        )
    report = client.post("/v1/audit/verify", headers=auth).json()
    assert report["ok"] is False and report["checked"] == 1
    assert report["problem"]["kind"] == "edited" and report["problem"]["seq"] == 2
    assert report["problem"]["entry_id"] == second["id"]


def test_dashboard_reads_are_recorded_too(
    client: TestClient, db: Database, workspace: str, write_key: str, admin_token: str
) -> None:
    seed(client, write_key)
    support = issue(db, workspace, tenancy.Role.SUPPORT)
    sign_in(client, support.secret)
    found = client.get("/app/profiles/search", params={"q": EMAIL})
    assert found.status_code == 200 and NAME in found.text
    (entry,) = trail(client, admin_token, action="profile.search")
    pid = entry["target_id"]
    page = client.get(f"/app/profiles/{pid}")
    assert page.status_code == 200, page.text
    (read,) = trail(client, admin_token, action="profile.read")
    assert (read["target_id"], read["actor"]) == (pid, f"token:{support.id}")
    assert read["details"] == {"lookup": "profile_id", "via": "dashboard"}
    assert EMAIL.lower() not in client.get("/v1/audit/export", headers=bearer(admin_token)).text


def test_an_order_read_is_recorded_under_the_buyers_profile(
    client: TestClient, db: Database, workspace: str, write_key: str, admin_token: str
) -> None:
    seed(client, write_key)
    order = track(
        "Order Completed",
        userId="gh-1",
        properties={
            "order_id": "o-77",
            "total": 10,
            "products": [{"product_id": "p", "price": 10}],
        },
    )
    assert client.post("/v1/track", json=order, headers=basic(write_key)).status_code == 200
    auth = bearer(admin_token)
    assert client.get("/v1/orders/o-77", headers=auth).status_code == 200
    pid = client.get("/v1/profiles", params={"user_id": "gh-1"}, headers=auth).json()
    (read,) = trail(client, admin_token, action="order.read")
    assert read["target_id"] == pid["profiles"][0]["id"]
    assert read["details"] == {"lookup": "order_id"}

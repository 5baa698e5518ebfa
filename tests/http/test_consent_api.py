"""The consent routes through the real app, on both stores: record, decide, receipt, verify."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import text

from consentry.platform import tenancy
from consentry.platform.db import Database
from tests.conftest import new_workspace
from tests.support.segment import basic, bearer, identify

EMAIL = "marketing.communications.email"


def token(db: Database, workspace: str, role: tenancy.Role) -> str:
    with db.write() as session:
        issued = tenancy.issue_key(
            session=session, workspace_id=workspace, kind="token", name=role.value, role=role
        )
    return issued.secret


def person(client: TestClient, write_key: str, user_id: str, **traits: Any) -> str:
    """A unified profile made through ingestion; returns its id."""
    sent = client.post(
        "/v1/identify", json=identify(userId=user_id, traits=traits), headers=basic(write_key)
    )
    assert sent.status_code == 200, sent.text
    return user_id


def test_record_then_decide_names_the_deciding_record(
    client: TestClient, write_key: str, admin_token: str
) -> None:
    person(client, write_key, "u-1", email="Ada@Example.com", country="DE")
    auth = bearer(admin_token)
    before = client.get(
        "/v1/consent/decision",
        params={"email": "ada@example.com", "purpose": EMAIL, "channel": "email"},
        headers=auth,
    ).json()
    assert before["allowed"] is False and before["regime"] == "opt_in"
    assert before["record_id"] is None

    body = {
        "email": "ADA@example.com",
        "purpose": EMAIL,
        "channel": "email",
        "state": "granted",
        "source": "web_form",
        "notice_version": "v3",
        "proof": {"ip": "203.0.113.77", "user_agent": "Firefox", "page_url": "https://s.io/a?x=1"},
    }
    made = client.post("/v1/consent", json=body, headers=auth)
    assert made.status_code == 201, made.text
    record = made.json()
    assert "proof" not in record

    after = client.get(
        "/v1/consent/decision",
        params={"user_id": "u-1", "purpose": EMAIL, "channel": "email"},
        headers=auth,
    ).json()
    assert after["allowed"] is True
    assert after["record_id"] == record["id"]

    receipt = client.get(f"/v1/consent/records/{record['id']}/receipt", headers=auth).json()
    assert receipt["consentReceiptID"] == record["id"]
    assert receipt["jurisdiction"] == "DE"
    purpose = receipt["services"][0]["purposes"][0]
    assert (purpose["purpose"], purpose["state"]) == (EMAIL, "granted")

    history = client.get(f"/v1/consent/{after['profile_id']}/history", headers=auth).json()
    assert [r["id"] for r in history["records"]] == [record["id"]]
    verified = client.post("/v1/consent/verify", headers=auth).json()
    assert verified == {"ok": True, "checked": 1, "problem": None}


def test_bad_items_are_named_and_nothing_is_recorded(
    client: TestClient, write_key: str, admin_token: str
) -> None:
    person(client, write_key, "u-2", email="b@example.com")
    auth = bearer(admin_token)
    good = {"user_id": "u-2", "purpose": EMAIL, "channel": "email", "state": "granted"}
    items = [
        good,
        {**good, "purpose": "marketing.telepathy"},
        {**good, "channel": "pigeon"},
        {**good, "state": "maybe"},
    ]
    response = client.post("/v1/consent/bulk", json={"records": items}, headers=auth)
    assert response.status_code == 400, response.text
    named = {(e["index"], e["field"]) for e in response.json()["errors"]}
    assert {(1, "purpose"), (2, "channel"), (3, "state")} <= named
    single = client.post("/v1/consent", json={**good, "state": "maybe"}, headers=auth)
    assert single.status_code == 400
    assert single.json()["errors"][0]["field"] == "state"
    unknown = client.post("/v1/consent", json={**good, "user_id": "nobody"}, headers=auth)
    assert unknown.status_code == 404, unknown.text
    assert client.post("/v1/consent/verify", headers=auth).json()["checked"] == 0

    ok = client.post("/v1/consent/bulk", json={"records": [good, good]}, headers=auth)
    assert ok.status_code == 201 and ok.json()["recorded"] == 2


def test_roles_and_workspaces_bound_consent(
    client: TestClient, db: Database, workspace: str, write_key: str, admin_token: str
) -> None:
    person(client, write_key, "u-3", email="c@example.com")
    grant = {"user_id": "u-3", "purpose": EMAIL, "channel": "email", "state": "granted"}
    analyst = bearer(token(db, workspace, tenancy.Role.ANALYST))
    assert client.post("/v1/consent", json=grant, headers=analyst).status_code == 403
    dpo = bearer(token(db, workspace, tenancy.Role.PRIVACY_OFFICER))
    record = client.post("/v1/consent", json=grant, headers=dpo)
    assert record.status_code == 201, record.text
    record_id = record.json()["id"]
    profile_id = record.json()["profile_id"]
    assert client.get(f"/v1/consent/{profile_id}", headers=analyst).status_code == 200

    other = new_workspace(db)
    stranger = bearer(token(db, other, tenancy.Role.ADMIN))
    for path in (f"/v1/consent/{profile_id}", f"/v1/consent/records/{record_id}/receipt"):
        assert client.get(path, headers=stranger).status_code == 404, path
    assert client.post("/v1/consent", json=grant, headers=stranger).status_code == 404
    assert client.post("/v1/consent/verify", headers=stranger).json()["checked"] == 0
    assert client.get("/v1/consent", params={"user_id": "u-3"}, headers=bearer(admin_token)).json()


def test_verify_names_a_record_edited_in_the_store(
    client: TestClient, db: Database, write_key: str, admin_token: str
) -> None:
    person(client, write_key, "u-4", email="d@example.com")
    auth = bearer(admin_token)
    ids = []
    for state in ("granted", "withdrawn", "granted"):
        body = {"user_id": "u-4", "purpose": EMAIL, "channel": "email", "state": state}
        ids.append(client.post("/v1/consent", json=body, headers=auth).json()["id"])
    with db.write() as session:
        session.execute(
            text("UPDATE consent_records SET state = 'granted' WHERE id = :id"), {"id": ids[1]}
        )
    report = client.post("/v1/consent/verify", headers=auth).json()
    assert report["ok"] is False
    assert report["problem"]["record_id"] == ids[1]
    assert report["problem"]["kind"] == "edited"

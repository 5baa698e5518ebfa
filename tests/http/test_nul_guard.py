"""NUL characters never reach a store (PostgreSQL cannot hold them): 400 naming where, on both."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from tests.support.segment import basic, bearer, identify

EMAIL = "marketing.communications.email"


def test_nul_in_a_json_body_query_or_form_is_refused(
    client: TestClient, write_key: str, admin_token: str
) -> None:
    auth = bearer(admin_token)
    client.post("/v1/identify", json=identify(userId="z-1"), headers=basic(write_key))
    choice = {"user_id": "z-1", "purpose": EMAIL, "channel": "email", "state": "granted"}
    body = json.dumps({**choice, "notice_version": "v\x00"}).encode()
    refused = client.post(
        "/v1/consent", content=body, headers={**auth, "content-type": "application/json"}
    )
    assert refused.status_code == 400, refused.text
    assert refused.json()["errors"][0]["field"] == "notice_version"
    bulk = json.dumps({"records": [choice, {**choice, "proof": {"user_agent": "x\x00"}}]})
    nested = client.post(
        "/v1/consent/bulk",
        content=bulk.encode(),
        headers={**auth, "content-type": "application/json"},
    )
    assert nested.status_code == 400
    assert nested.json()["errors"][0]["field"] == "records.1.proof.user_agent"
    query = client.get("/v1/consent?user_id=z%001", headers=auth)
    assert query.status_code == 400 and query.json()["errors"][0]["field"] == "(query)"
    path = client.get("/v1/consent/abc%00def", headers=auth)
    assert path.status_code == 400 and path.json()["errors"][0]["field"] == "(path)"
    form = client.post(
        "/app/login",
        content=b"token=a%00b",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert form.status_code == 400 and form.json()["errors"][0]["field"] == "token"
    # A backslash followed by "u0000" is text, not a NUL: it goes through.
    fine = client.post("/v1/consent", json={**choice, "notice_version": "v\\u0000"}, headers=auth)
    assert fine.status_code == 201, fine.text
    history = client.get(f"/v1/consent/{fine.json()['profile_id']}/history", headers=auth).json()
    assert len(history["records"]) == 1


def test_offsets_past_what_a_store_can_count_are_refused(
    client: TestClient, admin_token: str
) -> None:
    """Found by schemathesis: an offset beyond 64 bits overflowed SQLite and PostgreSQL (500)."""
    for path in ("/v1/profiles", "/v1/consent/some-profile/history"):
        response = client.get(path, params={"offset": 2**70}, headers=bearer(admin_token))
        assert response.status_code == 400, (path, response.text)
        assert response.json()["errors"][0]["field"] == "offset"

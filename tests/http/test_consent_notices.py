"""Purposes, default regime and notices of a workspace, through the real app on both stores."""

from __future__ import annotations

from fastapi.testclient import TestClient

from consentry.consent.notices import content_hash
from tests.support.segment import basic, bearer, identify

EMAIL = "marketing.communications.email"
NOTICE = {
    "version": "2026-11",
    "language": "en",
    "purposes": [EMAIL],
    "title": "Newsletter",
    "text": "We will email you our offers. Unsubscribe at any time.",
}


def test_notices_are_published_once_and_never_edited(client: TestClient, admin_token: str) -> None:
    auth = bearer(admin_token)
    first = client.post("/v1/consent/notices", json=NOTICE, headers=auth)
    assert first.status_code == 201, first.text
    assert first.json()["content_hash"] == content_hash(NOTICE["title"], NOTICE["text"])
    again = client.post("/v1/consent/notices", json=NOTICE, headers=auth)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    edited = client.post("/v1/consent/notices", json={**NOTICE, "text": "Other"}, headers=auth)
    assert edited.status_code == 409
    assert edited.json()["errors"][0]["field"] == "version"
    french = {**NOTICE, "language": "fr", "title": "Lettre", "text": "Nous vous écrirons."}
    assert client.post("/v1/consent/notices", json=french, headers=auth).status_code == 201
    listed = client.get("/v1/consent/notices", params={"version": "2026-11"}, headers=auth)
    assert {n["language"] for n in listed.json()["notices"]} == {"en", "fr"}
    one = client.get(f"/v1/consent/notices/{first.json()['id']}", headers=auth)
    assert one.json()["text"] == NOTICE["text"]

    bad = client.post(
        "/v1/consent/notices",
        json={**NOTICE, "version": "x", "language": "english", "purposes": ["telepathy"]},
        headers=auth,
    )
    assert bad.status_code == 400
    assert {e["field"] for e in bad.json()["errors"]} == {"language", "purposes.0"}


def test_records_must_name_a_published_notice_covering_the_purpose(
    client: TestClient, write_key: str, admin_token: str
) -> None:
    auth = bearer(admin_token)
    client.post("/v1/identify", json=identify(userId="n-1"), headers=basic(write_key))
    choice = {"user_id": "n-1", "purpose": EMAIL, "channel": "email", "state": "granted"}
    # Before any notice is published, versions are the shop's own labels.
    assert (
        client.post(
            "/v1/consent", json={**choice, "notice_version": "cms-7"}, headers=auth
        ).status_code
        == 201
    )
    client.post("/v1/consent/notices", json=NOTICE, headers=auth)
    unknown = client.post("/v1/consent", json={**choice, "notice_version": "cms-8"}, headers=auth)
    assert unknown.status_code == 400
    assert unknown.json()["errors"][0]["field"] == "notice_version"
    sms = {**choice, "purpose": "marketing.communications.sms", "channel": "sms"}
    uncovered = client.post("/v1/consent", json={**sms, "notice_version": "2026-11"}, headers=auth)
    assert uncovered.status_code == 400
    assert "does not cover" in uncovered.json()["errors"][0]["reason"]
    made = client.post("/v1/consent", json={**choice, "notice_version": "2026-11"}, headers=auth)
    assert made.status_code == 201, made.text
    receipt = client.get(f"/v1/consent/records/{made.json()['id']}/receipt", headers=auth).json()
    assert receipt["noticeVersion"] == "2026-11"
    assert receipt["noticeHashes"] == {"en": content_hash(NOTICE["title"], NOTICE["text"])}


def test_purposes_and_regime_are_configured_per_workspace(
    client: TestClient, write_key: str, admin_token: str
) -> None:
    auth = bearer(admin_token)
    defaults = client.get("/v1/consent/config", headers=auth).json()
    assert defaults["default_regime"] == "opt_in"
    assert EMAIL in {p["key"] for p in defaults["purposes"]}
    loyalty = {"key": "marketing.loyalty", "name": "Loyalty club", "category": "marketing"}
    changed = client.put(
        "/v1/consent/config",
        json={"purposes": [*defaults["purposes"], loyalty], "default_regime": "opt_out"},
        headers=auth,
    )
    assert changed.status_code == 200, changed.text
    client.post("/v1/identify", json=identify(userId="n-2"), headers=basic(write_key))
    decision = client.get(
        "/v1/consent/decision",
        params={"user_id": "n-2", "purpose": "marketing.loyalty"},
        headers=auth,
    ).json()
    assert decision["allowed"] is True and decision["regime"] == "opt_out"
    bad = client.put(
        "/v1/consent/config", json={"purposes": [{**loyalty, "key": "Bad Key"}]}, headers=auth
    )
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["field"] == "purposes.0.key"
    regime = client.put("/v1/consent/config", json={"default_regime": "maybe"}, headers=auth)
    assert regime.status_code == 400

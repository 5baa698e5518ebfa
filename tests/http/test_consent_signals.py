"""Consent signals through the real app, on both stores: TC strings posted to the API, Global
Privacy Control and the consent object carried on ingested events, /.well-known/gpc.json."""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient

from consentry.consent import service as consent
from consentry.ingest import service as ingest
from consentry.platform import tenancy
from consentry.platform.db import Database
from consentry.profiles import service as profiles
from tests.consent.test_tcf import ES_142_SHORT_BITFIELD, ES_156_V1, SPEC_CORE
from tests.support.segment import basic, bearer, identify, msg, track

ADS = "marketing.advertising.third_party"
GPC = {"Sec-GPC": "1"}


def person(client: TestClient, write_key: str, user_id: str, **traits: Any) -> None:
    sent = client.post(
        "/v1/identify", json=identify(userId=user_id, traits=traits), headers=basic(write_key)
    )
    assert sent.status_code == 200, sent.text


def decide(client: TestClient, token: str, user_id: str, purpose: str = ADS) -> dict[str, Any]:
    got = client.get(
        "/v1/consent/decision",
        params={"user_id": user_id, "purpose": purpose},
        headers=bearer(token),
    )
    assert got.status_code == 200, got.text
    decision: dict[str, Any] = got.json()
    return decision


def history(client: TestClient, token: str, profile_id: str) -> list[dict[str, Any]]:
    got = client.get(f"/v1/consent/{profile_id}/history", headers=bearer(token))
    assert got.status_code == 200, got.text
    records: list[dict[str, Any]] = got.json()["records"]
    return records


def send(
    client: TestClient,
    write_key: str,
    message: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> None:
    path = f"/v1/{message['type']}"
    sent = client.post(path, json=message, headers={**basic(write_key), **(headers or {})})
    assert sent.status_code == 200, sent.text


def with_consent(prefs: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return track("Page Viewed", context={"consent": {"categoryPreferences": prefs}}, **fields)


# --- TCF ----------------------------------------------------------------------------------------


def test_a_tc_string_records_one_record_per_mapped_purpose(
    client: TestClient, write_key: str, admin_token: str, db: Database, workspace: str
) -> None:
    person(client, write_key, "u-tcf", email="tcf@example.com", country="BE")
    body = {
        "email": "tcf@example.com",
        "tc_string": SPEC_CORE,
        "proof": {"ip": "203.0.113.9", "page_url": "https://shop.example/?utm=x"},
    }
    made = client.post("/v1/consent/tcf", json=body, headers=bearer(admin_token))
    assert made.status_code == 201, made.text
    out = made.json()
    assert out["recorded"] == 3
    assert {(r["purpose"], r["state"], r["source"]) for r in out["records"]} == {
        (ADS, "granted", "cmp"),  # TCF purposes 3 and 4 consented
        ("personalize", "denied", "cmp"),
        ("analytics", "denied", "cmp"),
    }
    assert out["tc_string"]["cmp_id"] == 56 and out["tc_string"]["purposes_consent"] == [1, 3, 4]
    assert all("proof" not in r for r in out["records"])

    assert decide(client, admin_token, "u-tcf")["allowed"] is True
    analytics = decide(client, admin_token, "u-tcf", "analytics")
    assert (analytics["allowed"], analytics["reason"]) == (False, "denied")
    with db.read() as session:
        stored = consent.get_record(
            session=session, workspace_id=workspace, record_id=out["records"][0]["id"]
        )
    assert stored.proof == {
        "ip": "203.0.113.0",
        "page_url": "https://shop.example/",
        "cmp_string": SPEC_CORE,
    }


def test_a_malformed_tc_string_is_a_400_naming_the_field_and_records_nothing(
    client: TestClient, write_key: str, admin_token: str
) -> None:
    person(client, write_key, "u-bad-tcf")
    auth = bearer(admin_token)
    for tc_string, reason in [
        (ES_142_SHORT_BITFIELD, "truncated or malformed"),
        (ES_156_V1, "only TCF v2 is supported"),
        ("C%%%", "is not base64url"),
    ]:
        got = client.post(
            "/v1/consent/tcf", json={"user_id": "u-bad-tcf", "tc_string": tc_string}, headers=auth
        )
        assert got.status_code == 400, got.text
        body = got.json()
        assert body["code"] == "invalid" and body["message"]
        [error] = body["errors"]
        assert error["field"] == "tc_string" and reason in error["reason"]
    empty = client.post(
        "/v1/consent/tcf", json={"user_id": "u-bad-tcf", "tc_string": ""}, headers=auth
    )
    assert empty.status_code == 400 and empty.json()["errors"][0]["field"] == "tc_string"
    profile_id = decide(client, admin_token, "u-bad-tcf")["profile_id"]
    assert history(client, admin_token, profile_id) == []

    nobody = client.post(
        "/v1/consent/tcf", json={"user_id": "nobody", "tc_string": SPEC_CORE}, headers=auth
    )
    assert nobody.status_code == 404
    nul = {"user_id": "u-bad-tcf", "tc_string": SPEC_CORE, "proof": {"user_agent": "a\u0000b"}}
    refused = client.post("/v1/consent/tcf", json=nul, headers=auth)  # PostgreSQL cannot store
    assert refused.status_code == 400, refused.text
    assert refused.json()["errors"][0]["field"] == "proof.user_agent"
    assert history(client, admin_token, profile_id) == []


def test_recording_a_tc_string_needs_consent_write(
    client: TestClient, write_key: str, db: Database, workspace: str
) -> None:
    person(client, write_key, "u-scope")
    with db.write() as session:
        analyst = tenancy.issue_key(
            session=session,
            workspace_id=workspace,
            kind="token",
            name="a",
            role=tenancy.Role.ANALYST,
        ).secret
    got = client.post(
        "/v1/consent/tcf",
        json={"user_id": "u-scope", "tc_string": SPEC_CORE},
        headers=bearer(analyst),
    )
    assert got.status_code == 403


# --- GPC ----------------------------------------------------------------------------------------


def test_gpc_on_ingestion_denies_sale_and_sharing_once(
    client: TestClient, write_key: str, admin_token: str
) -> None:
    person(client, write_key, "u-gpc", country="US")
    before = decide(client, admin_token, "u-gpc")
    assert (before["allowed"], before["reason"]) == (True, "opt_out_regime_default")

    page = track("Product Viewed", userId="u-gpc", context={"ip": "198.51.100.23"})
    send(client, write_key, page, GPC)
    after = decide(client, admin_token, "u-gpc")
    assert (after["allowed"], after["reason"]) == (False, "denied")
    [record] = history(client, admin_token, after["profile_id"])
    assert record["id"] == after["record_id"]
    assert (record["purpose"], record["state"], record["source"]) == (ADS, "denied", "gpc")
    assert record["channel"] == "any"

    for _ in range(2):  # the same signal again: nothing new
        send(client, write_key, track("Product Viewed", userId="u-gpc"), GPC)
    send(client, write_key, track("Product Viewed", userId="u-gpc"))  # no signal: not a grant
    assert len(history(client, admin_token, after["profile_id"])) == 1
    assert decide(client, admin_token, "u-gpc")["allowed"] is False


def test_gpc_on_a_batch_reaches_every_subject_and_the_message_keeps_it(
    client: TestClient, write_key: str, admin_token: str, db: Database, workspace: str
) -> None:
    first = track("Cart Viewed", userId="u-b1")
    batch = {"batch": [first, track("Cart Viewed", anonymousId="anon-b2")]}
    sent = client.post("/v1/batch", json=batch, headers={**basic(write_key), **GPC})
    assert sent.status_code == 200, sent.text
    assert decide(client, admin_token, "u-b1")["reason"] == "denied"
    with db.read() as session:
        stored = consent.resolve_subject(session=session, workspace_id=workspace, user_id="u-b1")
        states = consent.states_of(session=session, workspace_id=workspace, profile_ids=[stored])
    assert [(s.purpose, s.state) for s in states] == [(ADS, "denied")]
    with db.read() as session:
        event = ingest.get_event(
            session=session, workspace_id=workspace, message_id=first["messageId"]
        )
    assert event is not None and event.payload["context"]["gpc"] is True


def test_an_explicit_grant_after_the_signal_wins_until_changed(
    client: TestClient, write_key: str, admin_token: str
) -> None:
    """§7025(c)(3): the GPC opt-out overrides an earlier grant; a grant made afterwards,
    explicitly, on a request that carried the signal, stands against later signals."""
    auth = bearer(admin_token)
    person(client, write_key, "u-conflict", country="US")
    earlier = {"user_id": "u-conflict", "purpose": ADS, "state": "granted", "source": "web_form"}
    assert client.post("/v1/consent", json=earlier, headers=auth).status_code == 201
    assert decide(client, admin_token, "u-conflict")["allowed"] is True

    send(client, write_key, track("Home Viewed", userId="u-conflict"), GPC)
    assert decide(client, admin_token, "u-conflict")["reason"] == "denied"  # GPC overrides

    unaware = {**earlier, "source": "preference_center"}  # no proof that it saw the signal
    assert client.post("/v1/consent", json=unaware, headers=auth).status_code == 201
    send(client, write_key, track("Home Viewed", userId="u-conflict"), GPC)
    assert decide(client, admin_token, "u-conflict")["reason"] == "denied"

    aware = {**unaware, "proof": {"gpc": True}}
    granted = client.post("/v1/consent", json=aware, headers=auth)
    assert granted.status_code == 201, granted.text
    send(client, write_key, track("Home Viewed", userId="u-conflict"), GPC)
    decision = decide(client, admin_token, "u-conflict")
    assert (decision["allowed"], decision["record_id"]) == (True, granted.json()["id"])
    sources = [r["source"] for r in history(client, admin_token, decision["profile_id"])]
    assert sources == ["preference_center", "gpc", "preference_center", "gpc", "web_form"]


def test_record_gpc_for_a_request_made_on_a_customer_page(
    client: TestClient, write_key: str, db: Database, workspace: str
) -> None:
    person(client, write_key, "u-page", country="US")
    page_proof = {"ip": "192.0.2.0", "page_url": "https://shop.example/p/digest"}
    with db.write() as session:
        subject = consent.resolve_subject(session=session, workspace_id=workspace, user_id="u-page")
        first = consent.record_gpc(
            session=session,
            workspace_id=workspace,
            profile_id=subject,
            actor="preference_center",
            proof=page_proof,
        )
        again = consent.record_gpc(
            session=session, workspace_id=workspace, profile_id=subject, actor="preference_center"
        )
    assert first is not None and again is None
    assert (first.purpose, first.state, first.source) == (ADS, "denied", "gpc")
    assert first.proof == {**page_proof, "gpc": "1"}


def test_the_preference_center_honours_gpc_and_takes_an_explicit_grant(
    client: TestClient, write_key: str, admin_token: str, db: Database, workspace: str
) -> None:
    """The page that sees ``Sec-GPC: 1`` opts the subject out before showing the choices; a
    grant of sale/sharing the customer then makes there acknowledges the signal."""
    person(client, write_key, "u-center", country="US")
    issued = client.post(
        "/v1/consent/links", json={"user_id": "u-center"}, headers=bearer(admin_token)
    )
    assert issued.status_code == 201, issued.text
    path = f"/p/{issued.json()['token']}"
    field = f"choice:{ADS}:any"

    page = client.get(path, headers=GPC)
    assert page.status_code == 200
    assert re.search(rf'name="{re.escape(field)}" value="no" checked', page.text)
    decision = decide(client, admin_token, "u-center")
    assert decision["reason"] == "denied"
    assert [r["source"] for r in history(client, admin_token, decision["profile_id"])] == ["gpc"]
    assert client.get(path, headers=GPC).status_code == 200  # seen again: nothing new
    assert len(history(client, admin_token, decision["profile_id"])) == 1

    saved = client.post(path, data={field: "yes"}, headers=GPC, follow_redirects=False)
    assert saved.status_code == 303, saved.text
    granted = decide(client, admin_token, "u-center")
    assert granted["allowed"] is True
    with db.read() as session:
        record = consent.get_record(
            session=session, workspace_id=workspace, record_id=granted["record_id"]
        )
    assert (record.source, record.state, (record.proof or {}).get("gpc")) == (
        "preference_center",
        "granted",
        "1",
    )
    send(client, write_key, track("Home Viewed", userId="u-center"), GPC)
    assert decide(client, admin_token, "u-center")["allowed"] is True  # acknowledged: it stands


# --- the consent object -------------------------------------------------------------------------


def test_context_consent_records_the_mapped_purposes_when_they_change(
    client: TestClient, write_key: str, admin_token: str
) -> None:
    person(client, write_key, "u-cmp", country="FR")
    prefs = {"Advertising": True, "Analytics": False, "Functional": True, "C0099": True}
    send(client, write_key, with_consent(prefs, userId="u-cmp"))
    ads, analytics = (
        decide(client, admin_token, "u-cmp"),
        decide(client, admin_token, "u-cmp", "analytics"),
    )
    assert (ads["allowed"], ads["reason"]) == (True, "granted")
    assert (analytics["allowed"], analytics["reason"]) == (False, "denied")
    records = history(client, admin_token, ads["profile_id"])
    assert sorted((r["purpose"], r["state"], r["source"]) for r in records) == [
        ("analytics", "denied", "cmp"),
        (ADS, "granted", "cmp"),
    ]

    send(client, write_key, with_consent(prefs, userId="u-cmp"))  # unchanged: nothing new
    assert len(history(client, admin_token, ads["profile_id"])) == 2
    send(client, write_key, with_consent({**prefs, "Analytics": True}, userId="u-cmp"))
    assert decide(client, admin_token, "u-cmp", "analytics")["reason"] == "granted"
    assert len(history(client, admin_token, ads["profile_id"])) == 3


def test_odd_contexts_are_recorded_without_breaking_processing(
    client: TestClient, write_key: str, admin_token: str, db: Database, workspace: str
) -> None:
    context = {
        "consent": {"categoryPreferences": {"Advertising": "yes", "Analytics": True, "": 1}},
        "page": {"url": "http://[::1/cart?email=ada@example.com"},
        "ip": "not an address",
        "userAgent": "U" * 5000,
    }
    send(client, write_key, track("Odd", userId="u-odd", context=context), GPC)
    ads, analytics = (
        decide(client, admin_token, "u-odd"),
        decide(client, admin_token, "u-odd", "analytics"),
    )
    assert (ads["reason"], analytics["reason"]) == ("denied", "granted")
    with db.read() as session:
        record = consent.get_record(
            session=session, workspace_id=workspace, record_id=analytics["record_id"]
        )
    assert record.proof == {"user_agent": "U" * 512, "gpc": "1"}
    assert client.get("/v1/ingest/status", headers=bearer(admin_token)).json()["pending"] == 0


def test_a_banner_grant_does_not_lift_gpc(
    client: TestClient, write_key: str, admin_token: str
) -> None:
    person(client, write_key, "u-both", country="US")
    send(client, write_key, with_consent({"Advertising": True}, userId="u-both"), GPC)
    decision = decide(client, admin_token, "u-both")
    assert decision["reason"] == "denied"
    [record] = history(client, admin_token, decision["profile_id"])
    assert record["source"] == "gpc"
    send(client, write_key, with_consent({"Advertising": True}, userId="u-both"))  # GPC off now
    assert decide(client, admin_token, "u-both")["reason"] == "denied"


def test_a_workspace_maps_its_own_category_names(
    client: TestClient, write_key: str, admin_token: str
) -> None:
    auth = bearer(admin_token)
    shown = client.get("/v1/consent/signals/categories", headers=auth).json()
    assert shown["categories"] == {} and shown["effective"]["advertising"] == [ADS]
    bad = client.put(
        "/v1/consent/signals/categories",
        json={"categories": {"C0004": ["no.such.purpose"]}},
        headers=auth,
    )
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["field"] == "categories.C0004"
    put = client.put(
        "/v1/consent/signals/categories",
        json={"categories": {"C0004": ["personalize"], "Analytics": []}},
        headers=auth,
    )
    assert put.status_code == 200, put.text
    assert put.json()["categories"] == {"c0004": ["personalize"], "analytics": []}

    person(client, write_key, "u-map", country="DE")
    send(client, write_key, with_consent({"C0004": True, "Analytics": False}, userId="u-map"))
    assert decide(client, admin_token, "u-map", "personalize")["reason"] == "granted"
    analytics = decide(client, admin_token, "u-map", "analytics")
    assert (analytics["reason"], analytics["record_id"]) == ("no_consent", None)  # now ignored


def test_an_anonymous_visitors_signal_lands_on_its_pseudonymous_profile(
    client: TestClient, write_key: str, admin_token: str, db: Database, workspace: str
) -> None:
    send(client, write_key, msg("page", anonymousId="anon-gpc", name="Home"), GPC)
    with db.read() as session:
        [profile_id] = profiles.search_identifiers(
            session=session, workspace_id=workspace, anonymous_id="anon-gpc"
        )
    records = history(client, admin_token, profile_id)
    assert [(r["purpose"], r["source"]) for r in records] == [(ADS, "gpc")]


def test_a_signal_follows_a_visitor_into_a_merge_and_is_not_repeated(
    client: TestClient, write_key: str, admin_token: str
) -> None:
    person(client, write_key, "u-merge", country="US")
    send(client, write_key, msg("page", anonymousId="anon-merge", name="Home"), GPC)
    assert decide(client, admin_token, "u-merge")["allowed"] is True  # not linked yet
    linking = track("Signed In", userId="u-merge", anonymousId="anon-merge")
    send(client, write_key, linking)
    merged = decide(client, admin_token, "u-merge")
    assert merged["reason"] == "denied"  # the visitor's opt-out now covers the customer
    send(client, write_key, track("Home Viewed", userId="u-merge"), GPC)
    assert len(history(client, admin_token, merged["profile_id"])) == 1


# --- the well-known resource --------------------------------------------------------------------


def test_well_known_gpc_json(client: TestClient) -> None:
    got = client.get("/.well-known/gpc.json")
    assert got.status_code == 200
    assert got.headers["content-type"].startswith("application/json")
    body = got.json()
    assert body == {"gpc": True, "lastUpdate": body["lastUpdate"]}
    year, month, day = body["lastUpdate"].split("-")
    assert (len(year), len(month), len(day)) == (4, 2, 2)

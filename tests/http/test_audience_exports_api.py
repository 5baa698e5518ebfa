"""Audience exports through the real app, on both stores: consent gates who is in, the manifest
names the ledger record that let each subject out, a partner file holds hashes only, the
transfer gate refuses an unregistered processor, bad input names its field, workspaces are
apart, and the export is in the audit trail."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from consentry.platform import audit, tenancy
from consentry.platform.db import Database
from tests.conftest import new_workspace
from tests.consent.support import choose
from tests.support.segment import bearer, identify
from tests.support.store import profile_of, send

ADS = "marketing.advertising.third_party"
BASE = "/v1/audiences/exports"


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Shop:
    ids: dict[str, str]  # name -> unified profile id
    records: dict[str, str]  # name -> the ledger record of the deciding state
    member: str  # a second profile id of "ana" (merged into her)


def person(db: Database, workspace: str, user: str, **traits: Any) -> str:
    send(db, workspace, identify(userId=user, traits=traits))
    return profile_of(db, workspace, user_id=user).id


def make_shop(db: Database, workspace: str) -> Shop:
    """Subjects of each consent outcome for third-party advertising."""
    ids = {
        "ana": person(
            db,
            workspace,
            "u-ana",
            email=" Ana.Berg@Example.com ",
            phone="+49 151 12345678",
            first_name="Ana",
            last_name="Berg",
            address={"country": "DE", "postal_code": "10115"},
        ),
        "ben": person(db, workspace, "u-ben", email="ben@example.de", country="DE"),
        "cy": person(
            db, workspace, "u-cy", email="cy@example.com", phone="(415) 555-0123", country="US"
        ),
        "dee": person(db, workspace, "u-dee", email="dee@example.com", country="US"),
        "eve": person(db, workspace, "u-eve", first_name="Eve", country="DE"),
    }
    records = {
        "ana": choose(db, workspace, ids["ana"], "granted", purpose=ADS, channel="any").id,
        "eve": choose(db, workspace, ids["eve"], "granted", purpose=ADS, channel="any").id,
    }
    choose(db, workspace, ids["dee"], "granted", purpose=ADS, channel="any", minutes=1)
    choose(db, workspace, ids["dee"], "withdrawn", purpose=ADS, channel="any", minutes=2)
    # an anonymous visitor who later logs in as ana: a member of her unified profile
    send(db, workspace, identify(anonymousId="anon-ana", traits={"plan": "gold"}))
    member = profile_of(db, workspace, anonymous_id="anon-ana").id
    send(db, workspace, identify(userId="u-ana", anonymousId="anon-ana"))
    assert profile_of(db, workspace, user_id="u-ana").id == ids["ana"]
    return Shop(ids, records, member)


@pytest.fixture
def shop(db: Database, workspace: str) -> Shop:
    return make_shop(db, workspace)


@pytest.fixture
def auth(admin_token: str) -> dict[str, str]:
    return bearer(admin_token)


def register_processor(client: TestClient, auth: dict[str, str], **changes: Any) -> str:
    body = {
        "name": "Google Ads",
        "kind": "destination",
        "contact": "privacy@ads.example",
        "purposes": [ADS],
        "categories": ["user.contact", "user.name"],
        "transfer_country": "IE",
    }
    made = client.post("/v1/privacy/processors", json={**body, **changes}, headers=auth)
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


def export(client: TestClient, auth: dict[str, str], **body: Any) -> Any:
    return client.post(BASE, json={"purpose": ADS, "channel": "any", **body}, headers=auth)


def test_download_is_consent_gated_and_the_manifest_names_the_ledger_records(
    client: TestClient, db: Database, workspace: str, auth: dict[str, str], shop: Shop
) -> None:
    asked = [*shop.ids.values(), shop.member, "not-a-profile"]
    response = export(client, auth, profile_ids=asked, fields=["profile_id", "email", "phone"])
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    export_id = response.headers["x-consentry-export-id"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    by_id = {r["profile_id"]: r for r in rows}
    # DE with a grant: in; DE without: out (opt-in); US without: in (opt-out default);
    # US withdrawn: out; ana's second id: the same person, once
    ids = shop.ids
    assert set(by_id) == {ids["ana"], ids["cy"], ids["eve"]}
    assert by_id[ids["ana"]]["email"] == "ana.berg@example.com"  # internal: raw, normalised
    assert by_id[ids["ana"]]["phone"] == "+4915112345678"
    assert by_id[ids["cy"]]["phone"] == "+14155550123"
    assert by_id[ids["eve"]]["email"] == ""

    summary = client.get(f"{BASE}/{export_id}", headers=auth).json()
    assert summary["status"] == "completed" and summary["subjects"] == 3
    assert summary["left_out"] == {
        "duplicate": 1,
        "no_consent": 1,
        "unknown_profile": 1,
        "withdrawn": 1,
    }
    assert summary["summary"] == {"k": 10, "subjects": {"suppressed": True}, "by": {}}

    page = client.get(f"{BASE}/{export_id}/manifest", headers=auth).json()
    entries = {e["profile_id"]: e for e in page["entries"]}
    assert entries[ids["ana"]]["record_id"] == shop.records["ana"]
    assert (entries[ids["ana"]]["reason"], entries[ids["ana"]]["regime"]) == ("granted", "opt_in")
    assert entries[ids["eve"]]["record_id"] == shop.records["eve"]
    assert entries[ids["cy"]] | {"seq": 0} == {
        "seq": 0,
        "profile_id": ids["cy"],
        "record_id": None,
        "reason": "opt_out_regime_default",
        "regime": "opt_out",
    }
    with db.read() as session:
        trail = audit.entries(session=session, workspace_id=workspace, target_id=export_id)
    assert [e.action for e in trail] == ["audience.export", "audience_export.manifest"]
    assert trail[0].details["mode"] == "download" and trail[0].details["audience"] == 7


def test_with_the_grant_withdrawn_a_subject_leaves_the_next_export(
    client: TestClient, db: Database, workspace: str, auth: dict[str, str], shop: Shop
) -> None:
    first = export(client, auth, profile_ids=[shop.ids["ana"]], fields=["profile_id"])
    assert first.text.splitlines()[1:] == [shop.ids["ana"]]
    choose(db, workspace, shop.ids["ana"], "withdrawn", purpose=ADS, channel="any", minutes=5)
    again = export(client, auth, profile_ids=[shop.ids["ana"]], fields=["profile_id"])
    assert again.text.splitlines() == ["profile_id"]
    found = client.get(f"{BASE}/{again.headers['x-consentry-export-id']}", headers=auth).json()
    assert found["left_out"] == {"withdrawn": 1} and found["subjects"] == 0


@pytest.mark.parametrize("platform", ["google", "meta", "generic"])
def test_a_partner_file_holds_hashes_never_a_raw_identifier(
    client: TestClient, auth: dict[str, str], shop: Shop, platform: str
) -> None:
    processor = register_processor(client, auth)
    response = export(
        client,
        auth,
        mode="partner",
        platform=platform,
        processor_id=processor,
        profile_ids=list(shop.ids.values()),
        fields=["email", "phone", "first_name", "country"],
        format="json",
    )
    assert response.status_code == 200, response.text
    raw = response.content
    for value in (
        b"Ana.Berg@Example.com",
        b"ana.berg@example.com",
        b"cy@example.com",
        b"4915112345678",
        b"15112345678",
        b"4155550123",
        b"555-0123",
        b"Ana",
        b"ana",
    ):
        assert value not in raw, value
    doc = json.loads(raw)
    assert doc["manifest"]["subjects"] == 2  # eve has no email or phone: nothing to match
    assert doc["manifest"]["left_out"]["no_identifier"] == 1
    rows = doc["rows"]
    email_column, phone_column = doc["columns"][:2]
    emails = {r[email_column] for r in rows}
    assert digest("ana.berg@example.com") in emails and digest("cy@example.com") in emails
    phones = {r[phone_column] for r in rows}
    if platform == "meta":
        assert doc["columns"] == ["EMAIL", "PHONE", "FN", "COUNTRY"]
        assert digest("4915112345678") in phones and digest("14155550123") in phones
        assert {r["COUNTRY"] for r in rows} == {digest("de"), digest("us")}
    else:
        assert digest("+4915112345678") in phones and digest("+14155550123") in phones
    if platform == "google":
        assert doc["columns"] == ["Email", "Phone", "First Name", "Country"]
        assert {r["Country"] for r in rows} == {"DE", "US"}  # Google takes country in clear
        assert {r["First Name"] for r in rows} == {digest("ana"), None}


def test_a_refused_transfer_is_a_403_naming_the_reasons(
    client: TestClient, auth: dict[str, str], shop: Shop
) -> None:
    body = {"mode": "partner", "profile_ids": [shop.ids["ana"]], "fields": ["email", "phone"]}
    unregistered = export(client, auth, processor_id="no-such-processor", **body)
    assert unregistered.status_code == 403
    assert unregistered.json()["code"] == "transfer_refused"
    assert any(e["field"] == "processor_id" for e in unregistered.json()["errors"])
    emails_only = register_processor(
        client, auth, name="Mail partner", categories=["user.contact.email"]
    )
    narrow = export(client, auth, processor_id=emails_only, **body)
    assert narrow.status_code == 403
    assert "user.contact.phone_number" in narrow.text
    other_purpose = register_processor(client, auth, name="Email tool", purposes=["analytics"])
    wrong = export(client, auth, processor_id=other_purpose, **body)
    assert wrong.status_code == 403 and ADS in wrong.text
    assert client.get(BASE, headers=auth).json()["exports"] == []  # nothing was started


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"mode": "everything"}, "mode"),
        ({"purpose": "marketing.unknown"}, "purpose"),
        ({"channel": "pigeon"}, "channel"),
        ({"mode": "partner", "processor_id": "p", "fields": ["traits.plan"]}, "fields[0]"),
        ({"fields": ["email", "shoe_size"]}, "fields[1]"),
        ({"processor_id": "p"}, "processor_id"),
        ({"mode": "partner", "fields": ["email"]}, "processor_id"),
        ({"format": "xlsx"}, "format"),
        ({"k": 3}, "k"),
        ({"summary_by": ["email"]}, "summary_by[0]"),
        ({"profile_ids": None}, "segment_id"),
        ({"profile_ids": []}, "profile_ids"),
        ({"segment_id": "s1"}, "segment_id"),
        ({"unexpected": 1}, "unexpected"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(
    client: TestClient, auth: dict[str, str], body: dict[str, Any], field: str
) -> None:
    payload = {"purpose": ADS, "channel": "any", "profile_ids": ["p1"], **body}
    response = client.post(BASE, json=payload, headers=auth)
    assert response.status_code == 400, response.text
    assert field in [e["field"] for e in response.json()["errors"]]


def test_an_unknown_segment_is_a_404(client: TestClient, auth: dict[str, str]) -> None:
    response = client.post(
        BASE, json={"purpose": ADS, "channel": "any", "segment_id": "nope"}, headers=auth
    )
    assert response.status_code == 404


def test_another_workspace_sees_nothing(
    client: TestClient, db: Database, auth: dict[str, str], shop: Shop
) -> None:
    made = export(client, auth, profile_ids=list(shop.ids.values()), fields=["profile_id"])
    export_id = made.headers["x-consentry-export-id"]
    other = new_workspace(db)
    with db.write() as session:
        secret = tenancy.issue_key(
            session=session, workspace_id=other, kind="token", name="o", role=tenancy.Role.ADMIN
        ).secret
    theirs = bearer(secret)
    assert client.get(f"{BASE}/{export_id}", headers=theirs).status_code == 404
    assert client.get(f"{BASE}/{export_id}/manifest", headers=theirs).status_code == 404
    assert client.get(BASE, headers=theirs).json()["exports"] == []
    # our profile ids mean nothing there
    crossed = export(client, theirs, profile_ids=list(shop.ids.values()), fields=["profile_id"])
    assert crossed.text.splitlines() == ["profile_id"]
    found = client.get(f"{BASE}/{crossed.headers['x-consentry-export-id']}", headers=theirs)
    assert found.json()["left_out"] == {"unknown_profile": 5}


def test_an_analyst_may_not_export(
    client: TestClient, db: Database, workspace: str, shop: Shop
) -> None:
    with db.write() as session:
        secret = tenancy.issue_key(
            session=session,
            workspace_id=workspace,
            kind="token",
            name="a",
            role=tenancy.Role.ANALYST,
        ).secret
    refused = export(client, bearer(secret), profile_ids=list(shop.ids.values()))
    assert refused.status_code == 403

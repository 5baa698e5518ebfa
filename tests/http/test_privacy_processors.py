"""The processor register through the real app, on both stores: CRUD, validation, scopes,
workspace isolation, the transfer check and the record of processing activities (JSON, CSV)."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from fastapi.testclient import TestClient

from consentry.platform import tenancy
from consentry.platform.db import Database
from tests.conftest import new_workspace
from tests.support.segment import bearer

EMAIL = "marketing.communications.email"
ADS = "marketing.advertising.third_party"
BASE = "/v1/privacy/processors"
CHECK = {"purpose": EMAIL, "categories": ["user.name"]}


def token(db: Database, workspace: str, role: tenancy.Role) -> dict[str, str]:
    with db.write() as session:
        issued = tenancy.issue_key(
            session=session, workspace_id=workspace, kind="token", name=role.value, role=role
        )
    return bearer(issued.secret)


def mailchimp(**changes: Any) -> dict[str, Any]:
    body = {
        "name": "Mailchimp",
        "kind": "processor",
        "contact": "privacy@mailchimp.example",
        "purposes": [EMAIL],
        "categories": ["user.contact.email", "user.name"],
        "transfer_country": "US",
        "transfer_safeguard": "scc",
        "dpa_signed_on": "2024-01-10",
        "retention": "deleted 30 days after the contract ends",
        "erasure_webhook_url": "https://hooks.mailchimp.example/erase",
    }
    return {**body, **changes}


def create(client: TestClient, auth: dict[str, str], **changes: Any) -> dict[str, Any]:
    made = client.post(BASE, json=mailchimp(**changes), headers=auth)
    assert made.status_code == 201, made.text
    return dict(made.json())


@pytest.fixture
def auth(admin_token: str) -> dict[str, str]:
    return bearer(admin_token)


def test_register_read_change_and_deactivate(client: TestClient, auth: dict[str, str]) -> None:
    made = create(client, auth, transfer_country=" us ")
    assert made["version"] == 1 and made["transfer_country"] == "US"
    assert made["third_country_transfer"] is True and made["adequacy"] is False
    read = client.get(f"{BASE}/{made['id']}", headers=auth)
    assert read.status_code == 200 and read.json() == made

    changed = client.patch(
        f"{BASE}/{made['id']}",
        json={"categories": ["user.contact"], "erasure_webhook_url": None},
        headers=auth,
    )
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert body["version"] == 2 and body["categories"] == ["user.contact"]
    assert body["erasure_webhook_url"] is None and body["name"] == "Mailchimp"

    gone = client.delete(f"{BASE}/{made['id']}", headers=auth)
    assert gone.status_code == 200 and gone.json()["active"] is False
    listed = client.get(BASE, headers=auth).json()["processors"]
    assert [(p["id"], p["active"]) for p in listed] == [(made["id"], False)]
    assert client.get(BASE, params={"active": True}, headers=auth).json()["processors"] == []
    history = client.get(f"{BASE}/{made['id']}/history", headers=auth).json()["versions"]
    assert [(v["version"], v["change"]) for v in history] == [
        (1, "registered"),
        (2, "updated"),
        (3, "deactivated"),
    ]
    assert history[0]["document"]["categories"] == ["user.contact.email", "user.name"]
    at_first = client.get(BASE, params={"at": history[0]["recorded_at"]}, headers=auth).json()
    assert [p["version"] for p in at_first["processors"]] == [1]

    back = client.patch(f"{BASE}/{made['id']}", json={"active": True}, headers=auth).json()
    assert back["active"] is True and back["version"] == 4


def test_bad_input_names_each_field(client: TestClient, auth: dict[str, str]) -> None:
    sent = client.post(
        BASE,
        json=mailchimp(
            kind="vendor",
            purposes=[EMAIL, "newsletter.weekly"],
            categories=["user.contact.email", "user.password"],
            transfer_country="XX",
            erasure_webhook_url="http://hooks.example.com/erase",
        ),
        headers=auth,
    )
    assert sent.status_code == 400
    body = sent.json()
    assert body["code"] == "invalid"
    assert sorted(e["field"] for e in body["errors"]) == [
        "categories.1",
        "erasure_webhook_url",
        "kind",
        "purposes.1",
        "transfer_country",
    ]
    assert all(set(e) == {"index", "field", "reason"} for e in body["errors"])

    no_dpa = client.post(BASE, json=mailchimp(dpa_signed_on=None), headers=auth)
    assert [e["field"] for e in no_dpa.json()["errors"]] == ["dpa_signed_on"]
    no_safeguard = client.post(BASE, json=mailchimp(transfer_safeguard=None), headers=auth)
    assert [e["field"] for e in no_safeguard.json()["errors"]] == ["transfer_safeguard"]
    shape = client.post(BASE, json={"name": "x", "extra": 1}, headers=auth)
    assert shape.status_code == 400
    fields = {e["field"] for e in shape.json()["errors"]}
    assert {"kind", "purposes", "categories", "transfer_country", "extra"} <= fields
    bad_date = client.post(BASE, json=mailchimp(dpa_signed_on="10/01/2024"), headers=auth)
    assert [e["field"] for e in bad_date.json()["errors"]] == ["dpa_signed_on"]

    made = create(client, auth)
    bad_patch = client.patch(f"{BASE}/{made['id']}", json={"name": None}, headers=auth)
    assert bad_patch.status_code == 400
    assert [e["field"] for e in bad_patch.json()["errors"]] == ["name"]
    taken = client.post(BASE, json=mailchimp(name="MAILCHIMP"), headers=auth)
    assert taken.status_code == 409 and taken.json()["errors"][0]["field"] == "name"
    bad_check = client.post(
        f"{BASE}/{made['id']}/check", json={"purpose": EMAIL, "categories": []}, headers=auth
    )
    assert bad_check.status_code == 400
    assert [e["field"] for e in bad_check.json()["errors"]] == ["categories"]


def test_a_marketer_may_neither_read_nor_change_the_register(
    client: TestClient, db: Database, workspace: str, auth: dict[str, str]
) -> None:
    made = create(client, auth)
    marketer = token(db, workspace, tenancy.Role.MARKETER)
    writes = [
        client.post(BASE, json=mailchimp(name="Other"), headers=marketer),
        client.patch(f"{BASE}/{made['id']}", json={"contact": "x"}, headers=marketer),
        client.delete(f"{BASE}/{made['id']}", headers=marketer),
        client.post(
            f"{BASE}/{made['id']}/check",
            json={"purpose": EMAIL, "categories": ["user.name"]},
            headers=marketer,
        ),
    ]
    assert [r.status_code for r in writes] == [403] * 4
    assert all(r.json()["code"] == "forbidden" for r in writes)
    assert client.get(BASE, headers=marketer).status_code == 403
    assert client.get("/v1/privacy/ropa", headers=marketer).status_code == 403
    assert client.get(BASE).status_code == 401
    officer = token(db, workspace, tenancy.Role.PRIVACY_OFFICER)
    assert client.post(BASE, json=mailchimp(name="Klaviyo"), headers=officer).status_code == 201
    listed = client.get(BASE, headers=auth).json()["processors"]
    assert [p["name"] for p in listed] == ["Klaviyo", "Mailchimp"]
    assert client.get(f"{BASE}/{made['id']}", headers=auth).json()["version"] == 1


def test_another_workspace_s_processor_is_a_404(
    client: TestClient, db: Database, auth: dict[str, str]
) -> None:
    made = create(client, auth)
    other = token(db, new_workspace(db), tenancy.Role.ADMIN)
    path = f"{BASE}/{made['id']}"
    answers = [
        client.get(path, headers=other),
        client.patch(path, json={"contact": "x"}, headers=other),
        client.delete(path, headers=other),
        client.get(f"{path}/history", headers=other),
        client.post(f"{path}/check", json=CHECK, headers=other),
    ]
    assert [r.status_code for r in answers] == [404] * 5
    assert client.get(BASE, headers=other).json() == {"processors": []}
    activities = client.get("/v1/privacy/ropa", headers=other).json()["activities"]
    assert all(a["recipients"] == [] for a in activities)
    assert client.get(path, headers=auth).json()["active"] is True  # untouched


def test_the_check_allows_or_refuses_with_reasons(client: TestClient, auth: dict[str, str]) -> None:
    made = create(client, auth, categories=["user.contact", "user.name"])
    path = f"{BASE}/{made['id']}/check"
    allowed = client.post(
        path,
        json={"purpose": EMAIL, "categories": ["user.contact.email", "user.name"]},
        headers=auth,
    )
    assert allowed.status_code == 200, allowed.text
    assert allowed.json() == {
        "allowed": True,
        "processor_id": made["id"],
        "processor_version": 1,
        "purpose": EMAIL,
        "categories": ["user.contact.email", "user.name"],
    }
    refused = client.post(
        path, json={"purpose": ADS, "categories": ["user.name", "user.behavior"]}, headers=auth
    )
    assert refused.status_code == 403
    body = refused.json()
    assert body["code"] == "transfer_refused"
    assert [e["field"] for e in body["errors"]] == ["purpose", "categories.1"]
    assert ADS in body["errors"][0]["reason"] and "user.behavior" in body["errors"][1]["reason"]

    client.delete(f"{BASE}/{made['id']}", headers=auth)
    inactive = client.post(path, json={"purpose": EMAIL, "categories": ["user.name"]}, headers=auth)
    assert inactive.status_code == 403
    assert [e["field"] for e in inactive.json()["errors"]] == ["active"]


def test_the_ropa_lists_what_was_registered(client: TestClient, auth: dict[str, str]) -> None:
    create(client, auth)
    meta = create(
        client,
        auth,
        name='=HYPERLINK("http://evil.example")',
        kind="destination",
        contact=None,
        purposes=[EMAIL, ADS],
        categories=["user.device.ip_address", "user.behavior"],
        transfer_country="IE",
        transfer_safeguard=None,
        dpa_signed_on=None,
        retention='-1 day, then "purged"',
        erasure_webhook_url=None,
    )
    create(client, auth, name="Old ESP", transfer_country="DE", transfer_safeguard=None)
    client.delete(f"{BASE}/{create(client, auth, name='Gone')['id']}", headers=auth)

    document = client.get("/v1/privacy/ropa", params={"format": "json"}, headers=auth).json()
    by_purpose = {a["purpose"]: a for a in document["activities"]}
    email = by_purpose[EMAIL]
    assert [r["name"] for r in email["recipients"]] == [meta["name"], "Mailchimp", "Old ESP"]
    assert email["data_categories"] == [
        "user.name",
        "user.contact.email",
        "user.device.ip_address",
        "user.behavior",
    ]
    assert email["third_country_transfers"] == [
        {"recipient": "Mailchimp", "country": "US", "safeguard": "scc"}
    ]
    assert [r["name"] for r in by_purpose[ADS]["recipients"]] == [meta["name"]]
    assert by_purpose["analytics"]["recipients"] == []

    sent = client.get("/v1/privacy/ropa", params={"format": "csv"}, headers=auth)
    assert sent.status_code == 200
    assert sent.headers["content-type"].startswith("text/csv")
    assert "attachment" in sent.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(sent.text, newline="")))
    assert [r["purpose"] for r in rows] == [a["purpose"] for a in document["activities"]]
    row = {r["purpose"]: r for r in rows}[EMAIL]
    assert row["recipients"] == (
        f"'{meta['name']} (destination); Mailchimp (processor); Old ESP (processor)"
    )
    assert row["data_categories"] == "; ".join(email["data_categories"])
    assert row["third_country_transfers"] == "Mailchimp: US (scc)"
    assert row["dpa_dates"] == (
        f"'{meta['name']}: none; Mailchimp: 2024-01-10; Old ESP: 2024-01-10"
    )
    assert row["retention"].startswith(f'\'{meta["name"]}: -1 day, then "purged"; Mailchimp: ')
    assert {r["purpose"]: r for r in rows}[ADS]["recipients"] == f"'{meta['name']} (destination)"
    bad = client.get("/v1/privacy/ropa", params={"format": "xlsx"}, headers=auth)
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "format"


def test_the_vocabulary_is_published(client: TestClient, auth: dict[str, str]) -> None:
    found = client.get("/v1/privacy/data-categories", headers=auth).json()
    keys = [c["key"] for c in found["categories"]]
    assert "user.contact.email" in keys and "user.derived" in keys
    assert "scc" in [s["key"] for s in found["safeguards"]]

"""The journeys API through the real app, on both stores: build, activate, run a round, read
stats and a profile's enrollments; bad definitions as 400s naming the field; scopes; and
workspace isolation."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from consentry.platform import tenancy
from consentry.platform.db import Database, utcnow
from tests.conftest import new_workspace
from tests.support.delivery import EMAIL_PURPOSE, destination, grant, person, processor
from tests.support.segment import bearer, track
from tests.support.store import send

BASE = "/v1/journeys"
TEMPLATE = {
    "subject": "Your cart, {{ profile.first_name or 'friend' }}",
    "text": "Come back. Unsubscribe: {{ unsubscribe_url }}",
}


def _token(db: Database, workspace: str, role: tenancy.Role) -> dict[str, str]:
    with db.write() as session:
        issued = tenancy.issue_key(
            session=session, workspace_id=workspace, kind="token", name=role.value, role=role
        )
    return bearer(issued.secret)


def _journey(destination_id: str, **changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": "Abandoned cart",
        "description": "Remind people of what they left",
        "trigger": {"type": "event", "event": "Checkout Started"},
        "exit_on": {"event": "Order Completed"},
        "steps": [
            {"id": "wait", "type": "wait", "hours": 1},
            {
                "id": "mail",
                "type": "email",
                "destination_id": destination_id,
                "purpose": EMAIL_PURPOSE,
                "template": TEMPLATE,
            },
        ],
    }
    doc.update(changes)
    return doc


@pytest.fixture
def mail_destination(db: Database, workspace: str) -> str:
    return destination(db, workspace, processor(db, workspace)).destination.id


def test_build_activate_run_and_watch_a_journey(
    client: TestClient, db: Database, workspace: str, admin_token: str, mail_destination: str
) -> None:
    auth = bearer(admin_token)
    made = client.post(BASE, json=_journey(mail_destination), headers=auth)
    assert made.status_code == 201, made.text
    journey = made.json()
    assert journey["status"] == "draft" and journey["version"] == 1
    jid = journey["id"]
    assert client.get(f"{BASE}/{jid}", headers=auth).json()["definition"]["steps"][0] == {
        "id": "wait",
        "type": "wait",
        "hours": 1,
    }
    assert client.post(f"{BASE}/{jid}/activate", headers=auth).json()["status"] == "active"
    listed = client.get(BASE, headers=auth).json()["journeys"]
    assert [j["id"] for j in listed] == [jid]

    pid = person(db, workspace, "u1", email="u1@example.com", first_name="Lin")
    grant(db, workspace, pid)
    now = utcnow()
    send(db, workspace, track("Checkout Started", userId="u1", timestamp=now.isoformat()))
    midday = now.replace(hour=12, minute=0) + timedelta(days=1 if now.hour >= 12 else 0)
    first = client.post(f"{BASE}/run", params={"now": midday.isoformat()}, headers=auth)
    assert first.status_code == 200, first.text
    assert first.json()["triggers"]["enrolled"] == 1
    later = client.post(
        f"{BASE}/run", params={"now": (midday + timedelta(hours=2)).isoformat()}, headers=auth
    ).json()
    assert later["sent"] == 1, later

    stats = client.get(f"{BASE}/{jid}/stats", headers=auth).json()
    assert stats["entered"] == 1 and stats["completed"] == 1 and stats["sent"] == 1
    assert stats["steps"][1]["step"] == "mail" and stats["steps"][1]["sent"] == 1
    page = client.get(f"{BASE}/{jid}/enrollments", headers=auth).json()
    assert [e["profile_id"] for e in page["enrollments"]] == [pid]
    mine = client.get(f"{BASE}/profiles/{pid}/enrollments", headers=auth).json()
    (enrollment,) = mine["enrollments"]
    assert enrollment["status"] == "completed"
    assert [s["outcome"] for s in enrollment["steps"]] == ["sent"]
    audit = client.get("/v1/audit", params={"action": "journey.enrollments.read"}, headers=auth)
    assert audit.status_code == 200 and audit.json()["entries"], audit.text

    changed = client.put(
        f"{BASE}/{jid}", json=_journey(mail_destination, name="Cart"), headers=auth
    )
    assert changed.status_code == 200 and changed.json()["version"] == 2
    old = client.get(f"{BASE}/{jid}/versions/1", headers=auth).json()["definition"]
    assert old["name"] == "Abandoned cart"
    assert client.post(f"{BASE}/{jid}/pause", headers=auth).json()["status"] == "paused"
    assert client.post(f"{BASE}/{jid}/archive", headers=auth).json()["status"] == "archived"
    assert client.get(BASE, headers=auth).json()["journeys"] == []
    refused = client.post(f"{BASE}/{jid}/activate", headers=auth)
    assert refused.status_code == 409


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"steps": [{"id": "wait", "type": "wait", "hours": -1}]}, "steps[0].hours"),
        ({"steps": [{"id": "w", "type": "wait", "hours": 99999}]}, "steps[0].hours"),
        (
            {"steps": [{"id": "w", "type": "wait", "hours": 1, "next": "nowhere"}]},
            "steps[0].next",
        ),
        ({"trigger": {"type": "sometimes"}}, "trigger.type"),
        ({"trigger": {"type": "inactivity"}}, "trigger.days"),
        ({"name": ""}, "name"),
        ({"steps": []}, "steps"),
        ({"colour": "blue"}, "colour"),
        (
            {
                "steps": [
                    {
                        "id": "s",
                        "type": "split",
                        "holdout_percent": 80,
                        "variants": [{"name": "A", "weight": 1, "next": "end"}],
                    }
                ]
            },
            "steps[0].holdout_percent",
        ),
        (
            {
                "steps": [
                    {
                        "id": "s",
                        "type": "split",
                        "variants": [{"name": "A", "weight": 0, "next": "end"}],
                    }
                ]
            },
            "steps[0].variants[0].weight",
        ),
        (
            {
                "steps": [
                    {"id": "a", "type": "update_trait", "trait": "x", "value": 1, "next": "b"},
                    {"id": "b", "type": "update_trait", "trait": "y", "value": 2, "next": "a"},
                ]
            },
            "steps[0].id",
        ),
        (
            {"steps": [{"id": "t", "type": "update_trait", "trait": "email", "value": "x"}]},
            "steps[0].trait",
        ),
    ],
)
def test_a_bad_definition_is_a_400_naming_the_field(
    client: TestClient, admin_token: str, mail_destination: str, change: dict[str, Any], field: str
) -> None:
    response = client.post(
        BASE, json=_journey(mail_destination, **change), headers=bearer(admin_token)
    )
    assert response.status_code == 400, response.text
    assert field in [e["field"] for e in response.json()["errors"]], response.json()


def test_store_checks_name_the_step_field(
    client: TestClient, db: Database, workspace: str, admin_token: str, mail_destination: str
) -> None:
    auth = bearer(admin_token)
    bad = _journey(mail_destination)
    mail = bad["steps"][1]
    mail["template"] = {"subject": "Hello", "text": "no way to opt out here"}
    mail["purpose"] = "marketing.communications.sms"
    response = client.post(BASE, json=bad, headers=auth)
    assert response.status_code == 400
    fields = {e["field"] for e in response.json()["errors"]}
    assert fields == {"steps[1].template.text", "steps[1].purpose"}, fields
    mail["template"] = {"subject": "{{ profile.first_name", "text": TEMPLATE["text"]}
    mail["purpose"] = EMAIL_PURPOSE
    response = client.post(BASE, json=bad, headers=auth)
    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == ["steps[1].template.subject"]

    unknown = _journey("no-such-destination")
    response = client.post(BASE, json=unknown, headers=auth)
    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == ["steps[1].destination_id"]

    hooks = destination(
        db,
        workspace,
        processor(db, workspace, "Hooks"),
        name="Hook",
        kind="webhook",
        url="https://hooks.example/in",
        categories=("user.unique_id",),
        channel="email",
    ).destination.id
    wrong_kind = _journey(hooks)
    response = client.post(BASE, json=wrong_kind, headers=auth)
    assert response.status_code == 400
    assert "steps[1].destination_id" in {e["field"] for e in response.json()["errors"]}

    assert client.post(BASE, json=_journey(mail_destination), headers=auth).status_code == 201
    taken = client.post(BASE, json=_journey(mail_destination), headers=auth)
    assert taken.status_code == 409 and taken.json()["errors"][0]["field"] == "name"
    assert client.post(BASE, content=b"[1, 2]", headers=auth).status_code == 400


def test_scopes_and_workspace_isolation(
    client: TestClient, db: Database, workspace: str, admin_token: str, mail_destination: str
) -> None:
    auth = bearer(admin_token)
    jid = client.post(BASE, json=_journey(mail_destination), headers=auth).json()["id"]
    analyst = _token(db, workspace, tenancy.Role.ANALYST)
    assert client.get(f"{BASE}/{jid}/stats", headers=analyst).status_code == 200
    assert client.post(f"{BASE}/{jid}/activate", headers=analyst).status_code == 403
    assert client.post(f"{BASE}/run", headers=analyst).status_code == 403
    support = _token(db, workspace, tenancy.Role.SUPPORT)
    assert client.get(BASE, headers=support).status_code == 403
    assert client.get(BASE).status_code == 401

    other = new_workspace(db)
    stranger = _token(db, other, tenancy.Role.ADMIN)
    assert client.get(f"{BASE}/{jid}", headers=stranger).status_code == 404
    assert client.get(f"{BASE}/{jid}/stats", headers=stranger).status_code == 404
    assert client.post(f"{BASE}/{jid}/activate", headers=stranger).status_code == 404
    put = client.put(f"{BASE}/{jid}", json=_journey(mail_destination), headers=stranger)
    assert put.status_code == 404
    assert client.get(BASE, headers=stranger).json()["journeys"] == []
    # the other workspace cannot use this workspace's destination either
    response = client.post(BASE, json=_journey(mail_destination), headers=stranger)
    assert response.status_code == 400
    assert "steps[1].destination_id" in {e["field"] for e in response.json()["errors"]}

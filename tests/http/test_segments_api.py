"""The segments and computed-traits API through the real app, on both stores: define,
preview, list, members (audited), history, refresh, update, delete, scopes, bad input."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient

from consentry.config import Settings
from consentry.platform import audit, tenancy
from consentry.platform.db import Database, utcnow
from tests.support.segment import bearer, identify, track
from tests.support.store import profile_of, send

BASE = "/v1/segments"
GOLD = {"trait": "plan", "op": "eq", "value": "gold"}


def _token(db: Database, workspace: str, role: tenancy.Role) -> dict[str, str]:
    with db.write() as session:
        issued = tenancy.issue_key(
            session=session, workspace_id=workspace, kind="token", name=role.value, role=role
        )
    return bearer(issued.secret)


def test_define_preview_and_follow_a_segment(
    client: TestClient, db: Database, workspace: str, admin_token: str
) -> None:
    auth = bearer(admin_token)
    recent = (utcnow() - timedelta(hours=1)).isoformat()
    send(
        db,
        workspace,
        identify(userId="g", traits={"plan": "gold"}),
        identify(userId="s", traits={"plan": "silver"}),
        track("Product Viewed", userId="g", timestamp=recent),
    )
    gold = profile_of(db, workspace, user_id="g").id

    seen = client.post(f"{BASE}/preview", json={"rule": GOLD}, headers=auth)
    assert seen.status_code == 200, seen.text
    assert seen.json() == {
        "count": 1,
        "sample": [gold],
        "text": 'plan = "gold"',
        "kinds": ["traits"],
    }

    made = client.post(BASE, json={"name": "Gold", "rule": GOLD}, headers=auth)
    assert made.status_code == 201, made.text
    segment = made.json()
    assert segment["member_count"] == 1 and segment["refresh"]["entered"] == 1
    sid = segment["id"]
    listed = client.get(BASE, headers=auth).json()["segments"]
    assert [(s["name"], s["member_count"]) for s in listed] == [("Gold", 1)]
    assert client.get(f"{BASE}/{sid}", headers=auth).json()["text"] == 'plan = "gold"'

    page = client.get(
        f"{BASE}/{sid}/members", headers={**auth, "X-Consentry-Reason": "campaign check"}
    )
    assert page.status_code == 200 and [m["profile_id"] for m in page.json()["members"]] == [gold]
    with db.read() as session:
        entries = audit.entries(session=session, workspace_id=workspace, action="segment.members")
    assert [(e.target_id, e.reason) for e in entries] == [(gold, "campaign check")]

    send(db, workspace, identify(userId="s", traits={"plan": "gold"}))
    refreshed = client.post(f"{BASE}/refresh", headers=auth)
    assert refreshed.status_code == 200 and refreshed.json()["entered"] == 1
    changed = client.put(
        f"{BASE}/{sid}",
        json={"rule": {"all": [GOLD, {"event": "Product Viewed", "within_days": 1}]}},
        headers=auth,
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["member_count"] == 1 and changed.json()["refresh"]["exited"] == 1
    history = client.get(f"{BASE}/{sid}/history", headers=auth).json()["changes"]
    assert [c["entered"] for c in history] == [False, True, True]

    trait = client.post(
        "/v1/computed-traits",
        json={"name": "views", "op": "count", "event": "Product Viewed"},
        headers=auth,
    )
    assert trait.status_code == 201, trait.text
    listed_traits = client.get("/v1/computed-traits", headers=auth).json()
    assert [t["name"] for t in listed_traits["computed_traits"]] == ["views"]
    assert "total_spent" in {t["name"] for t in listed_traits["built_in"]}
    viewers = client.post(
        f"{BASE}/preview",
        json={"rule": {"computed": "views", "op": "eq", "value": 1}},
        headers=auth,
    )
    assert viewers.json()["sample"] == [gold]
    assert client.delete(f"{BASE}/{sid}", headers=auth).status_code == 204
    assert client.get(f"{BASE}/{sid}", headers=auth).status_code == 404
    assert client.delete("/v1/computed-traits/views", headers=auth).status_code == 204


def test_bad_input_is_a_4xx_naming_the_field(
    client: TestClient, db: Database, workspace: str, admin_token: str
) -> None:
    auth = bearer(admin_token)
    bad = client.post(
        BASE,
        json={
            "name": "x",
            "rule": {"all": [GOLD, {"event": "E", "count": {"op": "gte", "value": "2"}}]},
        },
        headers=auth,
    )
    assert bad.status_code == 400
    assert [e["field"] for e in bad.json()["errors"]] == ["rule.all[1].count.value"]
    personal = client.post(
        f"{BASE}/preview", json={"rule": {"trait": "email", "op": "exists"}}, headers=auth
    )
    assert personal.status_code == 400 and personal.json()["errors"][0]["field"] == "rule.trait"
    assert client.post(BASE, json={"name": "", "rule": GOLD}, headers=auth).status_code == 400
    assert client.post(BASE, json={"rule": GOLD}, headers=auth).status_code == 400
    assert client.post(BASE, json={"name": "a", "rule": GOLD}, headers=auth).status_code == 201
    assert client.post(BASE, json={"name": "a", "rule": GOLD}, headers=auth).status_code == 409
    assert client.get(f"{BASE}/nope", headers=auth).status_code == 404
    assert client.get(f"{BASE}/nope/members", headers=auth).status_code == 404
    trait = client.post(
        "/v1/computed-traits", json={"name": "Bad Name", "op": "sum", "event": "E"}, headers=auth
    )
    assert trait.status_code == 400
    assert {e["field"] for e in trait.json()["errors"]} == {"name", "property"}


def test_scopes(client: TestClient, db: Database, workspace: str) -> None:
    analyst = _token(db, workspace, tenancy.Role.ANALYST)
    assert client.get(BASE, headers=analyst).status_code == 200
    assert client.post(BASE, json={"name": "a", "rule": GOLD}, headers=analyst).status_code == 403
    assert client.get(BASE).status_code == 401


def test_the_schedule_refreshes_in_full_then_catches_up(
    db: Database, workspace: str, settings: Settings
) -> None:
    from consentry.api import _audiences_round
    from consentry.audiences import service as segments

    send(db, workspace, identify(userId="a", traits={"plan": "silver"}))
    with db.write() as session:
        made, _ = segments.create_segment(
            session=session, workspace_id=workspace, name="gold", rule=GOLD, actor="test"
        )
    _audiences_round(db, settings)  # no full refresh yet: one now
    with db.read() as session:
        first = segments.get_segment(session=session, workspace_id=workspace, segment_id=made.id)
    assert first.refreshed_at is not None and first.member_count == 0
    send(db, workspace, identify(userId="a", traits={"plan": "gold"}))
    _audiences_round(db, settings)  # the catch-up sees the identify
    with db.read() as session:
        again = segments.get_segment(session=session, workspace_id=workspace, segment_id=made.id)
        changes = segments.changes_after(session=session, workspace_id=workspace, after_id=0)
    assert again.member_count == 1 and again.refreshed_at == first.refreshed_at
    assert [c.entered for c in changes] == [True]

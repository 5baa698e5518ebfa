"""The dedupe API and the review page through the real app, on SQLite and PostgreSQL: runs,
the latest run, the review queue with both profiles and the explanation, approve and reject
(409 once decided), scopes, bad input, the audit trail, and the dashboard page's buttons."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from consentry.platform import audit, tenancy
from consentry.platform.db import Database
from tests.http.test_web_pages import csrf, issue_token, sign_in
from tests.identity.people import shop
from tests.support.segment import bearer
from tests.support.store import send


@pytest.fixture
def seeded(db: Database, workspace: str) -> dict[str, Any]:
    found = shop(200, duplicates=36, namesakes=10, seed=4)
    for start in range(0, len(found.messages), 200):
        send(db, workspace, *found.messages[start : start + 200])
    return found.traits


def run(client: TestClient, token: str, **body: Any) -> dict[str, Any]:
    response = client.post("/v1/identity/dedupe", json=body, headers=bearer(token))
    assert response.status_code == 200, response.text
    return dict(response.json())


def pending(client: TestClient, token: str, **params: Any) -> dict[str, Any]:
    response = client.get("/v1/identity/review", params=params, headers=bearer(token))
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_a_run_merges_queues_and_the_queue_shows_both_profiles(
    client: TestClient, admin_token: str, seeded: dict[str, Any], db: Database, workspace: str
) -> None:
    assert (
        client.get("/v1/identity/dedupe/runs/latest", headers=bearer(admin_token)).status_code
        == 404
    )
    dry = run(client, admin_token, dry_run=True)
    assert dry["dry_run"] is True and dry["auto_merged"] > 0
    assert pending(client, admin_token)["total"] == 0  # a dry run queues nothing
    report = run(client, admin_token)
    assert report["mode"] == "batch" and report["auto_merged"] > 0 and report["queued"] > 0
    latest = client.get("/v1/identity/dedupe/runs/latest", headers=bearer(admin_token)).json()
    assert latest["id"] == report["id"] and latest["model"]["fields"]
    queue = pending(client, admin_token, limit=5)
    assert queue["total"] == report["queued"] and 0 < len(queue["pairs"]) <= 5
    pair = queue["pairs"][0]
    assert 0.5 <= pair["probability"] < 0.95 and pair["status"] == "pending"
    assert pair["profiles"][0]["id"] == pair["profile_a"]
    shown = {k for side in pair["profiles"] for k, v in side.items() if v}
    assert {"id", "city"} <= shown
    fields = pair["explanation"]["fields"]
    assert all(set(f) == {"field", "level", "weight"} for f in fields)
    values = {str(v) for side in pair["profiles"] for k, v in side.items() if k != "id" and v}
    assert not values & {str(f["level"]) for f in fields}  # levels are labels, not values
    merged = pending(client, admin_token, status="merged", limit=200)
    assert merged["total"] == report["auto_merged"]
    assert all(p["merge_id"] for p in merged["pairs"])
    with db.read() as session:  # the review read is in the audit trail, under profile ids
        entries = audit.entries(session=session, workspace_id=workspace, action="identity.review")
    targets = {e.target_id for e in entries}
    assert {pair["profile_a"], pair["profile_b"]} <= targets


def test_approve_and_reject_are_recorded_and_a_second_decision_is_409(
    client: TestClient, admin_token: str, seeded: dict[str, Any]
) -> None:
    run(client, admin_token)
    pairs = pending(client, admin_token)["pairs"]
    yes, no = pairs[0], pairs[1]
    approved = client.post(f"/v1/identity/review/{yes['id']}/approve", headers=bearer(admin_token))
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "approved" and approved.json()["merge_id"]
    assert approved.json()["decided_by"].startswith("token:")
    profile = client.get(f"/v1/profiles/{yes['profile_b']}", headers=bearer(admin_token)).json()
    assert (
        profile["id"]
        == client.get(f"/v1/profiles/{yes['profile_a']}", headers=bearer(admin_token)).json()["id"]
    )
    assert any(m["id"] == approved.json()["merge_id"] for m in profile["merges"])
    rejected = client.post(
        f"/v1/identity/review/{no['id']}/reject",
        json={"note": "different birthdays on the receipts"},
        headers=bearer(admin_token),
    )
    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"
    for pid, action in ((yes["id"], "reject"), (no["id"], "approve"), (no["id"], "reject")):
        again = client.post(f"/v1/identity/review/{pid}/{action}", headers=bearer(admin_token))
        assert again.status_code == 409, again.text
    # undo the approved merge through the profiles API
    undo = client.post(
        f"/v1/merges/{approved.json()['merge_id']}/undo", headers=bearer(admin_token)
    )
    assert undo.status_code == 200
    statuses = {
        p["id"]: p["status"] for p in pending(client, admin_token, status="all", limit=200)["pairs"]
    }
    assert statuses[no["id"]] == "rejected"


def test_an_incremental_run_over_http(
    client: TestClient, admin_token: str, seeded: dict[str, Any]
) -> None:
    response = client.post(
        "/v1/identity/dedupe", json={"mode": "incremental"}, headers=bearer(admin_token)
    )
    assert response.status_code == 409  # no model yet
    run(client, admin_token)
    report = run(client, admin_token, mode="incremental")
    assert report["mode"] == "incremental" and report["scored"] == 0


def test_bad_input_and_missing_scopes_are_4xx(
    client: TestClient, admin_token: str, db: Database, workspace: str, seeded: dict[str, Any]
) -> None:
    h = bearer(admin_token)
    assert client.post("/v1/identity/dedupe", json={"mode": "often"}, headers=h).status_code == 400
    assert client.post("/v1/identity/dedupe", json={"extra": 1}, headers=h).status_code == 400
    bad = client.get("/v1/identity/review", params={"status": "maybe"}, headers=h)
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "status"
    assert client.get("/v1/identity/review", params={"limit": 0}, headers=h).status_code == 400
    assert client.post("/v1/identity/review/nope/approve", headers=h).status_code == 404
    assert client.post("/v1/identity/review/nope/reject", headers=h).status_code == 404
    assert client.get("/v1/identity/review").status_code == 401
    marketer = issue_token(db, workspace, tenancy.Role.MARKETER)  # profiles:read only
    assert client.get("/v1/identity/review", headers=bearer(marketer)).status_code == 200
    assert client.post("/v1/identity/dedupe", headers=bearer(marketer)).status_code == 403
    analyst = issue_token(db, workspace, tenancy.Role.ANALYST)  # no profiles:read
    assert client.get("/v1/identity/review", headers=bearer(analyst)).status_code == 403
    assert client.get("/v1/identity/dedupe/runs/latest", headers=bearer(analyst)).status_code == 403


def test_another_workspace_sees_nothing_and_cannot_decide(
    client: TestClient, admin_token: str, db: Database, seeded: dict[str, Any]
) -> None:
    run(client, admin_token)
    pair = pending(client, admin_token)["pairs"][0]
    other = f"ws-other-{pair['id'][:8]}"
    with db.write() as session:
        tenancy.create_workspace(session=session, workspace_id=other)
        theirs = tenancy.issue_key(
            session=session, workspace_id=other, kind="token", name="t", role=tenancy.Role.ADMIN
        ).secret
    assert pending(client, theirs)["total"] == 0
    for action in ("approve", "reject"):
        response = client.post(f"/v1/identity/review/{pair['id']}/{action}", headers=bearer(theirs))
        assert response.status_code == 404
    latest = client.get("/v1/identity/dedupe/runs/latest", headers=bearer(theirs))
    assert latest.status_code == 404


# --- the dashboard page -----------------------------------------------------------------------


_PAIR = re.compile(r'data-id="([0-9a-f-]{36})"')


def test_the_review_page_shows_pairs_and_its_buttons_decide(
    client: TestClient, admin_token: str, seeded: dict[str, Any]
) -> None:
    sign_in(client, admin_token)
    empty = client.get("/app/identity/review")
    assert empty.status_code == 200 and 'id="no-run"' in empty.text
    assert 'href="/app/identity/review"' in empty.text  # the nav link
    run(client, admin_token)
    page = client.get("/app/identity/review")
    assert page.status_code == 200
    ids = _PAIR.findall(page.text)
    assert ids and "<meter" in page.text and "Same person: merge" in page.text
    first = pending(client, admin_token)["pairs"][0]
    side = first["profiles"][0]
    assert side["city"] in page.text  # the values, as the profile page shows them
    token = csrf(client, "/app/identity/review")
    forged = client.post(f"/app/identity/review/{ids[0]}/approve", data={"csrf_token": "x" * 43})
    assert forged.status_code == 403
    done = client.post(
        f"/app/identity/review/{ids[0]}/approve", data={"csrf_token": token}, follow_redirects=False
    )
    assert done.status_code == 303 and done.headers["location"].endswith("done=approved")
    shown = client.get(done.headers["location"])
    assert 'id="done-note"' in shown.text and f'data-id="{ids[0]}"' not in shown.text
    rejected = client.post(
        f"/app/identity/review/{ids[1]}/reject", data={"csrf_token": token}, follow_redirects=False
    )
    assert rejected.status_code == 303
    again = client.post(f"/app/identity/review/{ids[1]}/reject", data={"csrf_token": token})
    assert again.status_code == 409 and "already decided" in again.text
    decided = client.get("/app/identity/review", params={"status": "rejected"})
    assert f'data-id="{ids[1]}"' in decided.text
    assert client.get("/app/identity/review", params={"status": "odd"}).status_code == 400
    unknown = client.post("/app/identity/review/x/maybe", data={"csrf_token": token})
    assert unknown.status_code == 400


def test_the_review_page_needs_a_sign_in_and_write_to_decide(
    client: TestClient, db: Database, workspace: str, admin_token: str, seeded: dict[str, Any]
) -> None:
    response = client.get("/app/identity/review", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/app/login"
    run(client, admin_token)
    sign_in(client, issue_token(db, workspace, tenancy.Role.MARKETER))
    page = client.get("/app/identity/review")
    assert page.status_code == 200 and "Same person: merge" not in page.text
    pair = _PAIR.findall(page.text)[0]
    token = csrf(client, "/app/identity/review")
    refused = client.post(f"/app/identity/review/{pair}/approve", data={"csrf_token": token})
    assert refused.status_code == 403

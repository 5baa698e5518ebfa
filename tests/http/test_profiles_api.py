"""Profile 360, search, timeline paging, merge and unmerge, roles and scopes, over HTTP."""

from __future__ import annotations

from fastapi.testclient import TestClient

from consentry.platform import tenancy
from consentry.platform.db import Database
from tests.support.segment import basic, bearer, identify, msg, track


def _post(client: TestClient, write_key: str, *messages: dict[str, object]) -> None:
    r = client.post("/v1/batch", json={"batch": list(messages)}, headers=basic(write_key))
    assert r.status_code == 200, r.text


def _token(db: Database, workspace: str, role: tenancy.Role) -> str:
    with db.write() as session:
        return tenancy.issue_key(
            session=session, workspace_id=workspace, kind="token", name=role.value, role=role
        ).secret


def _find(client: TestClient, token: str, **query: str) -> list[dict[str, object]]:
    r = client.get("/v1/profiles", params=query, headers=bearer(token))
    assert r.status_code == 200, r.text
    return list(r.json()["profiles"])


def test_profile_360_shows_traits_identifiers_orders_and_timeline(
    client: TestClient, write_key: str, admin_token: str
) -> None:
    _post(
        client,
        write_key,
        msg("page", anonymousId="web-1", name="Home", timestamp="2026-03-01T10:00:00Z"),
        identify(
            anonymousId="web-1",
            userId="c-1",
            timestamp="2026-03-01T10:05:00Z",
            traits={"email": "Nia@Shop.test", "first_name": "Nia", "phone": "+44 20 7946 0958"},
        ),
        track(
            "Order Completed",
            userId="c-1",
            timestamp="2026-03-01T10:10:00Z",
            properties={
                "order_id": "n-1",
                "total": 42.5,
                "products": [{"product_id": "p-9", "price": 42.5, "quantity": 1}],
            },
        ),
    )
    (found,) = _find(client, admin_token, phone="0044 20 7946 0958")
    r = client.get(f"/v1/profiles/{found['id']}", headers=bearer(admin_token))
    assert r.status_code == 200
    body = r.json()
    assert body["traits"]["first_name"] == "Nia"
    assert {(i["type"], i["value"]) for i in body["identifiers"]} == {
        ("anonymous_id", "web-1"),
        ("user_id", "c-1"),
        ("email", "nia@shop.test"),
        ("phone", "+442079460958"),
    }
    assert [o["order_id"] for o in body["orders"]] == ["n-1"]
    assert body["orders"][0]["total"] == "42.50"
    events = body["timeline"]["events"]
    assert [e["type"] for e in events] == ["track", "identify", "page"]  # newest first


def test_timeline_pages_with_a_cursor(client: TestClient, write_key: str, admin_token: str) -> None:
    _post(
        client,
        write_key,
        *[track(f"E{i}", userId="pager", timestamp=f"2026-01-01T00:{i:02d}:00Z") for i in range(7)],
    )
    (found,) = _find(client, admin_token, user_id="pager")
    seen, cursor = [], None
    while True:
        params = {"limit": 3, **({"before": cursor} if cursor else {})}
        page = client.get(
            f"/v1/profiles/{found['id']}/events", params=params, headers=bearer(admin_token)
        ).json()
        seen += [e["event"] for e in page["events"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == [f"E{i}" for i in reversed(range(7))]
    bad = client.get(
        f"/v1/profiles/{found['id']}/events",
        params={"before": "nonsense"},
        headers=bearer(admin_token),
    )
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "before"


def test_search_needs_a_usable_value_and_unknown_ids_are_404(
    client: TestClient, admin_token: str
) -> None:
    r = client.get("/v1/profiles", params={"phone": "not a phone"}, headers=bearer(admin_token))
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "phone"
    assert client.get("/v1/profiles/nope", headers=bearer(admin_token)).status_code == 404
    r = client.get("/v1/profiles", params={"limit": 0}, headers=bearer(admin_token))
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "limit"


def test_merge_and_unmerge_over_http(client: TestClient, write_key: str, admin_token: str) -> None:
    _post(
        client,
        write_key,
        identify(anonymousId="m-a", traits={"email": "ma@x.test"}),
        identify(anonymousId="m-b", traits={"phone": "+14155550100"}),
    )
    (a,) = _find(client, admin_token, anonymous_id="m-a")
    (b,) = _find(client, admin_token, anonymous_id="m-b")
    r = client.post(
        "/v1/profiles/merge",
        json={"first": a["id"], "second": b["id"]},
        headers=bearer(admin_token),
    )
    assert r.status_code == 200, r.text
    merge_id = r.json()["id"]
    merged = client.get(f"/v1/profiles/{b['id']}", headers=bearer(admin_token)).json()
    assert merged["requested_id"] == b["id"] and len(merged["member_ids"]) == 2
    again = client.post(
        "/v1/profiles/merge",
        json={"first": a["id"], "second": b["id"]},
        headers=bearer(admin_token),
    )
    assert again.status_code == 409
    r = client.post(f"/v1/merges/{merge_id}/undo", headers=bearer(admin_token))
    assert r.status_code == 200 and r.json()["undone_at"]
    assert len(_find(client, admin_token, email="ma@x.test")) == 1
    assert _find(client, admin_token, email="ma@x.test") != _find(
        client, admin_token, phone="+14155550100"
    )
    assert (
        client.post(f"/v1/merges/{merge_id}/undo", headers=bearer(admin_token)).status_code == 409
    )
    assert client.post("/v1/merges/unknown/undo", headers=bearer(admin_token)).status_code == 404


def test_roles_grant_scopes_per_route(
    client: TestClient, db: Database, workspace: str, write_key: str
) -> None:
    _post(
        client,
        write_key,
        identify(userId="r-1", traits={"email": "r@x.test"}),
        track("Order Completed", userId="r-1", properties={"order_id": "r-o", "total": 1}),
    )
    analyst = _token(db, workspace, tenancy.Role.ANALYST)
    marketer = _token(db, workspace, tenancy.Role.MARKETER)
    support = _token(db, workspace, tenancy.Role.SUPPORT)
    r = client.get("/v1/profiles", params={"user_id": "r-1"}, headers=bearer(analyst))
    assert r.status_code == 403 and "profiles:read" in r.json()["message"]
    assert client.get("/v1/orders/r-o", headers=bearer(analyst)).status_code == 200
    (found,) = _find(client, marketer, user_id="r-1")
    merge = {"first": found["id"], "second": found["id"]}
    assert (
        client.post("/v1/profiles/merge", json=merge, headers=bearer(marketer)).status_code == 403
    )
    assert client.post("/v1/profiles/merge", json=merge, headers=bearer(support)).status_code == 409
    who = client.get("/v1/workspace", headers=bearer(analyst)).json()
    assert who["role"] == "analyst" and "profiles:read" not in who["scopes"]


def test_revoked_tokens_stop_working(client: TestClient, db: Database, workspace: str) -> None:
    with db.write() as session:
        issued = tenancy.issue_key(
            session=session,
            workspace_id=workspace,
            kind="token",
            name="tmp",
            role=tenancy.Role.ADMIN,
        )
    assert client.get("/v1/workspace", headers=bearer(issued.secret)).status_code == 200
    with db.write() as session:
        tenancy.revoke_key(session=session, workspace_id=workspace, key_id=issued.id)
    assert client.get("/v1/workspace", headers=bearer(issued.secret)).status_code == 401


def test_keys_are_stored_hashed(db: Database, workspace: str, write_key: str) -> None:
    from sqlalchemy import text

    with db.read() as session:
        stored = [
            tuple(r)
            for r in session.execute(
                text("SELECT display_prefix, secret_hash FROM api_keys WHERE workspace_id = :w"),
                {"w": workspace},
            )
        ]
    assert stored and all(write_key not in "".join(row) for row in stored)

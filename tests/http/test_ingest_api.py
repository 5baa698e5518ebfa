"""The Segment-compatible ingestion API, through the real app on SQLite and PostgreSQL."""

from __future__ import annotations

import gzip
import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from consentry.deps import WriteKeys
from consentry.errors import Unauthorized
from consentry.ingest import service as ingest
from consentry.platform import tenancy
from consentry.platform.db import Database
from tests.conftest import new_workspace
from tests.support.segment import basic, bearer, identify, msg, track


def _stored(db: Database, workspace: str, message_id: str) -> ingest.EventView | None:
    with db.read() as session:
        return ingest.get_event(session=session, workspace_id=workspace, message_id=message_id)


def test_batch_is_stored_and_acknowledged(
    client: TestClient, db: Database, workspace: str, write_key: str
) -> None:
    messages = [
        identify(userId="u1", traits={"email": "a@example.com"}),
        track("Signed Up", userId="u1"),
        msg("page", anonymousId="a1", name="Home"),
    ]
    response = client.post("/v1/batch", json={"batch": messages}, headers=basic(write_key))
    assert response.status_code == 200, response.text
    assert response.json()["success"] is True
    for m in messages:
        assert _stored(db, workspace, m["messageId"]) is not None


def test_write_key_in_body_is_accepted_and_not_stored(
    client: TestClient, db: Database, workspace: str, write_key: str
) -> None:
    m = track("Clicked", anonymousId="a1")
    response = client.post("/v1/batch", json={"batch": [m], "writeKey": write_key})
    assert response.status_code == 200, response.text
    event = _stored(db, workspace, m["messageId"])
    assert event is not None and write_key not in json.dumps(event.payload)


def test_single_endpoints_accept_their_call(
    client: TestClient, db: Database, workspace: str, write_key: str
) -> None:
    bodies = {
        "identify": {"userId": "u9", "traits": {"plan": "pro"}},
        "track": {"userId": "u9", "event": "Viewed"},
        "page": {"userId": "u9", "name": "Home"},
        "screen": {"userId": "u9", "name": "Cart"},
        "group": {"userId": "u9", "groupId": "g1"},
        "alias": {"userId": "u9", "previousId": "anon-9"},
    }
    for kind, body in bodies.items():
        body["messageId"] = f"{kind}-{workspace}"
        response = client.post(f"/v1/{kind}", json=body, headers=basic(write_key))
        assert response.status_code == 200, (kind, response.text)
        stored = _stored(db, workspace, body["messageId"])
        assert stored is not None and stored.type == kind


def test_missing_or_wrong_write_key_is_401(client: TestClient, write_key: str) -> None:
    body = {"batch": [track("X", userId="u")]}
    assert client.post("/v1/batch", json=body).status_code == 401
    wrong = client.post("/v1/batch", json=body, headers=basic("csw_nope"))
    assert wrong.status_code == 401
    assert wrong.json()["code"] == "unauthorized"


def test_gzip_body_is_accepted(
    client: TestClient, db: Database, workspace: str, write_key: str
) -> None:
    m = track("Zipped", userId="u1")
    body = gzip.compress(json.dumps({"batch": [m]}).encode())
    headers = {**basic(write_key), "Content-Encoding": "gzip", "Content-Type": "application/json"}
    response = client.post("/v1/batch", content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert _stored(db, workspace, m["messageId"]) is not None


def test_bad_gzip_is_400(client: TestClient, write_key: str) -> None:
    headers = {**basic(write_key), "Content-Encoding": "gzip"}
    response = client.post("/v1/batch", content=b"not gzip at all", headers=headers)
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "(body)"


def test_malformed_message_rejects_the_whole_batch_naming_index_and_field(
    client: TestClient, db: Database, workspace: str, write_key: str
) -> None:
    good = track("Fine", userId="u1")
    bad = [
        msg("track", userId="u1"),
        msg("identify"),
        msg("alias", userId="u1"),
        msg("fly", userId="u1"),
        msg("track", event="E", userId="u", timestamp="yesterday"),
    ]
    response = client.post("/v1/batch", json={"batch": [good, *bad]}, headers=basic(write_key))
    assert response.status_code == 400
    body = response.json()
    assert set(body) == {"code", "message", "errors"}
    found = {(e["index"], e["field"]) for e in body["errors"]}
    assert (1, "event") in found
    assert (2, "userId") in found
    assert (3, "previousId") in found
    assert (4, "type") in found
    assert (5, "timestamp") in found
    assert _stored(db, workspace, good["messageId"]) is None  # nothing stored


def test_limits_give_400(client: TestClient, write_key: str) -> None:
    big = track("Big", userId="u1", properties={"blob": "x" * 33_000})
    r = client.post("/v1/batch", json={"batch": [big]}, headers=basic(write_key))
    assert r.status_code == 400 and r.json()["errors"][0]["index"] == 0
    many = [track("M", userId="u1") for _ in range(2501)]
    r = client.post("/v1/batch", json={"batch": many}, headers=basic(write_key))
    assert r.status_code == 400 and r.json()["code"] == "limit_exceeded"
    huge = [track("H", userId="u1", properties={"b": "y" * 20_000}) for _ in range(30)]
    r = client.post("/v1/batch", json={"batch": huge}, headers=basic(write_key))
    assert r.status_code == 400 and r.json()["code"] == "limit_exceeded"
    bomb = gzip.compress(b'{"batch": [' + b" " * 2_000_000 + b"]}")
    headers = {**basic(write_key), "Content-Encoding": "gzip"}
    r = client.post("/v1/batch", content=bomb, headers=headers)
    assert r.status_code == 400 and r.json()["code"] == "limit_exceeded"


def test_not_json_and_wrong_shapes_are_400(client: TestClient, write_key: str) -> None:
    for content in (b"{", b"[]", b'{"batch": {}}', b'{"batch": [1]}', b'{"batch": []}'):
        r = client.post("/v1/batch", content=content, headers=basic(write_key))
        assert r.status_code == 400, content
        assert r.json()["errors"], content


def test_retried_message_is_stored_once(
    client: TestClient, db: Database, workspace: str, write_key: str
) -> None:
    m = track("Order Completed", userId="u1", properties={"order_id": "o-1", "total": 10})
    for _ in range(3):
        r = client.post("/v1/batch", json={"batch": [m, m]}, headers=basic(write_key))
        assert r.status_code == 200
    with db.read() as session:
        assert ingest.count_events(session=session, workspace_id=workspace) == 1


def test_timestamps_are_corrected_for_clock_skew(
    client: TestClient, db: Database, workspace: str, write_key: str
) -> None:
    # the device clock is 1 hour fast; the event happened 10 s before it was sent
    device_now = datetime.now(UTC) + timedelta(hours=1)
    original = device_now - timedelta(seconds=10)
    m = track("Skewed", userId="u1", timestamp=original.isoformat())
    body = {"batch": [m], "sentAt": device_now.isoformat()}
    before = datetime.now(UTC)
    assert client.post("/v1/batch", json=body, headers=basic(write_key)).status_code == 200
    event = _stored(db, workspace, m["messageId"])
    assert event is not None
    assert event.payload["originalTimestamp"].startswith(original.isoformat()[:19])
    expected = event.received_at - timedelta(seconds=10)
    assert abs((event.timestamp - expected).total_seconds()) < 0.01
    assert before - timedelta(seconds=1) <= event.received_at <= datetime.now(UTC)


def test_batch_context_and_integrations_merge_into_each_message(
    client: TestClient, db: Database, workspace: str, write_key: str
) -> None:
    m = track("Ctx", userId="u1", context={"page": {"path": "/a"}, "locale": "de-DE"})
    body = {
        "batch": [m],
        "context": {"library": {"name": "analytics-python"}, "locale": "en-US"},
        "integrations": {"All": False},
    }
    assert client.post("/v1/batch", json=body, headers=basic(write_key)).status_code == 200
    event = _stored(db, workspace, m["messageId"])
    assert event is not None
    assert event.payload["context"] == {
        "library": {"name": "analytics-python"},
        "locale": "de-DE",
        "page": {"path": "/a"},
    }
    assert event.payload["integrations"] == {"All": False}


def test_a_write_key_of_workspace_a_never_writes_or_reads_workspace_b(
    client: TestClient, db: Database, workspace: str, write_key: str, admin_token: str
) -> None:
    other = new_workspace(db)
    m = identify(userId="shared-user", traits={"email": "x@example.com"})
    assert (
        client.post("/v1/batch", json={"batch": [m]}, headers=basic(write_key)).status_code == 200
    )
    assert _stored(db, other, m["messageId"]) is None
    from consentry.platform import tenancy

    with db.write() as session:
        other_token = tenancy.issue_key(
            session=session, workspace_id=other, kind="token", name="b", role=tenancy.Role.ADMIN
        ).secret
    found = client.get(
        "/v1/profiles", params={"user_id": "shared-user"}, headers=bearer(other_token)
    )
    assert found.status_code == 200 and found.json()["profiles"] == []
    mine = client.get(
        "/v1/profiles", params={"user_id": "shared-user"}, headers=bearer(admin_token)
    )
    profile_id = mine.json()["profiles"][0]["id"]
    assert client.get(f"/v1/profiles/{profile_id}", headers=bearer(other_token)).status_code == 404
    # the admin token is not a write key, and a write key is not an admin token
    assert (
        client.post("/v1/batch", json={"batch": [m]}, headers=basic(admin_token)).status_code == 401
    )
    assert client.get("/v1/profiles", headers=bearer(write_key)).status_code == 401


def test_ecommerce_events_fill_products_carts_and_orders(
    client: TestClient, write_key: str, admin_token: str
) -> None:
    product = {
        "product_id": "p1",
        "sku": "SKU-1",
        "name": "Shoe",
        "category": "shoes",
        "price": 50,
        "quantity": 2,
        "cart_id": "c1",
    }
    order = {
        "order_id": "o1",
        "checkout_id": "c1",
        "total": 100,
        "currency": "eur",
        "products": [{"product_id": "p1", "price": 50, "quantity": 2}],
    }
    batch = [
        track("Product Viewed", anonymousId="an1", properties=product),
        track("Product Added", anonymousId="an1", properties=product),
        identify(anonymousId="an1", userId="buyer", traits={"email": "b@example.com"}),
        track("Order Completed", userId="buyer", properties=order),
        track("Order Refunded", userId="buyer", properties={"order_id": "o1", "total": 40}),
    ]
    assert (
        client.post("/v1/batch", json={"batch": batch}, headers=basic(write_key)).status_code == 200
    )
    got = client.get("/v1/orders/o1", headers=bearer(admin_token)).json()
    assert got["status"] == "partially_refunded"
    assert got["total"] == "100.00" and got["refunded"] == "40.00" and got["currency"] == "EUR"
    assert got["items"][0]["product_id"] == "p1"
    profile = client.get(
        "/v1/profiles", params={"email": "B@Example.com "}, headers=bearer(admin_token)
    ).json()["profiles"][0]
    full = client.get(f"/v1/profiles/{profile['id']}", headers=bearer(admin_token)).json()
    assert [o["order_id"] for o in full["orders"]] == ["o1"]
    assert full["open_carts"] == []  # the cart converted into the order
    counts = client.get("/v1/workspace", headers=bearer(admin_token)).json()["counts"]
    assert counts["products"] == 1 and counts["orders"] == 1 and counts["events"] == 5


def test_a_revoked_write_key_is_refused_within_a_second(
    client: TestClient, db: Database, workspace: str
) -> None:
    """Ingestion remembers a write key that authenticated for a second (deps.WriteKeys), so a
    revocation takes at most that long; a key never seen is looked up every time."""
    with db.write() as session:
        key = tenancy.issue_key(session=session, workspace_id=workspace, kind="write", name="r")
    body = {"batch": [track("Tick", anonymousId="rv-1")]}
    assert client.post("/v1/batch", json=body, headers=basic(key.secret)).status_code == 200
    with db.write() as session:
        tenancy.revoke_key(session=session, workspace_id=workspace, key_id=key.id)
    time.sleep(1.1)
    refused = client.post("/v1/batch", json=body, headers=basic(key.secret))
    assert refused.status_code == 401, refused.text
    assert client.post("/v1/batch", json=body, headers=basic(key.secret + "x")).status_code == 401


def test_recent_write_keys_are_remembered_by_hash_for_their_time(
    db: Database, workspace: str
) -> None:
    with db.write() as session:
        key = tenancy.issue_key(session=session, workspace_id=workspace, kind="write", name="k")
    keys = WriteKeys(seconds=0.2, size=2)
    assert keys.recent(key.secret) is None  # never seen: the store decides
    principal = keys.authenticate(db, key.secret)
    assert keys.recent(key.secret) == principal and principal.workspace_id == workspace
    assert key.secret not in repr(keys.__dict__)  # the hash is kept, never the key
    with db.write() as session:
        tenancy.revoke_key(session=session, workspace_id=workspace, key_id=key.id)
    time.sleep(0.25)
    assert keys.recent(key.secret) is None
    with pytest.raises(Unauthorized):
        keys.authenticate(db, key.secret)

"""The recommendations API through the real app, on both stores: training, serving with consent
deciding the kind of list, per-product lists, next best offer, versions, scopes, isolation, and
bad input as 4xx JSON naming the field."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from consentry.platform import tenancy
from consentry.platform.db import Database
from tests.conftest import new_workspace
from tests.recommend.test_service import seed_shop
from tests.support.segment import bearer, identify
from tests.support.store import profile_of, send

BASE = "/v1/recommendations"


def _token(db: Database, workspace: str, role: tenancy.Role) -> dict[str, str]:
    with db.write() as session:
        issued = tenancy.issue_key(
            session=session, workspace_id=workspace, kind="token", name=role.value, role=role
        )
    return bearer(issued.secret)


def _field_error(response: Any, status: int, field: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["message"] and field in [e["field"] for e in body["errors"]], body


@pytest.fixture
def shop(db: Database, workspace: str, admin_token: str, client: TestClient) -> dict[str, str]:
    seed_shop(db, workspace, customers=80, seed=21)
    auth = bearer(admin_token)
    trained = client.post(f"{BASE}/train", headers=auth)
    assert trained.status_code == 200, trained.text
    assert trained.json()["version"] == 1
    return auth


def test_serving_is_personalised_only_with_consent(
    client: TestClient, db: Database, workspace: str, shop: dict[str, str]
) -> None:
    american = profile_of(db, workspace, user_id="c0").id  # US: opt-out regime
    german = profile_of(db, workspace, user_id="c2").id  # DE: opt-in, no grant
    mine = client.get(f"{BASE}/{american}", params={"count": 8}, headers=shop).json()
    assert mine["kind"] == "personalized" and mine["reason"] == "consented"
    assert mine["consent"]["reason"] == "opt_out_regime_default"
    assert len(mine["items"]) == 8 and mine["model"]["version"] == 1
    assert {"product_id", "name", "category", "price", "score", "rank"} <= set(mine["items"][0])
    theirs = client.get(f"{BASE}/{german}", params={"count": 8}, headers=shop).json()
    assert theirs["kind"] == "non_personalized"
    assert theirs["reason"] == "no_personalization_consent"
    assert theirs["consent"]["regime"] == "opt_in" and theirs["consent"]["allowed"] is False
    assert [i["product_id"] for i in mine["items"]] != [i["product_id"] for i in theirs["items"]]

    granted = client.post(
        "/v1/consent",
        json={"profile_id": german, "purpose": "personalize", "state": "granted"},
        headers=shop,
    )
    assert granted.status_code in (200, 201), granted.text
    again = client.get(f"{BASE}/{german}", headers=shop).json()
    assert again["kind"] == "personalized" and again["consent"]["reason"] == "granted"
    # consent is asked for the channel the list is shown in: an email one is refused
    withdrawn = client.post(
        "/v1/consent",
        json={
            "profile_id": german,
            "purpose": "personalize",
            "channel": "email",
            "state": "withdrawn",
        },
        headers=shop,
    )
    assert withdrawn.status_code in (200, 201), withdrawn.text
    email = client.get(f"{BASE}/{german}", params={"context": "email"}, headers=shop).json()
    assert email["kind"] == "non_personalized" and email["consent"]["channel"] == "email"
    assert client.get(f"{BASE}/{german}", headers=shop).json()["kind"] == "personalized"


def test_cold_start_and_bad_input(
    client: TestClient, db: Database, workspace: str, shop: dict[str, str]
) -> None:
    send(db, workspace, identify(userId="fresh", traits={"country": "US"}))
    fresh = profile_of(db, workspace, user_id="fresh").id
    found = client.get(f"{BASE}/{fresh}", params={"count": 3}, headers=shop)
    assert found.status_code == 200 and found.json()["reason"] == "cold_start"
    assert len(found.json()["items"]) == 3
    _field_error(client.get(f"{BASE}/{fresh}", params={"count": 0}, headers=shop), 400, "count")
    _field_error(client.get(f"{BASE}/{fresh}", params={"count": 101}, headers=shop), 400, "count")
    _field_error(
        client.get(f"{BASE}/{fresh}", params={"context": "tv"}, headers=shop), 400, "context"
    )
    missing = client.get(f"{BASE}/nobody-here", headers=shop)
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    item = client.get(f"{BASE}/item/no-such-product", headers=shop)
    assert item.status_code == 404 and "no-such-product" in item.json()["message"]
    _field_error(
        client.get(f"{BASE}/item/coffee-1", params={"kind": "also_liked"}, headers=shop),
        400,
        "kind",
    )
    _field_error(
        client.get(f"{BASE}/item/coffee-1", params={"count": 500}, headers=shop), 400, "count"
    )


def test_item_lists_are_not_shadowed_by_profile_ids(
    client: TestClient, shop: dict[str, str]
) -> None:
    bought = client.get(f"{BASE}/item/tea-2", params={"count": 6}, headers=shop)
    assert bought.status_code == 200, bought.text
    body = bought.json()
    assert body["product_id"] == "tea-2" and body["kind"] == "also_bought"
    assert len(body["items"]) == 6 and "tea-2" not in [i["product_id"] for i in body["items"]]
    viewed = client.get(f"{BASE}/item/tea-2", params={"kind": "also_viewed"}, headers=shop)
    assert viewed.json()["items"][0]["source"] == "also_viewed"


def test_versions_rollback_through_the_api(
    client: TestClient, db: Database, workspace: str, shop: dict[str, str]
) -> None:
    assert client.post(f"{BASE}/train", headers=shop).json()["version"] == 2
    listed = client.get(f"{BASE}/models", headers=shop).json()["models"]
    assert [(m["version"], m["active"]) for m in listed] == [(2, True), (1, False)]
    assert "recall@10" in listed[0]["metrics"]
    rolled = client.post(f"{BASE}/models/1/activate", headers=shop)
    assert rolled.status_code == 200 and rolled.json()["active"] is True
    american = profile_of(db, workspace, user_id="c0").id
    assert client.get(f"{BASE}/{american}", headers=shop).json()["model"]["version"] == 1
    missing = client.post(f"{BASE}/models/9/activate", headers=shop)
    assert missing.status_code == 404 and missing.json()["errors"][0]["field"] == "version"


def test_next_best_offer(
    client: TestClient, db: Database, workspace: str, shop: dict[str, str]
) -> None:
    american = profile_of(db, workspace, user_id="c0").id
    listed = client.get(f"{BASE}/{american}", params={"count": 3}, headers=shop).json()["items"]
    favourite = listed[0]
    body = {
        "offers": [
            {"key": "fav", "margin": 4.0, "product_id": favourite["product_id"]},
            {"key": "cat", "margin": 3.0, "category": favourite["category"], "discount": 0.1},
            {"key": "sitewide", "margin": 1.0},
            {"key": "unknown", "margin": 50.0, "product_id": "not-sold-here"},
            {"key": "cheap", "margin": 0.1, "category": "Books"},
        ],
        "eligibility": {"min_margin": 0.5},
    }
    ranked = client.post(f"{BASE}/{american}/offers", json=body, headers=shop)
    assert ranked.status_code == 200, ranked.text
    found = ranked.json()
    assert found["kind"] == "personalized"
    keys = [o["key"] for o in found["offers"]]
    assert found["ineligible"] == ["cheap"] and "cheap" not in keys
    values = [o["expected_value"] for o in found["offers"]]
    assert values == sorted(values, reverse=True)
    unknown = next(o for o in found["offers"] if o["key"] == "unknown")
    assert unknown["p_take"] == 0.0  # not in the customer's list: not expected to be taken
    fav = next(o for o in found["offers"] if o["key"] == "fav")
    assert 0 < fav["p_take"] <= 1 and fav["expected_value"] == pytest.approx(4.0 * fav["p_take"])

    twice = {"offers": [{"key": "a", "margin": 1}, {"key": "a", "margin": 2}]}
    _field_error(
        client.post(f"{BASE}/{american}/offers", json=twice, headers=shop), 400, "offers.0.key"
    )
    bad = {"offers": [{"key": "a", "margin": 1, "discount": 2}]}
    _field_error(
        client.post(f"{BASE}/{american}/offers", json=bad, headers=shop), 400, "offers.0.discount"
    )
    _field_error(
        client.post(f"{BASE}/{american}/offers", json={"offers": []}, headers=shop), 400, "offers"
    )
    nobody = client.post(
        f"{BASE}/nobody/offers", json={"offers": [{"key": "a", "margin": 1}]}, headers=shop
    )
    assert nobody.status_code == 404


def test_scopes_and_workspace_isolation(
    client: TestClient, db: Database, workspace: str, shop: dict[str, str]
) -> None:
    american = profile_of(db, workspace, user_id="c0").id
    analyst = _token(db, workspace, tenancy.Role.ANALYST)
    assert client.get(f"{BASE}/{american}", headers=analyst).status_code == 200
    assert client.post(f"{BASE}/train", headers=analyst).status_code == 403
    marketer = _token(db, workspace, tenancy.Role.MARKETER)
    assert client.post(f"{BASE}/models/1/activate", headers=marketer).status_code == 200
    officer = _token(db, workspace, tenancy.Role.PRIVACY_OFFICER)
    assert client.get(f"{BASE}/{american}", headers=officer).status_code == 403
    assert client.get(f"{BASE}/{american}").status_code == 401

    other = new_workspace(db)
    theirs = _token(db, other, tenancy.Role.ADMIN)
    # B has no model yet: a clear 409; then its own model, still no access to A's customers
    assert client.get(f"{BASE}/{american}", headers=theirs).status_code == 409
    assert client.post(f"{BASE}/train", headers=theirs).status_code == 409
    seed_shop(db, other, customers=30, seed=3, prefix="b")
    assert client.post(f"{BASE}/train", headers=theirs).status_code == 200
    denied = client.get(f"{BASE}/{american}", headers=theirs)
    assert denied.status_code == 404 and american in denied.json()["message"]
    assert [
        m["version"] for m in client.get(f"{BASE}/models", headers=theirs).json()["models"]
    ] == [1]

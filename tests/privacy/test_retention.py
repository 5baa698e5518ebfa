"""Retention on both stores: the dry run counts exactly what a run then deletes, recent data and
active people stay, an inactive person is erased (their invoices kept) and may come back, and
the API and CLI give clear answers."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from consentry.cli import app
from consentry.commerce import service as commerce
from consentry.config import IdentitySettings
from consentry.errors import Invalid, NotFound
from consentry.ingest import service as ingest
from consentry.platform import audit, tenancy
from consentry.platform.db import Database, utcnow
from consentry.privacy import retention_service
from consentry.profiles import service as profiles
from tests.privacy.test_erasure import envelopes
from tests.support.segment import bearer, identify, track

NOW = utcnow()


def ago(days: int) -> str:
    return (NOW - timedelta(days=days)).isoformat()


def seed(db: Database, workspace: str) -> dict[str, str]:
    """Old Olga, last seen four years ago; Nina, active, with old and new events."""
    messages = [
        identify(userId="olga", timestamp=ago(1500), traits={"email": "olga@example.com"}),
        track(
            "Order Completed",
            userId="olga",
            timestamp=ago(1490),
            properties={"order_id": "o-olga", "total": 20, "currency": "EUR"},
        ),
        track(
            "Product Added",
            userId="olga",
            timestamp=ago(1480),
            properties={"cart_id": "cart-olga", "product_id": "p1", "price": 5, "quantity": 1},
        ),
        identify(userId="nina", timestamp=ago(500), traits={"email": "nina@example.com"}),
        track("Product Viewed", userId="nina", timestamp=ago(450), properties={"product_id": "p"}),
        track(
            "Product Added",
            userId="nina",
            timestamp=ago(120),
            properties={"cart_id": "cart-nina-old", "product_id": "p1", "price": 5, "quantity": 1},
        ),
        track(
            "Product Added",
            userId="nina",
            timestamp=ago(3),
            properties={"cart_id": "cart-nina-new", "product_id": "p1", "price": 5, "quantity": 1},
        ),
        track("Product Viewed", userId="nina", timestamp=ago(1), properties={"product_id": "p"}),
    ]
    with db.write() as session:
        ingest.ingest(
            session=session,
            workspace_id=workspace,
            envelopes=envelopes(*messages),
            identity=IdentitySettings(),
        )
        return {
            name: profiles.search_identifiers(
                session=session, workspace_id=workspace, user_id=name
            )[0]
            for name in ("olga", "nina")
        }


def counts(runs: list[Any]) -> dict[str, int]:
    return {r.category: r.count for r in runs}


def test_the_dry_run_counts_what_the_run_deletes(db: Database, workspace: str) -> None:
    people = seed(db, workspace)
    with db.read() as session:
        planned = counts(retention_service.plan(session=session, workspace_id=workspace, now=NOW))
        events_before = ingest.count_events(session=session, workspace_id=workspace)
    # events older than 395 days: Olga's 3, Nina's identify and first view; carts older than
    # 90 days that never became an order: Olga's and Nina's old one; people: Olga
    assert planned == {
        "events": 5,
        "abandoned_carts": 2,
        "inactive_customers": 1,
        "identity_warnings": 0,
    }
    with db.read() as session:  # the plan deleted nothing
        assert ingest.count_events(session=session, workspace_id=workspace) == events_before
    done = counts(retention_service.run(db=db, workspace_id=workspace, now=NOW, order_hold=None))
    # every event of Olga was old enough to go by age: her erasure found none left
    assert done["events"] == 5 and done["abandoned_carts"] == 2
    assert done["inactive_customers"] == 1
    with db.read() as session:
        assert ingest.count_events(session=session, workspace_id=workspace) == events_before - 5
        with pytest.raises(NotFound):
            profiles.get_profile(session=session, workspace_id=workspace, profile_id=people["olga"])
        nina = profiles.get_profile(
            session=session, workspace_id=workspace, profile_id=people["nina"]
        )
        assert nina.traits["email"] == "nina@example.com"
        carts = commerce.open_carts(
            session=session, workspace_id=workspace, profile_ids=nina.member_ids
        )
        assert [c["cart_id"] for c in carts] == ["cart-nina-new"]
        assert [e.action for e in audit.entries(session=session, workspace_id=workspace)].count(
            "privacy.retention"
        ) == 1
        last = retention_service.last_run(session=session, workspace_id=workspace)
        assert last is not None and last["dry_run"] is False
        planned = counts(retention_service.plan(session=session, workspace_id=workspace, now=NOW))
    assert set(planned.values()) == {0}  # a second run has nothing left to do


def test_an_inactive_customer_keeps_invoices_and_may_come_back(
    db: Database, workspace: str
) -> None:
    seed(db, workspace)
    retention_service.run(db=db, workspace_id=workspace, now=NOW, order_hold=timedelta(days=3650))
    with db.write() as session:
        order = commerce.get_order(session=session, workspace_id=workspace, order_id="o-olga")
        assert order.profile_id is None
        back = ingest.ingest(  # a log-in years later, no consent given: welcome back anyway
            session=session,
            workspace_id=workspace,
            envelopes=envelopes(
                identify(userId="olga", traits={"email": "olga@example.com"}),
                track("Product Viewed", userId="olga", properties={"product_id": "p"}),
            ),
            identity=IdentitySettings(),
        )
        assert back.suppressed == 0 and back.accepted == 2
        (again,) = profiles.search_identifiers(
            session=session, workspace_id=workspace, email="olga@example.com"
        )
        events = ingest.events_of(session=session, workspace_id=workspace, profile_ids=[again])
        assert len(events) == 2 and all(e.payload for e in events)


def test_periods_are_checked_and_can_be_switched_off(db: Database, workspace: str) -> None:
    seed(db, workspace)
    with db.write() as session, pytest.raises(Invalid) as caught:
        retention_service.set_policy(
            session=session,
            workspace_id=workspace,
            changes={"events": 0, "inactive_customers": 3, "tweets": 5, "carts": "x"},
            actor="test:dpo",
        )
    fields = sorted(e.field for e in caught.value.errors)
    assert fields == [
        "policies.carts",
        "policies.events",
        "policies.inactive_customers",
        "policies.tweets",
    ]
    with db.write() as session:
        retention_service.set_policy(
            session=session,
            workspace_id=workspace,
            changes={"inactive_customers": None, "events": 2000},
            actor="test:dpo",
        )
    with db.read() as session:
        planned = counts(retention_service.plan(session=session, workspace_id=workspace, now=NOW))
        policy = retention_service.get_policy(session=session, workspace_id=workspace)
    assert planned["inactive_customers"] == 0 and planned["events"] == 0
    assert policy.days["abandoned_carts"] == 90  # untouched: still the default


def test_the_api_and_the_cli(
    client: TestClient, db: Database, workspace: str, admin_token: str, database_url: str
) -> None:
    seed(db, workspace)
    auth = bearer(admin_token)
    shown = client.get("/v1/privacy/retention", headers=auth)
    assert shown.status_code == 200
    assert {p["category"]: p["days"] for p in shown.json()["policies"]}["events"] == 395
    bad = client.put("/v1/privacy/retention", json={"policies": {"events": -1}}, headers=auth)
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "policies.events"
    with db.write() as session:
        marketer = tenancy.issue_key(
            session=session,
            workspace_id=workspace,
            kind="token",
            name="m",
            role=tenancy.Role.MARKETER,
        ).secret
    assert client.get("/v1/privacy/retention/plan", headers=bearer(marketer)).status_code == 403
    plan = client.get("/v1/privacy/retention/plan", headers=auth).json()
    assert plan["dry_run"] is True
    would = {c["category"]: c["would_delete"] for c in plan["categories"]}
    assert would["events"] == 5

    runner = CliRunner()
    where = ["--workspace", workspace, "--database-url", database_url]
    dry = runner.invoke(app, ["retention", "run", *where, "--dry-run", "--json"])
    assert dry.exit_code == 0, dry.output
    (first,) = json.loads(dry.output)
    assert {c["category"]: c["would_delete"] for c in first["categories"]} == would
    table = runner.invoke(app, ["retention", "run", *where, "--dry-run"])
    assert "dry run: nothing deleted" in table.output and "abandoned_carts" in table.output
    assert runner.invoke(app, ["retention", "set", "events", "-5", *where]).exit_code != 0
    assert runner.invoke(app, ["retention", "set", *where, "events", "400"]).exit_code == 0
    real = runner.invoke(app, ["retention", "run", *where, "--json"])
    assert real.exit_code == 0, real.output
    (ran,) = json.loads(real.output)
    assert {c["category"]: c["deleted"] for c in ran["categories"]}["abandoned_carts"] == 2
    after = client.get("/v1/privacy/retention", headers=auth).json()
    assert after["last_run"]["dry_run"] is False
    assert {p["category"]: p["days"] for p in after["policies"]}["events"] == 400
    missing = runner.invoke(
        app, ["retention", "run", "--workspace", "nope", "--database-url", database_url]
    )
    assert missing.exit_code == 1

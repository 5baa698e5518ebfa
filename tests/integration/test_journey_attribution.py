"""Journey attribution against a real store (SQLite and PostgreSQL): people enrolled by the
real engine through a holdout split and two variants, orders ingested before, within and after
the goal window (one placed by a member merged into the person later), and the report read
through the service and the HTTP API."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from consentry.errors import NotFound
from consentry.journeys import attribution, service
from consentry.journeys.models import HOLDOUT
from consentry.platform.db import Database, utcnow
from tests.integration.test_journey_engine import CALM, LINKS, setup_shop, shopper, start
from tests.support.delivery import EMAIL_PURPOSE
from tests.support.segment import bearer, identify, track
from tests.support.store import send

PEOPLE = 40
MAIL = {"subject": "Welcome {{ profile.first_name }}", "text": "Hi! {{ unsubscribe_url }}"}


def journey(destination_id: str) -> dict[str, Any]:
    def mail(step: str) -> dict[str, Any]:
        return {
            "id": step,
            "type": "email",
            "destination_id": destination_id,
            "purpose": EMAIL_PURPOSE,
            "template": MAIL,
            "next": "end",
        }

    return {
        "name": "Welcome test",
        "trigger": {"type": "event", "event": "Signed Up"},
        "goal": {"event": "Order Completed", "within_days": 7},
        "steps": [
            {
                "id": "split",
                "type": "split",
                "holdout_percent": 40,
                "variants": [
                    {"name": "A", "weight": 50, "next": "mail-a"},
                    {"name": "B", "weight": 50, "next": "mail-b"},
                ],
            },
            mail("mail-a"),
            mail("mail-b"),
        ],
    }


def order(user: dict[str, str], order_id: str, at: Any, total: float) -> dict[str, Any]:
    properties = {"order_id": order_id, "total": total, "currency": "EUR"}
    return track("Order Completed", timestamp=at.isoformat(), properties=properties, **user)


@pytest.mark.parametrize("over_http", [False, True])
def test_conversions_per_arm_and_step_against_the_holdout(
    db: Database, workspace: str, client: TestClient, admin_token: str, over_http: bool
) -> None:
    destination_id = setup_shop(db, workspace)
    people = {f"u-{i}": shopper(db, workspace, f"u-{i}") for i in range(PEOPLE)}
    t0 = utcnow()
    journey_id = start(db, workspace, journey(destination_id), t0 - timedelta(minutes=5))
    send(
        db,
        workspace,
        *[
            track("Signed Up", userId=u, timestamp=(t0 - timedelta(minutes=1)).isoformat())
            for u in people
        ],
    )
    report = service.run(db, workspace, CALM, links=LINKS, now=t0 + timedelta(seconds=1))
    assert report.triggers.enrolled == PEOPLE

    with db.read() as session:
        rows = service.list_enrollments(
            session=session, workspace_id=workspace, journey_id=journey_id, limit=1000
        )
    arm = {row["profile_id"]: row["variant"] for row in rows}
    assert set(arm) == set(people.values())
    assert {"A", "B", HOLDOUT} == set(arm.values())

    orders: list[dict[str, Any]] = []
    expected_cents: Counter[str] = Counter()
    converted: set[str] = set()
    for i, user in enumerate(people):
        if i % 3 == 0:  # within the window: converts
            total = 10 + i
            orders.append(order({"userId": user}, f"in-{i}", t0 + timedelta(days=1), total))
            converted.add(user)
            expected_cents[user] += total * 100
        if i % 3 == 1:  # after the window: does not
            orders.append(order({"userId": user}, f"late-{i}", t0 + timedelta(days=8), 99))
        if i % 5 == 0:  # before the send: does not
            orders.append(order({"userId": user}, f"early-{i}", t0 - timedelta(hours=1), 77))
    # u-7 orders anonymously in the window; the visitor is merged into u-7 afterwards
    orders.append(order({"anonymousId": "anon-7"}, "anon-7", t0 + timedelta(days=2), 5.5))
    send(db, workspace, *orders)
    send(db, workspace, identify(userId="u-7", anonymousId="anon-7"))
    converted.add("u-7")
    expected_cents["u-7"] += 550

    if over_http:
        response = client.get(f"/v1/journeys/{journey_id}/attribution", headers=bearer(admin_token))
        assert response.status_code == 200, response.text
        found = response.json()
    else:
        with db.read() as session:
            found = attribution.journey_attribution(
                session=session, workspace_id=workspace, journey_id=journey_id
            ).document()

    def expect(users: list[str]) -> dict[str, Any]:
        hits = [u for u in users if u in converted]
        cents = sum(expected_cents[u] for u in hits)
        return {
            "total": len(users),
            "converted": len(hits),
            "rate": round(len(hits) / len(users), 6),
            "revenue": {"EUR": cents / 100} if cents else {},
        }

    by_arm: dict[str, list[str]] = {"A": [], "B": [], HOLDOUT: []}
    for user, pid in people.items():
        by_arm[arm[pid]].append(user)
    treated = by_arm["A"] + by_arm["B"]
    assert found["window_days"] == 7 and found["holdout_split"] == "split"
    assert found["holdout"] == expect(by_arm[HOLDOUT])
    assert {k: v for k, v in found["journey"].items() if k != "uplift"} == expect(treated)
    held = expect(by_arm[HOLDOUT])
    journey_uplift = attribution.uplift(
        expect(treated)["converted"], len(treated), held["converted"], held["total"]
    )
    assert journey_uplift is not None
    assert found["journey"]["uplift"] == journey_uplift.document()
    variants = {v["variant"]: v for v in found["variants"]}
    steps = {s["step"]: s for s in found["steps"]}
    for name, step in (("A", "mail-a"), ("B", "mail-b")):
        assert {k: v for k, v in variants[name].items() if k not in ("variant", "uplift")} == (
            expect(by_arm[name])
        )
        # each person of the arm was mailed once, at the split's moment: same conversions
        assert {k: v for k, v in steps[step].items() if k not in ("step", "type", "uplift")} == (
            expect(by_arm[name])
        )
        assert steps[step]["type"] == "email"
        assert variants[name]["uplift"]["absolute"] == pytest.approx(
            expect(by_arm[name])["rate"] - held["rate"], abs=2e-6
        )


def test_a_journey_without_holdout_counts_its_sends_and_has_no_uplift(
    db: Database, workspace: str
) -> None:
    destination_id = setup_shop(db, workspace)
    doc = journey(destination_id)
    doc["steps"][0]["holdout_percent"] = 0
    doc["goal"] = {"event": "Order Completed", "within_days": 2}
    users = [f"v-{i}" for i in range(6)]
    for user in users:
        shopper(db, workspace, user)
    t0 = utcnow()
    journey_id = start(db, workspace, doc, t0 - timedelta(minutes=5))
    send(db, workspace, *[track("Signed Up", userId=u, timestamp=t0.isoformat()) for u in users])
    service.run(db, workspace, CALM, links=LINKS, now=t0 + timedelta(seconds=1))
    send(
        db,
        workspace,
        order({"userId": "v-0"}, "o-0", t0 + timedelta(days=1), 20),
        order({"userId": "v-1"}, "o-1", t0 + timedelta(days=3), 20),  # outside 2 days
    )
    with db.read() as session:
        found = attribution.journey_attribution(
            session=session, workspace_id=workspace, journey_id=journey_id
        )
    assert found.holdout is None and found.split_step is None
    assert (found.journey.total, found.journey.converted) == (6, 1)
    assert found.journey.revenue_cents == {"EUR": 2000}
    document = found.document()
    assert document["holdout"] is None and document["journey"]["uplift"] is None
    assert sum(s["total"] for s in document["steps"]) == 6


def test_an_unknown_journey_or_another_workspaces_is_not_found(
    db: Database, workspace: str, client: TestClient, admin_token: str
) -> None:
    with db.read() as session, pytest.raises(NotFound):
        attribution.journey_attribution(session=session, workspace_id=workspace, journey_id="x")
    response = client.get("/v1/journeys/nope/attribution", headers=bearer(admin_token))
    assert response.status_code == 404

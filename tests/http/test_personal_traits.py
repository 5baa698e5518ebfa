"""Traits a workspace marks personal are sealed: values already stored and values to come."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from consentry.platform.db import Database
from consentry.platform.vault import is_token
from consentry.profiles.tables import CurrentTraitRow, TraitHistoryRow
from tests.conftest import new_workspace
from tests.support.segment import bearer, identify
from tests.support.store import profile_of, send

CARD = "LC-7731-0042"


TABLES = {"trait_history": TraitHistoryRow, "profile_traits": CurrentTraitRow}


def stored(db: Database, workspace: str, table: str) -> list[Any]:
    """The Loyalty_Card values as the store holds them (not through the read path)."""
    row = TABLES[table]
    with db.read() as session:
        return list(
            session.scalars(
                select(row.value).where(row.workspace_id == workspace, row.key == "Loyalty_Card")
            )
        )


def test_marking_seals_stored_values_and_later_ones(
    client: TestClient, db: Database, workspace: str, admin_token: str
) -> None:
    other = new_workspace(db)
    for ws in (workspace, other):
        send(
            db,
            ws,
            identify(userId="u-1", traits={"email": "ann@example.com", "Loyalty_Card": CARD}),
        )
    assert stored(db, workspace, "trait_history") == [CARD]  # not personal by its name
    assert stored(db, workspace, "profile_traits") == [CARD]

    reply = client.post(
        "/v1/personal-traits",
        json={"keys": ["loyalty-card", "email"], "reason": "card numbers identify a member"},
        headers=bearer(admin_token),
    )
    assert reply.status_code == 200, reply.text
    assert reply.json() == {
        "marked": ["loyalty-card"],
        "already": ["email"],
        "sealed_history": 1,
        "sealed_current": 1,
    }
    history, current = (
        stored(db, workspace, "trait_history"),
        stored(db, workspace, "profile_traits"),
    )
    assert len(history) == 1 and is_token(history[0])
    assert len(current) == 1 and is_token(current[0])
    assert stored(db, other, "profile_traits") == [CARD]  # the other workspace did not mark it
    assert profile_of(db, workspace, user_id="u-1").traits["Loyalty_Card"] == CARD

    send(db, workspace, identify(userId="u-2", traits={"Loyalty_Card": "LC-0000-0001"}))
    assert all(is_token(v) for v in stored(db, workspace, "profile_traits"))
    assert profile_of(db, workspace, user_id="u-2").traits["Loyalty_Card"] == "LC-0000-0001"

    listed = client.get("/v1/personal-traits", headers=bearer(admin_token)).json()
    assert [m["key"] for m in listed["marked"]] == ["loyalty-card"]
    assert "email" in listed["builtin"]
    trail = client.get(
        "/v1/audit", params={"action": "privacy.personal_traits.mark"}, headers=bearer(admin_token)
    )
    assert trail.status_code == 200, trail.text
    (entry,) = trail.json()["entries"]
    assert entry["reason"] == "card numbers identify a member"
    assert entry["details"] == {"marked": 1, "sealed_values": 2}

    again = client.post(
        "/v1/personal-traits", json={"keys": ["LoyaltyCard"]}, headers=bearer(admin_token)
    )
    assert again.json()["marked"] == [] and again.json()["already"] == ["LoyaltyCard"]


def test_bad_names_are_refused_naming_the_field(client: TestClient, admin_token: str) -> None:
    for body, field in (
        ({"keys": []}, "keys"),
        ({"keys": ["ok", 5]}, "keys[1]"),
        ({"keys": ["___"]}, "keys[0]"),
        ({"keys": ["tab\there"]}, "keys[0]"),
    ):
        reply = client.post("/v1/personal-traits", json=body, headers=bearer(admin_token))
        assert reply.status_code == 400, (body, reply.text)
        assert field in [e["field"] for e in reply.json()["errors"]], reply.json()

"""Segments over real ingested data, on both stores: event windows, traits, built-in and
custom computed traits, consent, segment of segment, the incremental catch-up, merges,
erasure, workspace isolation and bad rules."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from consentry.audiences import service as segments
from consentry.consent import service as consent
from consentry.errors import Conflict, Invalid, NotFound
from consentry.platform.db import Database, utcnow
from tests.conftest import new_workspace
from tests.support.segment import identify, track
from tests.support.store import profile_of, send

EMAIL = "marketing.communications.email"
NOW = utcnow()


def ago(**delta: float) -> str:
    return (NOW - timedelta(**delta)).isoformat()


def person(db: Database, workspace: str, user: str, **traits: Any) -> str:
    send(db, workspace, identify(userId=user, traits=traits, timestamp=ago(days=30)))
    return profile_of(db, workspace, user_id=user).id


def views(user: str, *hours: float) -> list[dict[str, Any]]:
    return [
        track(
            "Product Viewed", userId=user, properties={"product_id": "p1"}, timestamp=ago(hours=h)
        )
        for h in hours
    ]


def order(user: str, order_id: str, total: float, hours: float, **extra: Any) -> dict[str, Any]:
    products = extra.pop("products", [{"product_id": "p1", "price": total, "quantity": 1}])
    return track(
        "Order Completed",
        userId=user,
        properties={"order_id": order_id, "total": total, "products": products, **extra},
        timestamp=ago(hours=hours),
    )


def create(db: Database, workspace: str, name: str, rule: dict[str, Any]) -> segments.Segment:
    with db.write() as session:
        found, _ = segments.create_segment(
            session=session, workspace_id=workspace, name=name, rule=rule, actor="test"
        )
    return found


def members(db: Database, workspace: str, segment_id: str) -> set[str]:
    with db.read() as session:
        return set(
            segments.member_ids(session=session, workspace_id=workspace, segment_id=segment_id)
        )


def preview(db: Database, workspace: str, rule: dict[str, Any]) -> segments.Preview:
    with db.read() as session:
        return segments.preview(session=session, workspace_id=workspace, rule=rule)


def invalid_fields(db: Database, workspace: str, rule: Any) -> dict[str, str]:
    with db.read() as session, pytest.raises(Invalid) as caught:
        segments.validate_rule(session=session, workspace_id=workspace, rule=rule)
    return {e.field: e.reason for e in caught.value.errors}


BROWSED_NOT_BOUGHT = {
    "all": [
        {"event": "Product Viewed", "count": {"op": "gte", "value": 2}, "within_days": 7},
        {"event": "Order Completed", "count": {"op": "eq", "value": 0}, "within_days": 7},
    ]
}


def test_viewed_twice_in_a_week_and_no_order(db: Database, workspace: str) -> None:
    ids = {u: person(db, workspace, u) for u in ("ann", "bob", "cy", "dee")}
    send(db, workspace, *views("ann", 1, 30))  # twice this week: in
    send(db, workspace, *views("bob", 2, 3), order("bob", "o-b", 20, 1))  # bought: out
    send(db, workspace, *views("cy", 5, 24 * 10))  # once this week: out
    send(db, workspace, *views("dee", 1, 2, 3), order("dee", "o-d", 20, 24 * 9))  # old order: in

    seen = preview(db, workspace, BROWSED_NOT_BOUGHT)
    assert seen.count == 2 and set(seen.sample) == {ids["ann"], ids["dee"]}
    assert seen.text == (
        "Product Viewed >= 2 times in the last 7 days AND no Order Completed in the last 7 days"
    )
    assert seen.kinds == ["events"]
    made = create(db, workspace, "Browsed, not bought", BROWSED_NOT_BOUGHT)
    assert made.member_count == 2
    assert members(db, workspace, made.id) == {ids["ann"], ids["dee"]}
    with db.read() as session:
        assert segments.is_member(
            session=session, workspace_id=workspace, segment_id=made.id, profile_id=ids["ann"]
        )
        assert not segments.is_member(
            session=session, workspace_id=workspace, segment_id=made.id, profile_id=ids["bob"]
        )
        history = segments.history(session=session, workspace_id=workspace, segment_id=made.id)
    assert {(c.profile_id, c.entered) for c in history} == {(ids["ann"], True), (ids["dee"], True)}


def test_trait_conditions(db: Database, workspace: str) -> None:
    gold = person(db, workspace, "g", plan="gold", visits=12, vip=True, signup="2025-03-01")
    silver = person(db, workspace, "s", plan="silver", visits="12", tags=["summer", "sale"])
    bare = person(db, workspace, "b")

    def who(rule: dict[str, Any]) -> set[str]:
        return set(preview(db, workspace, rule).sample)

    assert who({"trait": "plan", "op": "eq", "value": "gold"}) == {gold}
    assert who({"trait": "plan", "op": "ne", "value": "gold"}) == {silver, bare}
    assert who({"trait": "plan", "op": "in", "value": ["gold", "silver"]}) == {gold, silver}
    assert who({"trait": "plan", "op": "not_in", "value": ["gold"]}) == {silver, bare}
    assert who({"trait": "visits", "op": "gte", "value": 10}) == {gold}  # "12" is not a number
    assert who({"trait": "visits", "op": "eq", "value": 12}) == {gold}
    assert who({"trait": "vip", "op": "eq", "value": True}) == {gold}
    assert who({"trait": "plan", "op": "exists"}) == {gold, silver}
    assert who({"trait": "plan", "op": "not_exists"}) == {bare}
    assert who({"trait": "plan", "op": "contains", "value": "ilv"}) == {silver}
    assert who({"trait": "tags", "op": "contains", "value": "sale"}) == {silver}
    assert who({"trait": "signup", "op": "before", "value": "2025-03-02"}) == {gold}
    assert who({"trait": "signup", "op": "after", "value": "2025-03-01"}) == set()
    assert who({"trait": "signup", "op": "within_last_days", "value": 3650}) == {gold}
    assert who({"not": {"trait": "plan", "op": "eq", "value": "gold"}}) == {silver, bare}
    both = {
        "any": [
            {"trait": "vip", "op": "eq", "value": True},
            {"trait": "tags", "op": "contains", "value": "summer"},
        ]
    }
    assert who(both) == {gold, silver}


def test_built_in_and_custom_computed_traits(db: Database, workspace: str) -> None:
    big = person(db, workspace, "big")
    small = person(db, workspace, "small")
    never = person(db, workspace, "never")
    shoes = [{"product_id": "p9", "category": "Shoes", "price": 80, "quantity": 1}]
    send(
        db,
        workspace,
        order("big", "o1", 80, 48, products=shoes),
        order("big", "o2", 70, 24),
        order("small", "o3", 15, 2),
        *views("small", 1, 2, 3),
        track("Product Viewed", userId="big", properties={"price": 80}, timestamp=ago(hours=3)),
        track("Product Viewed", userId="big", properties={"price": "19.5"}, timestamp=ago(hours=2)),
    )

    def who(rule: dict[str, Any]) -> set[str]:
        return set(preview(db, workspace, rule).sample)

    assert who({"computed": "total_spent", "op": "gte", "value": 100}) == {big}
    assert who({"computed": "order_count", "op": "eq", "value": 0}) == {never}
    assert who({"computed": "order_count", "op": "lt", "value": 2}) == {small, never}
    assert who({"computed": "avg_order_value", "op": "gt", "value": 50}) == {big}
    assert who({"computed": "categories_bought", "op": "contains", "value": "Shoes"}) == {big}
    assert who({"computed": "last_order_at", "op": "within_last_days", "value": 1}) == {small}
    assert who({"computed": "first_order_at", "op": "not_exists"}) == {never}

    with db.write() as session:
        views_week = segments.create_computed_trait(
            session=session,
            workspace_id=workspace,
            definition={
                "name": "views_7d",
                "op": "count",
                "event": "Product Viewed",
                "window_days": 7,
            },
            actor="test",
        )
        viewed_value = segments.create_computed_trait(
            session=session,
            workspace_id=workspace,
            definition={
                "name": "viewed_value",
                "op": "sum",
                "event": "Product Viewed",
                "property": "price",
            },
            actor="test",
        )
    assert views_week.refreshed_at is not None and viewed_value.op == "sum"
    assert who({"computed": "views_7d", "op": "gte", "value": 3}) == {small}
    assert who({"computed": "views_7d", "op": "eq", "value": 0}) == {never}  # no row: 0
    assert who({"computed": "viewed_value", "op": "eq", "value": 99.5}) == {big}
    assert who({"computed": "viewed_value", "op": "lt", "value": 1}) == {small, never}

    made = create(db, workspace, "viewers", {"computed": "views_7d", "op": "gte", "value": 1})
    with db.write() as session, pytest.raises(Conflict):
        segments.delete_computed_trait(
            session=session, workspace_id=workspace, trait_id=views_week.id
        )
    assert members(db, workspace, made.id) == {big, small}


def test_consent_condition_is_decided_by_the_policy(db: Database, workspace: str) -> None:
    yes = person(db, workspace, "yes", country="DE", plan="gold")
    no = person(db, workspace, "no", country="DE", plan="gold")
    us = person(db, workspace, "us", country="US", plan="gold")  # opt-out regime: allowed
    other = person(db, workspace, "other", country="DE", plan="silver")
    with db.write() as session:
        for pid, state in ((yes, "granted"), (no, "withdrawn"), (other, "granted")):
            consent.record(
                session=session,
                workspace_id=workspace,
                profile_id=pid,
                purpose=EMAIL,
                channel="email",
                state=state,
                source="web_form",
                actor="test",
            )
    allowed = {"consent": {"purpose": EMAIL, "channel": "email"}, "allowed": True}
    rule = {"all": [{"trait": "plan", "op": "eq", "value": "gold"}, allowed]}
    seen = preview(db, workspace, rule)
    assert set(seen.sample) == {yes, us} and seen.count == 2
    assert seen.text == 'plan = "gold" AND consent to marketing.communications.email by email'
    refused = {"not": allowed}
    assert set(preview(db, workspace, refused).sample) == {no}
    either = {
        "any": [{"trait": "plan", "op": "eq", "value": "silver"}, {**allowed, "allowed": False}]
    }
    assert set(preview(db, workspace, either).sample) == {other, no}
    with db.read() as session:
        assert segments.matches(session=session, workspace_id=workspace, rule=rule, profile_id=yes)
        assert not segments.matches(
            session=session, workspace_id=workspace, rule=rule, profile_id=no
        )


def test_segment_of_segment_and_cycles(db: Database, workspace: str) -> None:
    gold = person(db, workspace, "g", plan="gold", country="DE")
    person(db, workspace, "s", plan="silver", country="DE")
    base = create(db, workspace, "gold", {"trait": "plan", "op": "eq", "value": "gold"})
    german = create(
        db,
        workspace,
        "gold in Germany",
        {"all": [{"segment": base.id}, {"trait": "country", "op": "eq", "value": "DE"}]},
    )
    assert members(db, workspace, german.id) == {gold}
    assert german.text == 'in segment "gold" AND country = "DE"'
    with db.write() as session, pytest.raises(Invalid) as caught:
        segments.update_segment(
            session=session,
            workspace_id=workspace,
            segment_id=base.id,
            actor="test",
            rule={"segment": german.id},
        )
    assert caught.value.errors[0].field == "rule.segment"
    with db.write() as session, pytest.raises(Conflict):
        segments.delete_segment(session=session, workspace_id=workspace, segment_id=base.id)


def test_catch_up_records_entries_and_exits(db: Database, workspace: str) -> None:
    ann = person(db, workspace, "ann")
    bob = person(db, workspace, "bob")
    made = create(db, workspace, "browsers", BROWSED_NOT_BOUGHT)
    vip = create(db, workspace, "browsing vip", {"all": [{"segment": made.id}]})
    with db.read() as session:
        start = segments.changes_after(session=session, workspace_id=workspace, after_id=0)
    assert start == []
    send(db, workspace, *views("ann", 1, 2), *views("bob", 1))
    with db.write() as session:
        report = segments.catch_up(session=session, workspace_id=workspace)
    assert report.events == 3 and report.profiles == 2
    assert members(db, workspace, made.id) == {ann} and members(db, workspace, vip.id) == {ann}

    send(db, workspace, order("ann", "o-1", 10, 0.1), *views("bob", 0.5))
    with db.write() as session:
        segments.catch_up(session=session, workspace_id=workspace)
        changes = segments.changes_after(session=session, workspace_id=workspace, after_id=0)
        idle = segments.catch_up(session=session, workspace_id=workspace)
    assert idle.events == 0
    assert [(c.segment_id, c.profile_id, c.entered) for c in changes] == [
        (made.id, ann, True),
        (vip.id, ann, True),
        (made.id, ann, False),
        (made.id, bob, True),
        (vip.id, ann, False),
        (vip.id, bob, True),
    ]
    assert [c.id for c in changes] == sorted(c.id for c in changes)
    with db.read() as session:
        later = segments.changes_after(
            session=session, workspace_id=workspace, after_id=changes[2].id, limit=2
        )
    assert later == changes[3:5]


def test_a_merge_and_an_erasure_leave_no_stale_member(db: Database, workspace: str) -> None:
    send(
        db,
        workspace,
        *[track("Product Viewed", anonymousId="anon-1", timestamp=ago(hours=h)) for h in (1, 2)],
    )
    anonymous = profile_of(db, workspace, anonymous_id="anon-1").id
    made = create(db, workspace, "browsers", BROWSED_NOT_BOUGHT)
    assert members(db, workspace, made.id) == {anonymous}
    person(db, workspace, "zed")
    send(db, workspace, identify(userId="zed", anonymousId="anon-1", timestamp=ago(hours=0.5)))
    unified = profile_of(db, workspace, user_id="zed")
    assert len(unified.member_ids) == 2
    with db.write() as session:
        segments.catch_up(session=session, workspace_id=workspace)
    assert members(db, workspace, made.id) == {unified.id}
    with db.write() as session:
        gone = segments.erase_subject(
            session=session, workspace_id=workspace, profile_ids=unified.member_ids
        )
    assert gone >= 2  # the membership and its entry (at least)
    assert members(db, workspace, made.id) == set()
    with db.read() as session:
        assert (
            segments.get_segment(
                session=session, workspace_id=workspace, segment_id=made.id
            ).member_count
            == 0
        )
        changes = segments.changes_after(session=session, workspace_id=workspace, after_id=0)
    assert all(c.profile_id not in unified.member_ids for c in changes)


def test_full_refresh_follows_sliding_windows(db: Database, workspace: str) -> None:
    ann = person(db, workspace, "ann")
    send(db, workspace, *views("ann", 1, 24 * 6))
    made = create(db, workspace, "browsers", BROWSED_NOT_BOUGHT)
    assert members(db, workspace, made.id) == {ann}
    with db.write() as session:
        report = segments.refresh(
            session=session, workspace_id=workspace, now=NOW + timedelta(days=2)
        )
    assert report.exited == 1 and members(db, workspace, made.id) == set()


def test_workspaces_do_not_see_each_other(db: Database, workspace: str) -> None:
    person(db, workspace, "ann", plan="gold")
    other = new_workspace(db)
    theirs = person(db, other, "ann", plan="gold")
    made = create(db, other, "gold", {"trait": "plan", "op": "eq", "value": "gold"})
    assert members(db, other, made.id) == {theirs}
    with db.read() as session, pytest.raises(NotFound):
        segments.member_ids(session=session, workspace_id=workspace, segment_id=made.id)
    assert invalid_fields(db, workspace, {"segment": made.id}) == {
        "rule.segment": f"no segment {made.id!r} in this workspace"
    }


def test_bad_rules_name_the_field(db: Database, workspace: str) -> None:
    fields = invalid_fields(
        db,
        workspace,
        {
            "all": [
                {"trait": "email", "op": "eq", "value": "a@b.c"},
                {"computed": "nope", "op": "eq", "value": 1},
                {"computed": "total_spent", "op": "contains", "value": "x"},
                {"consent": {"purpose": "nothing.known", "channel": "pigeon"}},
            ]
        },
    )
    assert set(fields) == {
        "rule.all[0].trait",
        "rule.all[1].computed",
        "rule.all[2].op",
        "rule.all[3].consent.purpose",
        "rule.all[3].consent.channel",
    }
    assert "personal" in fields["rule.all[0].trait"]
    create(db, workspace, "dup", {"trait": "plan", "op": "exists"})
    with db.write() as session, pytest.raises(Conflict):
        segments.create_segment(
            session=session,
            workspace_id=workspace,
            name="dup",
            rule={"trait": "plan", "op": "exists"},
            actor="t",
        )

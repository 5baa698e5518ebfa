"""Deterministic identity resolution on SQLite and PostgreSQL: linking, guard rails, merge and
unmerge with history, traits where the latest observation wins."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from consentry.config import IdentitySettings
from consentry.errors import Conflict
from consentry.ingest import service as ingest
from consentry.platform.db import Database
from consentry.profiles import service as profiles
from tests.support.segment import identify, msg, track
from tests.support.store import identifier_values, maybe_profile, profile_of, send

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(minutes: int) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


def test_anonymous_browsing_joins_the_customer_on_identify(db: Database, workspace: str) -> None:
    send(
        db,
        workspace,
        track("Product Viewed", anonymousId="anon-1", timestamp=at(0)),
        msg("page", anonymousId="anon-1", name="Home", timestamp=at(1)),
    )
    send(
        db,
        workspace,
        identify(
            anonymousId="anon-1",
            userId="cust-1",
            traits={"email": " Ada@Example.COM "},
            timestamp=at(2),
        ),
    )
    view = profile_of(db, workspace, email="ada@example.com")
    assert identifier_values(view, "anonymous_id") == {"anon-1"}
    assert identifier_values(view, "user_id") == {"cust-1"}
    assert identifier_values(view, "email") == {"ada@example.com"}
    with db.read() as session:
        events = ingest.events_of(
            session=session, workspace_id=workspace, profile_ids=view.member_ids
        )
    assert [e.event for e in events] == [None, "Home", "Product Viewed"]  # identify has no name


def test_an_event_with_identifiers_of_two_profiles_merges_them(
    db: Database, workspace: str
) -> None:
    send(db, workspace, identify(userId="u-1", traits={"first_name": "Ada"}, timestamp=at(0)))
    send(
        db,
        workspace,
        identify(anonymousId="store-7", traits={"phone": "+1 415 555 0132"}, timestamp=at(1)),
    )
    assert (
        len(
            {
                *maybe_profile(db, workspace, user_id="u-1"),
                *maybe_profile(db, workspace, phone="+14155550132"),
            }
        )
        == 2
    )
    result = send(
        db, workspace, identify(userId="u-1", traits={"phone": "(415) 555-0132"}, timestamp=at(2))
    )
    assert result.merges == 1
    view = profile_of(db, workspace, phone="4155550132")
    assert identifier_values(view, "user_id") == {"u-1"}
    assert identifier_values(view, "anonymous_id") == {"store-7"}
    assert len(view.member_ids) == 2
    assert view.traits["first_name"] == "Ada"
    assert [m.reason for m in view.merges] == ["identifiers shared by one message"]


@pytest.mark.parametrize(
    "junk",
    [
        "null",
        "undefined",
        "anonymous",
        "guest",
        "0",
        "-1",
        "",
        "  ",
        "00000000-0000-0000-0000-000000000000",
        "NULL",
        "Guest",
    ],
)
def test_junk_values_never_link(db: Database, workspace: str, junk: str) -> None:
    send(db, workspace, identify(userId=junk, anonymousId="dev-a", timestamp=at(0)))
    send(db, workspace, identify(userId=junk, anonymousId="dev-b", timestamp=at(1)))
    a = maybe_profile(db, workspace, anonymous_id="dev-a")
    b = maybe_profile(db, workspace, anonymous_id="dev-b")
    assert len(a) == 1 and len(b) == 1 and a != b
    assert identifier_values(profile_of(db, workspace, anonymous_id="dev-a"), "user_id") == set()


def test_an_event_with_only_junk_is_stored_without_a_profile(db: Database, workspace: str) -> None:
    m = track("Clicked", anonymousId="undefined", timestamp=at(0))
    result = send(db, workspace, m)
    assert result.accepted == 1
    assert result.warnings == ["message 0: message carries no usable identifier"]
    with db.read() as session:
        event = ingest.get_event(session=session, workspace_id=workspace, message_id=m["messageId"])
    assert event is not None and event.profile_id is None


def test_a_merge_that_would_give_two_user_ids_is_refused_and_the_event_kept(
    db: Database, workspace: str
) -> None:
    send(
        db,
        workspace,
        identify(userId="alice", traits={"email": "alice@example.com"}, timestamp=at(0)),
    )
    send(
        db, workspace, identify(userId="bob", traits={"email": "bob@example.com"}, timestamp=at(1))
    )
    # a shared family laptop: bob's session carries alice's email
    m = identify(userId="bob", traits={"email": "alice@example.com"}, timestamp=at(2))
    result = send(db, workspace, m)
    assert result.accepted == 1 and result.merges == 0
    assert any("over the cap of 1" in w for w in result.warnings)
    alice = profile_of(db, workspace, user_id="alice")
    bob = profile_of(db, workspace, user_id="bob")
    assert alice.id != bob.id
    assert identifier_values(bob, "email") == {"bob@example.com"}
    with db.read() as session:
        assert (
            ingest.get_event(session=session, workspace_id=workspace, message_id=m["messageId"])
            is not None
        )
        warnings = profiles.warnings_for(session=session, workspace_id=workspace, profile_id=bob.id)
    assert any("merge refused" in w for w in warnings)


def test_per_type_caps_limit_identifiers_on_a_profile(db: Database, workspace: str) -> None:
    caps = IdentitySettings(max_emails=2)
    for i, email in enumerate(["a@x.com", "b@x.com", "c@x.com"]):
        result = send(
            db,
            workspace,
            identify(userId="capped", traits={"email": email}, timestamp=at(i)),
            identity=caps,
        )
    assert any("email not linked" in w for w in result.warnings)
    view = profile_of(db, workspace, user_id="capped")
    assert identifier_values(view, "email") == {"a@x.com", "b@x.com"}
    assert maybe_profile(db, workspace, email="c@x.com") == []


def test_caps_hold_inside_one_batch(db: Database, workspace: str) -> None:
    caps = IdentitySettings(max_anonymous_ids=2)
    send(
        db,
        workspace,
        *[identify(userId="many", anonymousId=f"d-{i}", timestamp=at(i)) for i in range(4)],
        identity=caps,
    )
    view = profile_of(db, workspace, user_id="many")
    assert identifier_values(view, "anonymous_id") == {"d-0", "d-1"}


def test_unmerge_restores_both_profiles_and_blocks_a_remerge(db: Database, workspace: str) -> None:
    send(
        db,
        workspace,
        identify(userId="carol", traits={"first_name": "Carol", "tier": "gold"}, timestamp=at(0)),
        track(
            "Order Completed",
            userId="carol",
            timestamp=at(1),
            properties={"order_id": "c-1", "total": 30},
        ),
    )
    send(
        db,
        workspace,
        identify(
            anonymousId="kiosk", traits={"email": "kiosk@shop.com", "tier": "none"}, timestamp=at(2)
        ),
        track(
            "Order Completed",
            anonymousId="kiosk",
            timestamp=at(3),
            properties={"order_id": "k-1", "total": 5},
        ),
    )
    send(db, workspace, identify(userId="carol", anonymousId="kiosk", timestamp=at(4)))
    merged = profile_of(db, workspace, user_id="carol")
    assert merged.traits["tier"] == "none"  # the later observation wins
    assert identifier_values(merged, "email") == {"kiosk@shop.com"}
    (merge,) = merged.merges
    with db.write() as session:
        undone = profiles.unmerge(
            session=session, workspace_id=workspace, merge_id=merge.id, actor="test"
        )
    assert undone.undone_at is not None and undone.undone_by == "test"
    carol = profile_of(db, workspace, user_id="carol")
    kiosk = profile_of(db, workspace, anonymous_id="kiosk")
    assert carol.id != kiosk.id
    assert carol.traits == {"first_name": "Carol", "tier": "gold"}
    assert kiosk.traits == {"email": "kiosk@shop.com", "tier": "none"}
    assert identifier_values(kiosk, "email") == {"kiosk@shop.com"}
    with db.read() as session:
        carol_events = ingest.events_of(
            session=session, workspace_id=workspace, profile_ids=carol.member_ids
        )
        kiosk_events = ingest.events_of(
            session=session, workspace_id=workspace, profile_ids=kiosk.member_ids
        )
    assert {e.event for e in carol_events} == {None, "Order Completed"}
    assert len(kiosk_events) == 2
    # the same link arriving again is refused: an unmerge is a decision
    again = send(db, workspace, identify(userId="carol", anonymousId="kiosk", timestamp=at(5)))
    assert again.merges == 0 and any("separated by an unmerge" in w for w in again.warnings)
    with db.write() as session, pytest.raises(Conflict):
        profiles.unmerge(session=session, workspace_id=workspace, merge_id=merge.id, actor="t")


def test_unmerge_splits_off_the_loser_with_everything_merged_into_it(
    db: Database, workspace: str
) -> None:
    send(db, workspace, identify(anonymousId="a", timestamp=at(0)))
    send(db, workspace, identify(anonymousId="b", timestamp=at(1)))
    send(db, workspace, identify(anonymousId="c", timestamp=at(2)))
    pa, pb, pc = (maybe_profile(db, workspace, anonymous_id=x)[0] for x in "abc")
    send(db, workspace, identify(anonymousId="b", traits={"email": "bc@x.com"}, timestamp=at(3)))
    send(db, workspace, identify(anonymousId="c", traits={"email": "bc@x.com"}, timestamp=at(4)))
    send(db, workspace, identify(anonymousId="a", traits={"email": "bc@x.com"}, timestamp=at(5)))
    view = profile_of(db, workspace, anonymous_id="a")
    assert view.id == pa and sorted(view.member_ids) == sorted([pa, pb, pc])
    pairs = {(m.winner_id, m.loser_id): m for m in view.merges}
    assert set(pairs) == {(pb, pc), (pa, pb)}  # the older profile wins each merge
    with db.write() as session:
        profiles.unmerge(
            session=session, workspace_id=workspace, merge_id=pairs[pa, pb].id, actor="t"
        )
    assert profile_of(db, workspace, anonymous_id="a").member_ids == [pa]
    bc = profile_of(db, workspace, anonymous_id="c")
    assert bc.id == pb and sorted(bc.member_ids) == sorted([pb, pc])
    assert identifier_values(bc, "email") == {"bc@x.com"}


def test_traits_latest_by_event_time_wins_with_history(db: Database, workspace: str) -> None:
    send(db, workspace, identify(userId="dan", traits={"city": "Berlin"}, timestamp=at(10)))
    # a late, older event arrives after the newer one
    send(db, workspace, identify(userId="dan", traits={"city": "Paris"}, timestamp=at(5)))
    view = profile_of(db, workspace, user_id="dan")
    assert view.traits["city"] == "Berlin"
    with db.read() as session:
        history = profiles.trait_history(
            session=session, workspace_id=workspace, profile_id=view.id, key="city"
        )
    assert [h["value"] for h in history] == ["Berlin", "Paris"]


def test_traits_in_one_batch_follow_event_time(db: Database, workspace: str) -> None:
    send(
        db,
        workspace,
        identify(userId="eve", traits={"plan": "pro"}, timestamp=at(9)),
        identify(userId="eve", traits={"plan": "free"}, timestamp=at(1)),
    )
    assert profile_of(db, workspace, user_id="eve").traits["plan"] == "pro"


def test_merge_by_hand_respects_caps_and_reads_both_ids(db: Database, workspace: str) -> None:
    send(
        db,
        workspace,
        identify(anonymousId="x1", timestamp=at(0)),
        identify(anonymousId="x2", timestamp=at(1)),
    )
    first = maybe_profile(db, workspace, anonymous_id="x1")[0]
    second = maybe_profile(db, workspace, anonymous_id="x2")[0]
    cap = IdentitySettings().cap
    with db.write() as session:
        record = profiles.merge_profiles(
            session=session,
            workspace_id=workspace,
            first=first,
            second=second,
            actor="agent",
            cap=cap,
        )
    assert {record.winner_id, record.loser_id} == {first, second}
    with db.read() as session:
        a = profiles.get_profile(session=session, workspace_id=workspace, profile_id=first)
        b = profiles.get_profile(session=session, workspace_id=workspace, profile_id=second)
    assert a.id == b.id
    with db.write() as session, pytest.raises(Conflict):
        profiles.merge_profiles(
            session=session,
            workspace_id=workspace,
            first=first,
            second=second,
            actor="agent",
            cap=cap,
        )


def test_unmerge_splits_traits_even_when_one_batch_created_and_merged(
    db: Database, workspace: str
) -> None:
    send(
        db,
        workspace,
        identify(userId="kim", traits={"first_name": "Kim"}, timestamp=at(0)),
        identify(anonymousId="tab-9", traits={"colour": "blue"}, timestamp=at(1)),
        identify(userId="kim", anonymousId="tab-9", timestamp=at(2)),
    )
    merged = profile_of(db, workspace, user_id="kim")
    assert merged.traits == {"first_name": "Kim", "colour": "blue"}
    with db.write() as session:
        profiles.unmerge(
            session=session, workspace_id=workspace, merge_id=merged.merges[0].id, actor="t"
        )
    assert profile_of(db, workspace, user_id="kim").traits == {"first_name": "Kim"}
    assert profile_of(db, workspace, anonymous_id="tab-9").traits == {"colour": "blue"}


def test_numeric_traits_round_trip(db: Database, workspace: str) -> None:
    send(
        db,
        workspace,
        identify(
            userId="num",
            traits={"visits": 3, "score": 2.5, "vip": True, "tags": ["a"], "none": None},
        ),
    )
    assert profile_of(db, workspace, user_id="num").traits == {
        "visits": 3,
        "score": 2.5,
        "vip": True,
        "tags": ["a"],
        "none": None,
    }

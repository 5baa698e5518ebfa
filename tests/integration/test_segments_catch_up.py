"""Segment membership kept current without a long write transaction, on both stores: consent
changes and merges made by hand reach segments at the next catch-up (seconds, not the next full
refresh), a merged person is one member, and a full refresh applied in short write
transactions stays correct when a profile changes while it runs."""

from __future__ import annotations

from typing import Any

from consentry.audiences import service as segments
from consentry.consent import service as consent
from consentry.platform.db import Database
from tests.integration.test_journey_merges import merge, unmerge
from tests.integration.test_segments_membership import (
    EMAIL,
    ago,
    create,
    members,
    person,
    views,
)
from tests.support.segment import identify
from tests.support.store import send

GOLD = {"trait": "plan", "op": "eq", "value": "gold"}
MAILABLE = {"consent": {"purpose": EMAIL, "channel": "email"}, "allowed": True}


def catch_up(db: Database, workspace: str) -> segments.RefreshReport:
    with db.write() as session:
        return segments.catch_up(session=session, workspace_id=workspace)


def record(db: Database, workspace: str, profile_id: str, state: str) -> None:
    with db.write() as session:
        consent.record(
            session=session,
            workspace_id=workspace,
            profile_id=profile_id,
            purpose=EMAIL,
            channel="email",
            state=state,
            source="web_form",
            actor="test",
        )


def count_of(db: Database, workspace: str, segment_id: str) -> int:
    with db.read() as session:
        found = segments.get_segment(session=session, workspace_id=workspace, segment_id=segment_id)
    return found.member_count


def test_a_consent_change_reaches_a_consent_segment_at_the_next_catch_up(
    db: Database, workspace: str
) -> None:
    ann = person(db, workspace, "ann", country="DE", plan="gold")
    bob = person(db, workspace, "bob", country="DE", plan="gold")
    made = create(db, workspace, "mailable gold", {"all": [GOLD, MAILABLE]})
    assert members(db, workspace, made.id) == set()  # opt-in regime, nobody asked yet
    idle = catch_up(db, workspace)
    assert idle.consent_records == 0 and idle.entered == 0

    record(db, workspace, ann, "granted")
    record(db, workspace, bob, "granted")
    report = catch_up(db, workspace)  # no event at all: the consent ledger names them
    assert (report.events, report.consent_records, report.entered) == (0, 2, 2)
    assert members(db, workspace, made.id) == {ann, bob}

    record(db, workspace, bob, "withdrawn")
    report = catch_up(db, workspace)
    assert (report.consent_records, report.exited) == (1, 1)
    assert members(db, workspace, made.id) == {ann} and count_of(db, workspace, made.id) == 1
    assert catch_up(db, workspace).consent_records == 0  # the cursor moved past them


def test_the_consent_catch_up_reads_at_most_its_limit_a_round(db: Database, workspace: str) -> None:
    people = [person(db, workspace, f"p{i}", country="DE", plan="gold") for i in range(5)]
    made = create(db, workspace, "mailable", {"all": [GOLD, MAILABLE]})
    for pid in people:
        record(db, workspace, pid, "granted")
    with db.write() as session:
        first = segments.catch_up(session=session, workspace_id=workspace, limit=3)
    assert (first.consent_records, first.entered) == (3, 3)
    assert catch_up(db, workspace).consent_records == 2
    assert members(db, workspace, made.id) == set(people)


def test_a_merge_by_hand_makes_one_member_at_the_next_catch_up_and_an_unmerge_two(
    db: Database, workspace: str
) -> None:
    ann = person(db, workspace, "ann", plan="gold", country="US")
    tab = person(db, workspace, "tab", plan="gold", country="US")
    gold = create(db, workspace, "gold", GOLD)
    mailable = create(db, workspace, "mailable", MAILABLE)  # consent only: no event kind
    assert members(db, workspace, gold.id) == {ann, tab}
    assert members(db, workspace, mailable.id) == {ann, tab}
    catch_up(db, workspace)

    record_ = merge(db, workspace, ann, tab)  # by hand: no event names either profile
    assert (record_.winner_id, record_.loser_id) == (ann, tab)
    report = catch_up(db, workspace)
    assert report.events == 0 and report.merges == 1
    assert members(db, workspace, gold.id) == {ann}  # one person, one member
    assert members(db, workspace, mailable.id) == {ann}
    assert count_of(db, workspace, gold.id) == 1
    with db.read() as session:
        left = segments.changes_after(session=session, workspace_id=workspace, after_id=0)
    assert [(c.segment_id, c.profile_id, c.entered) for c in left if not c.entered] == [
        (gold.id, tab, False),
        (mailable.id, tab, False),
    ]

    unmerge(db, workspace, record_.id)
    catch_up(db, workspace)
    assert members(db, workspace, gold.id) == {ann, tab}  # two people again
    assert count_of(db, workspace, gold.id) == 2


def test_a_full_refresh_in_steps_holds_no_long_write_and_a_change_meanwhile_is_caught_up(
    db: Database, workspace: str
) -> None:
    people = {person(db, workspace, f"p{i}", plan="free"): f"p{i}" for i in range(4)}
    gold = create(db, workspace, "gold", GOLD)
    browsers = create(
        db,
        workspace,
        "gold browsers",
        {"all": [{"segment": gold.id}, {"event": "Product Viewed", "within_days": 7}]},
    )
    with db.write() as session:  # a computed trait too: its values are applied in steps
        segments.create_computed_trait(
            session=session,
            workspace_id=workspace,
            definition={"name": "views_7d", "op": "count", "event": "Product Viewed"},
            actor="test",
        )
    catch_up(db, workspace)
    # everyone turns gold and views, and no catch-up runs: the stored membership is stale
    for user in people.values():
        send(
            db,
            workspace,
            identify(userId=user, traits={"plan": "gold"}, timestamp=ago(minutes=5)),
            *views(user, 1),
        )
    assert members(db, workspace, gold.id) == set()
    # the one whose entry is applied last changes back while the refresh runs
    last = max(people)
    seen: list[str] = []

    def meanwhile(step: str) -> None:
        """Between two write transactions of the refresh, after gold was evaluated and before
        ``last``'s entry is applied: another writer changes ``last`` and a catch-up runs."""
        seen.append(step)
        if step == f"segment {gold.id}" and seen.count(step) == 1:
            send(
                db,
                workspace,
                identify(userId=people[last], traits={"plan": "free"}, timestamp=ago(minutes=1)),
            )
            assert catch_up(db, workspace).events >= 1

    report = segments.refresh_in_steps(db, workspace_id=workspace, step=1, progress=meanwhile)
    assert report.mode == "full" and report.segments == 2
    assert report.values == 4  # views_7d of each
    # one change per write transaction (step=1): two cursor writes, four computed values and
    # the trait's mark, four entries of gold; gold browsers, evaluated after gold was applied,
    # found the three the catch-up let in already and one to add
    assert report.writes == 2 + 4 + 1 + 4 + 1
    assert 0 < report.longest_write_s < report.seconds
    assert seen.count("computed views_7d") == 5
    # the refresh applied ``last`` as it evaluated them (gold): stale for now ...
    assert members(db, workspace, gold.id) == set(people)
    # ... and the event cursor went back to where the refresh started, so the next catch-up
    # reads the change made meanwhile again and settles it
    again = catch_up(db, workspace)
    assert again.events >= 1 and again.exited == 2
    assert members(db, workspace, gold.id) == set(people) - {last}
    assert members(db, workspace, browsers.id) == set(people) - {last}
    assert count_of(db, workspace, gold.id) == 3
    assert count_of(db, workspace, browsers.id) == 3


def test_a_full_refresh_in_steps_leaves_a_segment_changed_meanwhile_alone(
    db: Database, workspace: str
) -> None:
    ann = person(db, workspace, "ann", plan="gold")
    gold = create(db, workspace, "gold", GOLD)
    send(db, workspace, identify(userId="ann", traits={"plan": "free"}, timestamp=ago(minutes=5)))
    bob = person(db, workspace, "bob", plan="silver")
    silver: dict[str, Any] = {"trait": "plan", "op": "eq", "value": "silver"}

    def meanwhile(step: str) -> None:
        if step == "cursor":  # the first write: before the segment is evaluated and applied
            with db.write() as session:
                segments.update_segment(
                    session=session,
                    workspace_id=workspace,
                    segment_id=gold.id,
                    actor="test",
                    rule=silver,
                )

    segments.refresh_in_steps(db, workspace_id=workspace, progress=meanwhile)
    assert members(db, workspace, gold.id) == {bob}  # the new rule's, not the old one's
    assert ann not in members(db, workspace, gold.id)

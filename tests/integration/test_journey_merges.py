"""Journeys when two profiles turn out to be one person (a merge after entry) and when an
unmerge separates them again, on both stores: one active enrollment per journey and person,
the rule applied at send time, frequency caps counted per person across merged members."""

from __future__ import annotations

from datetime import datetime, timedelta

from consentry.config import IdentitySettings, JourneySettings
from consentry.journeys.engine import TickReport
from consentry.platform.db import Database, utcnow
from consentry.profiles import service as profiles
from tests.integration.test_journey_engine import (
    abandoned_cart,
    checkout,
    enrollments,
    messages,
    noon,
    run,
    runs_of,
    setup_shop,
    shopper,
    start,
)
from tests.support.delivery import mail

NO_CAPS = JourneySettings(quiet_hours="off", frequency_caps={})


def merge(db: Database, workspace: str, first: str, second: str) -> profiles.MergeRecord:
    with db.write() as session:
        return profiles.merge_profiles(
            session=session,
            workspace_id=workspace,
            first=first,
            second=second,
            actor="test:agent",
            cap=IdentitySettings(max_user_ids=2).cap,  # two sign-ins of one person
        )


def unmerge(db: Database, workspace: str, merge_id: str) -> None:
    with db.write() as session:
        profiles.unmerge(
            session=session, workspace_id=workspace, merge_id=merge_id, actor="test:agent"
        )


def two_shoppers(db: Database, workspace: str) -> tuple[str, datetime, str, str, str]:
    """A shop with the abandoned-cart journey active from a minute before ``t0``, and two
    shoppers, ann and tab: (destination, t0, journey, ann, tab)."""
    dest = setup_shop(db, workspace)
    t0 = utcnow()
    journey = start(db, workspace, abandoned_cart(dest), t0 - timedelta(minutes=1))
    return dest, t0, journey, shopper(db, workspace, "ann"), shopper(db, workspace, "tab")


def test_two_enrollments_merged_into_one_person_send_the_step_once(
    db: Database, workspace: str
) -> None:
    _, t0, journey, ann, tab = two_shoppers(db, workspace)
    checkout(db, workspace, "ann", t0)
    checkout(db, workspace, "tab", t0)
    assert run(db, workspace, noon(), NO_CAPS).triggers.enrolled == 2
    first, second = enrollments(db, journey)
    assert (first.profile_id, second.profile_id) == (ann, tab)

    record = merge(db, workspace, tab, ann)
    assert (record.winner_id, record.loser_id) == (ann, tab)  # the older profile wins

    later: TickReport = run(db, workspace, t0 + timedelta(hours=5), NO_CAPS)
    assert (later.merged, later.sent) == (1, 1)
    kept, ended = enrollments(db, journey)
    assert kept.id == first.id and kept.status == "completed"  # the earliest goes on
    assert (ended.status, ended.end_reason, ended.open_profile_id) == ("exited", "merged", None)
    assert runs_of(db, workspace, journey) == [("mail", "sent", None)]
    (message,) = messages(db, workspace)
    assert message.subject_id == ann and message.key == f"journey:{first.id}:mail"
    again = run(db, workspace, t0 + timedelta(hours=6), NO_CAPS)
    assert (again.sent, again.merged, again.advanced) == (0, 0, 0)


def test_an_enrollment_under_a_merged_member_keeps_the_person_from_entering_twice(
    db: Database, workspace: str
) -> None:
    _, t0, journey, ann, tab = two_shoppers(db, workspace)
    checkout(db, workspace, "tab", t0)
    assert run(db, workspace, noon(), NO_CAPS).triggers.enrolled == 1
    merge(db, workspace, ann, tab)

    checkout(db, workspace, "ann", t0 + timedelta(seconds=1))  # a trigger on the merged person
    report = run(db, workspace, noon(), NO_CAPS)
    assert report.triggers.events == 1 and report.triggers.enrolled == 0
    (only,) = enrollments(db, journey)
    assert only.profile_id == tab and only.status == "active"

    done = run(db, workspace, t0 + timedelta(hours=5), NO_CAPS)
    assert done.sent == 1 and done.merged == 0
    (message,) = messages(db, workspace)
    assert message.subject_id == ann  # the person as they are now: the unified profile

    # done once: no re-entry for the person, whichever member profile the trigger names
    checkout(db, workspace, "tab", t0 + timedelta(hours=6))
    assert run(db, workspace, t0 + timedelta(hours=6, seconds=1), NO_CAPS).triggers.enrolled == 0


def test_an_exit_on_event_of_the_merged_person_ends_the_members_enrollment(
    db: Database, workspace: str
) -> None:
    _, t0, journey, ann, tab = two_shoppers(db, workspace)
    checkout(db, workspace, "tab", t0)
    assert run(db, workspace, noon(), NO_CAPS).triggers.enrolled == 1
    merge(db, workspace, ann, tab)
    checkout(db, workspace, "ann", t0 + timedelta(seconds=2), event="Order Completed")
    assert run(db, workspace, noon(), NO_CAPS).triggers.exited == 1
    (gone,) = enrollments(db, journey)
    assert gone.status == "exited" and gone.end_reason == "exit_on: Order Completed"
    assert run(db, workspace, t0 + timedelta(hours=5), NO_CAPS).sent == 0


def test_after_an_unmerge_the_separated_person_can_enter_again(
    db: Database, workspace: str
) -> None:
    _, t0, journey, ann, tab = two_shoppers(db, workspace)
    checkout(db, workspace, "ann", t0)
    checkout(db, workspace, "tab", t0)
    assert run(db, workspace, noon(), NO_CAPS).triggers.enrolled == 2
    record = merge(db, workspace, ann, tab)
    assert run(db, workspace, t0 + timedelta(hours=5), NO_CAPS).merged == 1

    unmerge(db, workspace, record.id)  # two people again
    checkout(db, workspace, "tab", t0 + timedelta(hours=5))
    back = run(db, workspace, t0 + timedelta(hours=5, seconds=1), NO_CAPS)
    assert back.triggers.enrolled == 1  # the merge's exit does not count against re-entry
    rows = enrollments(db, journey)
    assert [(r.profile_id, r.status, r.end_reason) for r in rows] == [
        (ann, "completed", None),
        (tab, "exited", "merged"),
        (tab, "active", None),
    ]
    assert run(db, workspace, t0 + timedelta(hours=10), NO_CAPS).sent == 1
    assert sorted(m.subject_id or "" for m in messages(db, workspace)) == sorted([ann, tab])


def test_two_enrollments_left_apart_by_an_unmerge_both_go_on(db: Database, workspace: str) -> None:
    _, t0, _, ann, tab = two_shoppers(db, workspace)
    checkout(db, workspace, "ann", t0)
    checkout(db, workspace, "tab", t0)
    assert run(db, workspace, noon(), NO_CAPS).triggers.enrolled == 2
    record = merge(db, workspace, ann, tab)
    unmerge(db, workspace, record.id)  # before any step ran: two people, two enrollments
    report = run(db, workspace, t0 + timedelta(hours=5), NO_CAPS)
    assert (report.merged, report.sent) == (0, 2)
    assert sorted(m.subject_id or "" for m in messages(db, workspace)) == sorted([ann, tab])


def test_frequency_caps_count_the_persons_messages_across_merged_members(
    db: Database, workspace: str
) -> None:
    dest, t0, journey, ann, tab = two_shoppers(db, workspace)
    # a message to the second profile while it was a person of its own
    assert mail(db, workspace, dest, "earlier", to="tab@example.com", subject_id=tab)
    merge(db, workspace, ann, tab)
    checkout(db, workspace, "ann", t0)
    assert run(db, workspace, noon()).triggers.enrolled == 1
    capped = JourneySettings(quiet_hours="off", frequency_caps={"email": "1/7d"})
    report = run(db, workspace, t0 + timedelta(hours=5), capped)
    assert report.sent == 0 and report.skipped == {"frequency_cap": 1}
    assert runs_of(db, workspace, journey) == [("mail", "skipped", "frequency_cap: 1 per 7 days")]

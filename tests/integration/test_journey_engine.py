"""The journey engine against a real store (SQLite and PostgreSQL): events ingested through the
ingestion service, consent through the ledger, destinations through delivery, messages into
the real outbox and out through a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from consentry.config import JourneySettings, Settings
from consentry.delivery import outbox, suppressions
from consentry.delivery.webhook import send as post
from consentry.journeys import service
from consentry.journeys.engine import TickReport, tick
from consentry.journeys.tables import EnrollmentRow, StepRunRow
from consentry.journeys.templates import LinkMaker
from consentry.platform.db import Database, utcnow
from tests.conftest import new_workspace
from tests.support.delivery import (
    EMAIL_PURPOSE,
    destination,
    grant,
    person,
    processor,
    smtp_server,
)
from tests.support.segment import identify, track
from tests.support.store import send

LINKS = LinkMaker(secret="test-secret-" + "x" * 40, public_url="https://shop.example")
CALM = JourneySettings(quiet_hours="off")
MAIL = {
    "subject": "You left {{ cart.count }} items, {{ profile.first_name or 'friend' }}",
    "text": "Come back! Unsubscribe: {{ unsubscribe_url }}",
    "html": "<p>Come back!</p><a href='{{ unsubscribe_url }}'>Unsubscribe</a>",
}


def abandoned_cart(destination_id: str, **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": "Abandoned cart",
        "trigger": {"type": "event", "event": "Checkout Started"},
        "exit_on": {"event": "Order Completed"},
        "goal": {"event": "Order Completed", "within_days": 7},
        "steps": [
            {"id": "wait", "type": "wait", "hours": 4},
            {
                "id": "mail",
                "type": "email",
                "destination_id": destination_id,
                "purpose": EMAIL_PURPOSE,
                "template": MAIL,
            },
        ],
    }
    doc.update(extra)
    return doc


def setup_shop(db: Database, workspace: str) -> str:
    """A registered processor and an email destination bound to it; returns the destination."""
    return destination(db, workspace, processor(db, workspace)).destination.id


def start(db: Database, workspace: str, document: dict[str, Any], at: datetime) -> str:
    with db.write() as session:
        made = service.create_journey(
            session=session, workspace_id=workspace, document=document, actor="test:journeys"
        )
        service.change_status(
            session=session,
            workspace_id=workspace,
            journey_id=made.id,
            action="activate",
            actor="test:journeys",
            now=at,
        )
    return made.id


def run(db: Database, workspace: str, at: datetime, settings: JourneySettings = CALM) -> TickReport:
    return service.run(db, workspace, settings, links=LINKS, now=at)


def shopper(db: Database, workspace: str, user_id: str, **traits: Any) -> str:
    traits.setdefault("email", f"{user_id}@example.com")
    traits.setdefault("first_name", "Ada")
    pid = person(db, workspace, user_id, **traits)
    grant(db, workspace, pid)
    return pid


def checkout(
    db: Database, workspace: str, user_id: str, at: datetime, event: str = "Checkout Started"
) -> None:
    send(
        db,
        workspace,
        track(event, userId=user_id, timestamp=at.isoformat(), properties={"cart_id": "cart-1"}),
    )


def runs_of(db: Database, workspace: str, journey_id: str) -> list[tuple[str, str, str | None]]:
    with db.read() as session:
        return [
            (r.step, r.outcome, r.reason)
            for r in session.scalars(
                select(StepRunRow)
                .where(StepRunRow.journey_id == journey_id)
                .order_by(StepRunRow.id)
            )
        ]


def enrollments(db: Database, journey_id: str) -> list[EnrollmentRow]:
    with db.read() as session:
        rows = list(
            session.scalars(
                select(EnrollmentRow)
                .where(EnrollmentRow.journey_id == journey_id)
                .order_by(EnrollmentRow.id)
            )
        )
        session.expunge_all()  # plain snapshots: the read's rollback must not expire them
        return rows


def messages(db: Database, workspace: str) -> list[outbox.OutboxMessage]:
    with db.read() as session:
        return outbox.list_messages(session=session, workspace_id=workspace)[1]


def noon() -> datetime:
    """A moment a little after now (events are recent, never in the future of the rounds)."""
    return utcnow() + timedelta(seconds=1)


def test_abandoned_cart_end_to_end_waits_then_mails_once_over_smtp(
    db: Database, workspace: str
) -> None:
    dest = setup_shop(db, workspace)
    t0 = utcnow()
    journey = start(db, workspace, abandoned_cart(dest), t0 - timedelta(minutes=1))
    pid = shopper(db, workspace, "u1", first_name="Grace")
    for sku in ("sku-1", "sku-2"):
        send(
            db,
            workspace,
            track(
                "Product Added",
                userId="u1",
                timestamp=t0.isoformat(),
                properties={"cart_id": "cart-1", "product_id": sku, "price": 10, "quantity": 1},
            ),
        )
    checkout(db, workspace, "u1", t0)

    first = run(db, workspace, noon())
    assert first.triggers.enrolled == 1 and first.sent == 0
    (enrolled,) = enrollments(db, journey)
    assert enrolled.profile_id == pid and enrolled.status == "active"
    assert enrolled.step == "mail"
    assert set(enrolled.trigger) == {"type", "event", "event_id", "at"}  # ids only, no values
    assert enrolled.due_at is not None and enrolled.due_at > t0 + timedelta(hours=3, minutes=59)
    assert messages(db, workspace) == []

    later = run(db, workspace, t0 + timedelta(hours=5))
    assert later.sent == 1 and later.completed == 1
    again = run(db, workspace, t0 + timedelta(hours=6))
    assert again.sent == 0 and again.advanced == 0
    (message,) = messages(db, workspace)
    assert message.key == f"journey:{enrolled.id}:mail"
    assert message.subject_id == pid and message.origin == f"journey:{journey}:mail"
    assert runs_of(db, workspace, journey) == [("mail", "sent", None)]
    (done,) = enrollments(db, journey)
    assert done.status == "completed" and done.open_profile_id is None

    with smtp_server() as (sink, mailer):
        report = outbox.deliver_due(
            db, mailer=mailer, post=post, workspace_id=workspace, now=utcnow() + timedelta(hours=6)
        )
        assert report.sent == 1
        (mail,) = sink.messages()
    assert mail["To"] == "u1@example.com"
    assert mail["Subject"] == "You left 2 items, Grace"
    assert "List-Unsubscribe" in mail and "List-Unsubscribe-Post" in mail
    body = mail.get_body(("plain",))
    assert body is not None and "https://shop.example/" in body.get_content()


def test_an_order_before_the_wait_ends_exits_and_nothing_is_sent(
    db: Database, workspace: str
) -> None:
    dest = setup_shop(db, workspace)
    t0 = utcnow()
    journey = start(db, workspace, abandoned_cart(dest), t0 - timedelta(minutes=1))
    shopper(db, workspace, "u1")
    checkout(db, workspace, "u1", t0)
    assert run(db, workspace, noon()).triggers.enrolled == 1
    checkout(db, workspace, "u1", t0 + timedelta(seconds=1), event="Order Completed")
    assert run(db, workspace, noon()).triggers.exited == 1
    assert run(db, workspace, t0 + timedelta(hours=5)).sent == 0
    (gone,) = enrollments(db, journey)
    assert gone.status == "exited" and gone.end_reason == "exit_on: Order Completed"
    assert messages(db, workspace) == []


def test_an_order_in_the_same_batch_after_the_checkout_exits_at_once(
    db: Database, workspace: str
) -> None:
    dest = setup_shop(db, workspace)
    t0 = utcnow()
    journey = start(db, workspace, abandoned_cart(dest), t0 - timedelta(minutes=1))
    shopper(db, workspace, "u1")
    checkout(db, workspace, "u1", t0)
    checkout(db, workspace, "u1", t0, event="Order Completed")
    report = run(db, workspace, noon())
    assert report.triggers.enrolled == 1 and report.triggers.exited == 1
    assert [e.status for e in enrollments(db, journey)] == ["exited"]


def test_denied_consent_skips_the_send_with_its_reason(db: Database, workspace: str) -> None:
    dest = setup_shop(db, workspace)
    t0 = utcnow()
    journey = start(db, workspace, abandoned_cart(dest), t0 - timedelta(minutes=1))
    pid = shopper(db, workspace, "u1")
    grant(db, workspace, pid, state="withdrawn")
    checkout(db, workspace, "u1", t0)
    run(db, workspace, noon())
    report = run(db, workspace, t0 + timedelta(hours=5))
    assert report.sent == 0 and report.skipped["consent"] == 1
    ((step, outcome, reason),) = runs_of(db, workspace, journey)
    assert (step, outcome) == ("mail", "skipped") and reason is not None
    assert reason.startswith("consent: ")
    assert messages(db, workspace) == []
    assert enrollments(db, journey)[0].status == "completed"


def test_quiet_hours_in_the_customers_time_zone_defer_then_send(
    db: Database, workspace: str
) -> None:
    dest = setup_shop(db, workspace)
    quiet = JourneySettings(quiet_hours="21:00-08:00")
    doc = abandoned_cart(dest)
    doc["steps"] = doc["steps"][1:]  # mail at once
    t0 = utcnow()
    journey = start(db, workspace, doc, t0 - timedelta(minutes=1))
    shopper(db, workspace, "u1", timezone="Asia/Tokyo")
    checkout(db, workspace, "u1", t0)
    tokyo = timedelta(hours=9)
    # the next 23:00 in Tokyo after t0, as UTC
    local = (t0 + tokyo).replace(hour=23, minute=0, second=0, microsecond=0)
    late = (local if local > t0 + tokyo else local + timedelta(days=1)) - tokyo
    first = run(db, workspace, late, quiet)
    assert first.deferred == 1 and first.sent == 0
    (waiting,) = enrollments(db, journey)
    assert waiting.step == "mail" and waiting.due_at == late + timedelta(hours=9)  # 08:00 Tokyo
    ((_, outcome, reason),) = runs_of(db, workspace, journey)
    assert outcome == "deferred" and reason == "quiet_hours: until 08:00 Asia/Tokyo"
    assert run(db, workspace, late + timedelta(hours=8), quiet).sent == 0  # still 07:00 there
    assert run(db, workspace, late + timedelta(hours=9), quiet).sent == 1
    assert len(messages(db, workspace)) == 1


def test_the_frequency_cap_skips_a_send_over_the_channels_limit(
    db: Database, workspace: str
) -> None:
    dest = setup_shop(db, workspace)
    capped = JourneySettings(quiet_hours="off", frequency_caps={"email": "1/7d"})
    t0 = utcnow()
    first = start(db, workspace, abandoned_cart(dest), t0 - timedelta(minutes=1))
    second = start(
        db,
        workspace,
        abandoned_cart(dest, name="Abandoned cart, again"),
        t0 - timedelta(minutes=1),
    )
    shopper(db, workspace, "u1")
    checkout(db, workspace, "u1", t0)
    run(db, workspace, noon(), capped)
    report = run(db, workspace, t0 + timedelta(hours=5), capped)
    assert report.sent == 1 and report.skipped["frequency_cap"] == 1
    outcomes = sorted(runs_of(db, workspace, j)[0][1:] for j in (first, second))
    assert outcomes == [("sent", None), ("skipped", "frequency_cap: 1 per 7 days")]
    assert len(messages(db, workspace)) == 1


def test_a_suppressed_address_is_skipped(db: Database, workspace: str) -> None:
    dest = setup_shop(db, workspace)
    t0 = utcnow()
    journey = start(db, workspace, abandoned_cart(dest), t0 - timedelta(minutes=1))
    shopper(db, workspace, "u1")
    with db.write() as session:
        suppressions.add(
            session=session,
            workspace_id=workspace,
            channel="email",
            address="U1@Example.com",
            reason="complaint",
            actor="test:journeys",
        )
    checkout(db, workspace, "u1", t0)
    run(db, workspace, noon())
    assert run(db, workspace, t0 + timedelta(hours=5)).skipped["suppressed"] == 1
    assert runs_of(db, workspace, journey) == [("mail", "skipped", "suppressed")]
    assert messages(db, workspace) == []


def test_the_holdout_is_kept_for_attribution_and_never_sent(db: Database, workspace: str) -> None:
    dest = setup_shop(db, workspace)
    doc = abandoned_cart(dest)
    doc["steps"] = [
        {
            "id": "split",
            "type": "split",
            "holdout_percent": 50,
            "variants": [{"name": "A", "weight": 1, "next": "mail"}],
        },
        doc["steps"][1],
    ]
    t0 = utcnow()
    journey = start(db, workspace, doc, t0 - timedelta(minutes=1))
    for i in range(12):
        shopper(db, workspace, f"u{i}")
        checkout(db, workspace, f"u{i}", t0)
    report = run(db, workspace, noon())
    assert report.triggers.enrolled == 12
    rows = enrollments(db, journey)
    held = [e for e in rows if e.status == "held_out"]
    sent = [e for e in rows if e.status == "completed"]
    assert held and sent and len(held) + len(sent) == 12
    assert all(e.variant == "holdout" for e in held) and all(e.variant == "A" for e in sent)
    assert report.held_out == len(held) and report.sent == len(sent)
    subjects = {m.subject_id for m in messages(db, workspace)}
    assert subjects == {e.profile_id for e in sent}
    assert not subjects & {e.profile_id for e in held}


def test_two_rounds_at_once_send_one_message(db: Database, workspace: str) -> None:
    dest = setup_shop(db, workspace)
    doc = abandoned_cart(dest)
    doc["steps"] = doc["steps"][1:]
    t0 = utcnow()
    start(db, workspace, doc, t0 - timedelta(minutes=1))
    shopper(db, workspace, "u1")
    checkout(db, workspace, "u1", t0)
    results: list[object] = []

    def one() -> None:
        try:
            results.append(run(db, workspace, noon()).sent)
        except Exception as exc:  # a Conflict is a refused round, not a second send
            results.append(exc)

    threads = [threading.Thread(target=one) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    run(db, workspace, noon())
    assert sum(r for r in results if isinstance(r, int)) == 1
    assert len(messages(db, workspace)) == 1


def test_the_same_step_is_enqueued_once_even_when_run_again(db: Database, workspace: str) -> None:
    dest = setup_shop(db, workspace)
    doc = abandoned_cart(dest)
    doc["steps"] = doc["steps"][1:]
    t0 = utcnow()
    journey = start(db, workspace, doc, t0 - timedelta(minutes=1))
    shopper(db, workspace, "u1")
    checkout(db, workspace, "u1", t0)
    assert run(db, workspace, noon()).sent == 1
    # a crash after the send was enqueued but before the enrollment moved: run it again
    with db.write() as session:
        row = session.scalars(
            select(EnrollmentRow).where(EnrollmentRow.journey_id == journey)
        ).one()
        row.status, row.open_profile_id, row.step, row.due_at = (
            "active",
            row.profile_id,
            "mail",
            noon(),
        )
    report = run(db, workspace, noon())
    assert report.sent == 0 and report.skipped["already_sent"] == 1
    assert len(messages(db, workspace)) == 1


def test_inactivity_enrolls_people_whose_silence_crosses_the_threshold(
    db: Database, workspace: str
) -> None:
    dest = setup_shop(db, workspace)
    now = utcnow()
    doc = abandoned_cart(dest, name="Win-back", trigger={"type": "inactivity", "days": 90})
    doc.pop("exit_on")
    journey = start(db, workspace, doc, now)
    for user, days in (("lapsing", 85), ("long-gone", 200), ("active", 1)):
        send(
            db,
            workspace,
            identify(
                userId=user,
                traits={"email": f"{user}@example.com"},
                timestamp=(now - timedelta(days=days)).isoformat(),
            ),
        )
    report = run(db, workspace, now + timedelta(days=11))
    assert report.triggers.enrolled == 1
    (row,) = enrollments(db, journey)
    with db.read() as session:
        from consentry.profiles import service as profiles

        lapsing = profiles.search_identifiers(
            session=session, workspace_id=workspace, user_id="lapsing"
        )
    assert [row.profile_id] == lapsing and row.trigger["type"] == "inactivity"
    # the next scan looks on from the last: nobody twice
    assert run(db, workspace, now + timedelta(days=11, hours=2)).triggers.enrolled == 0


def test_a_birthday_in_the_customers_time_zone_enrolls(db: Database, workspace: str) -> None:
    dest = setup_shop(db, workspace)
    now = utcnow()
    doc = abandoned_cart(dest, name="Birthday", trigger={"type": "date_trait", "trait": "birthday"})
    doc.pop("exit_on")
    journey = start(db, workspace, doc, now - timedelta(hours=2))
    at = datetime(now.year, now.month, now.day, 12, 0, tzinfo=UTC) + timedelta(days=1)
    kiritimati = (at + timedelta(hours=14)).date()  # UTC+14: already the next day there
    people = {
        "kiri": {"birthday": f"1990-{kiritimati:%m-%d}", "timezone": "Pacific/Kiritimati"},
        "kiri-tomorrow": {"birthday": f"1990-{at:%m-%d}", "timezone": "Pacific/Kiritimati"},
        "utc": {"birthday": f"1985-{at:%m-%d}"},
        "other": {"birthday": f"1985-{at + timedelta(days=3):%m-%d}"},
    }
    ids = {user: shopper(db, workspace, user, **traits) for user, traits in people.items()}
    report = run(db, workspace, at)
    enrolled = {e.profile_id for e in enrollments(db, journey)}
    assert report.triggers.enrolled == len(enrolled) == 2
    assert enrolled == {ids["kiri"], ids["utc"]}
    assert run(db, workspace, at + timedelta(hours=2)).triggers.enrolled == 0  # never twice


def test_workspaces_do_not_see_each_others_triggers(db: Database, workspace: str) -> None:
    dest = setup_shop(db, workspace)
    t0 = utcnow()
    journey = start(db, workspace, abandoned_cart(dest), t0 - timedelta(minutes=1))
    other = new_workspace(db)
    person(db, other, "u1", email="u1@example.com")
    checkout(db, other, "u1", t0)
    assert run(db, workspace, noon()).triggers.enrolled == 0
    assert run(db, other, noon()).triggers.enrolled == 0  # no journeys there
    assert enrollments(db, journey) == []


def test_a_paused_journey_holds_its_enrollments_and_a_new_version_leaves_them_be(
    db: Database, workspace: str
) -> None:
    dest = setup_shop(db, workspace)
    t0 = utcnow()
    journey = start(db, workspace, abandoned_cart(dest), t0 - timedelta(minutes=1))
    shopper(db, workspace, "u1")
    checkout(db, workspace, "u1", t0)
    run(db, workspace, noon())
    with db.write() as session:
        service.change_status(
            session=session,
            workspace_id=workspace,
            journey_id=journey,
            action="pause",
            actor="test:journeys",
        )
        changed = abandoned_cart(dest)
        changed["steps"][0]["hours"] = 48
        service.update_journey(
            session=session,
            workspace_id=workspace,
            journey_id=journey,
            document=changed,
            actor="test:journeys",
        )
    assert run(db, workspace, t0 + timedelta(hours=5)).advanced == 0
    with db.write() as session:
        service.change_status(
            session=session,
            workspace_id=workspace,
            journey_id=journey,
            action="activate",
            actor="test:journeys",
            now=t0 + timedelta(hours=5),
        )
    report = run(db, workspace, t0 + timedelta(hours=5))
    assert report.sent == 1  # version 1's 4 hours, not version 2's 48
    (row,) = enrollments(db, journey)
    assert row.version == 1
    with db.read() as session:
        stats = service.journey_stats(session=session, workspace_id=workspace, journey_id=journey)
    assert stats["version"] == 2 and stats["entered"] == 1 and stats["sent"] == 1


def test_erasing_a_subject_removes_their_enrollments(db: Database, workspace: str) -> None:
    dest = setup_shop(db, workspace)
    t0 = utcnow()
    journey = start(db, workspace, abandoned_cart(dest), t0 - timedelta(minutes=1))
    pid = shopper(db, workspace, "u1")
    checkout(db, workspace, "u1", t0)
    run(db, workspace, noon())
    run(db, workspace, t0 + timedelta(hours=5))
    with db.write() as session:
        assert (
            service.erase_subject(session=session, workspace_id=workspace, profile_ids=[pid]) == 1
        )
    assert enrollments(db, journey) == [] and runs_of(db, workspace, journey) == []


def test_tick_without_active_journeys_does_nothing(db: Database, workspace: str) -> None:
    with db.write() as session:
        report = tick(session, workspace_id=workspace, now=utcnow(), settings=CALM, links=LINKS)
        assert not service.has_active(session=session, workspace_id=workspace)
    assert report.document()["advanced"] == 0


@pytest.mark.parametrize("channel_trait", ["phone"])
def test_an_sms_step_sends_to_the_profiles_phone(
    db: Database, workspace: str, channel_trait: str
) -> None:
    proc = processor(db, workspace)
    sms = destination(
        db,
        workspace,
        proc,
        name="Texts",
        kind="sms",
        purpose="marketing.communications.sms",
        url="https://sms.example/send",
    ).destination.id
    doc = {
        "name": "Text me",
        "trigger": {"type": "event", "event": "Checkout Started"},
        "steps": [
            {
                "id": "text",
                "type": "sms",
                "destination_id": sms,
                "purpose": "marketing.communications.sms",
                "template": {"text": "Hi {{ profile.first_name or 'there' }}, your cart waits."},
            }
        ],
    }
    t0 = utcnow()
    journey = start(db, workspace, doc, t0 - timedelta(minutes=1))
    pid = person(db, workspace, "u1", **{channel_trait: "+49 151 23456789"})
    grant(db, workspace, pid, purpose="marketing.communications.sms", channel="sms")
    checkout(db, workspace, "u1", t0)
    assert run(db, workspace, noon()).sent == 1
    (message,) = messages(db, workspace)
    assert message.channel == "sms" and message.origin == f"journey:{journey}:text"


def test_entering_a_segment_enrolls(db: Database, workspace: str) -> None:
    from consentry.audiences import service as audiences

    dest = setup_shop(db, workspace)
    t0 = utcnow()
    shopper(db, workspace, "gold", plan="gold")
    shopper(db, workspace, "basic", plan="basic")
    with db.write() as session:
        early, _ = audiences.create_segment(
            session=session,
            workspace_id=workspace,
            name="Gold before",
            rule={"trait": "plan", "op": "eq", "value": "gold"},
            actor="test:journeys",
            now=t0 - timedelta(hours=1),
        )
    doc = abandoned_cart(dest, name="Welcome to gold")
    doc.pop("exit_on")
    doc["trigger"] = {"type": "segment_entered", "segment_id": early.id}
    start(db, workspace, doc, t0)
    # entries from before the journey was switched on enroll nobody
    assert run(db, workspace, t0 + timedelta(minutes=1)).triggers.enrolled == 0
    with db.write() as session:
        segment, _ = audiences.create_segment(
            session=session,
            workspace_id=workspace,
            name="Gold",
            rule={"trait": "plan", "op": "eq", "value": "gold"},
            actor="test:journeys",
            now=t0 + timedelta(minutes=2),
        )
    doc["name"] = "Gold entered"
    doc["trigger"] = {"type": "segment_entered", "segment_id": segment.id}
    journey = start(db, workspace, doc, t0 + timedelta(minutes=1))
    report = run(db, workspace, t0 + timedelta(minutes=3))
    assert report.triggers.changes >= 1 and report.triggers.enrolled == 1
    (row,) = enrollments(db, journey)
    assert row.trigger["type"] == "segment_entered" and row.trigger["segment_id"] == segment.id
    with db.read() as session:
        assert audiences.is_member(
            session=session,
            workspace_id=workspace,
            segment_id=segment.id,
            profile_id=row.profile_id,
        )


def test_a_branch_and_the_eligibility_rule_are_asked_at_send_time(
    db: Database, workspace: str
) -> None:
    dest = setup_shop(db, workspace)
    doc = abandoned_cart(dest, eligibility={"trait": "instalments", "op": "not_exists"})
    doc["steps"] = [
        {
            "id": "is-gold",
            "type": "branch",
            "rule": {"trait": "plan", "op": "eq", "value": "gold"},
            "then": "mail",
            "else": "end",
        },
        doc["steps"][1],
    ]
    t0 = utcnow()
    journey = start(db, workspace, doc, t0 - timedelta(minutes=1))
    ids = {
        "gold": shopper(db, workspace, "gold", plan="gold"),
        "basic": shopper(db, workspace, "basic", plan="basic"),
        "paying": shopper(db, workspace, "paying", plan="gold", instalments=3),
    }
    for user in ids:
        checkout(db, workspace, user, t0)
    report = run(db, workspace, noon())
    assert report.sent == 1 and report.skipped["not_eligible"] == 1
    (message,) = messages(db, workspace)
    assert message.subject_id == ids["gold"]
    with db.read() as session:
        found = {
            pid: [(s["step"], s["outcome"], s["reason"]) for s in e["steps"]]
            for pid in ids.values()
            for e in service.enrollments_of(session=session, workspace_id=workspace, profile_id=pid)
        }
    assert found[ids["gold"]] == [("is-gold", "branched", "then"), ("mail", "sent", None)]
    assert found[ids["basic"]] == [("is-gold", "branched", "else")]
    assert found[ids["paying"]] == [
        ("is-gold", "branched", "then"),
        ("mail", "skipped", "not_eligible"),
    ]
    assert {e.status for e in enrollments(db, journey)} == {"completed"}


def test_the_schedule_works_through_a_backlog_in_one_tick(db: Database, workspace: str) -> None:
    """With more triggers waiting than one batch, rounds follow one another at once until
    the backlog is read (the schedule's rate is the engine's, not one batch per tick)."""
    dest = setup_shop(db, workspace)
    t0 = utcnow()
    start(db, workspace, abandoned_cart(dest), t0 - timedelta(minutes=1))
    for n in range(5):
        shopper(db, workspace, f"b{n}")
        checkout(db, workspace, f"b{n}", t0)
    small = Settings(
        environment="test", journeys=JourneySettings(trigger_batch=2, quiet_hours="off")
    )
    reports = service.run_backlog(db, workspace, small, budget_seconds=60)
    assert [r.triggers.events for r in reports][:3] == [2, 2, 2]  # identifies count as events
    assert sum(r.triggers.enrolled for r in reports) == 5
    assert reports[-1].triggers.events < 2  # stopped once a round read less than a batch
    assert service.run_backlog(db, workspace, small, budget_seconds=0)[0].triggers.enrolled == 0

"""The outbox against a real store (SQLite and PostgreSQL), a real SMTP server (aiosmtpd) and
a real HTTP server: exactly once, retries and the dead-letter list, a failing destination
next to a healthy one, and the checks at every attempt (consent, suppression, the processor
gate, erasure)."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from email.message import EmailMessage

import pytest
from sqlalchemy import select

from consentry.config import DeliverySettings
from consentry.delivery import destinations, outbox, suppressions
from consentry.delivery.models import Sent
from consentry.delivery.smtp import SmtpMailer
from consentry.delivery.tables import OutboxMessageRow
from consentry.delivery.webhook import SIGNATURE_HEADER, send, verify_signature
from consentry.errors import Conflict, Invalid, NotFound
from consentry.platform.db import Database, utcnow
from consentry.platform.vault import is_token
from consentry.privacy import erasure_service, processor_service
from tests.conftest import new_workspace
from tests.support.delivery import (
    FAST,
    SMS_PURPOSE,
    destination,
    grant,
    hook,
    hook_server,
    mail,
    person,
    processor,
    smtp_server,
    status_of,
    webhook,
)


def run(
    db: Database,
    workspace: str,
    mailer: object,
    *,
    at: timedelta = timedelta(0),
    settings: DeliverySettings = FAST,
) -> outbox.DeliveryReport:
    return outbox.deliver_due(
        db,
        mailer=mailer,  # type: ignore[arg-type]
        post=send,
        now=utcnow() + at,
        settings=settings,
        from_address="shop@example.com",
        from_name="The Shop",
        workspace_id=workspace,
        jitter=lambda: 0.0,
    )


class NoMail:
    def send(self, message: EmailMessage) -> Sent:
        raise AssertionError("no mail expected")


def test_an_email_goes_out_once_over_smtp_with_its_unsubscribe_headers(
    db: Database, workspace: str
) -> None:
    ada = person(db, workspace, "u-ada", email="ada@example.com")
    grant(db, workspace, ada)
    newsletter = destination(db, workspace, processor(db, workspace)).destination
    headers = {
        "List-Unsubscribe": "<https://shop.example/u/tok>, <mailto:unsub@shop.example>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    first = mail(
        db,
        workspace,
        newsletter.id,
        "j1:mail:ada",
        to="Ada@Example.com",
        subject_id=ada,
        headers=headers,
    )
    again = mail(db, workspace, newsletter.id, "j1:mail:ada", to="ada@example.com", subject_id=ada)
    assert first is not None and again is None  # the same key: stored once
    with db.read() as session:
        row = session.get(OutboxMessageRow, first)
        assert row is not None and is_token(row.to) and is_token(row.content)  # sealed at rest
        assert "ada@" not in (row.to or "").lower()
    with smtp_server() as (sink, mailer):
        report = run(db, workspace, mailer)
        assert (report.sent, report.retrying, report.dead) == (1, 0, 0)
        assert run(db, workspace, mailer).attempted == 0  # nothing due any more
        (received,) = sink.messages()
    assert received["To"] == "Ada@Example.com"
    assert received["From"] == "The Shop <shop@example.com>"
    assert received["Subject"] == "Hello"
    assert received["List-Unsubscribe"] == headers["List-Unsubscribe"]
    assert received["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    sent = status_of(db, workspace, first)
    assert sent.status == "sent" and sent.attempts == 1
    assert sent.provider_message_id == received["Message-ID"]
    with db.read() as session:
        row = session.get(OutboxMessageRow, first)
        assert row is not None and row.to is None and row.content is None  # dropped once sent
        assert (
            outbox.sent_count(
                session=session,
                workspace_id=workspace,
                subject_id=ada,
                channel="email",
                since=utcnow() - timedelta(days=7),
            )
            == 1
        )
        assert (
            outbox.sent_count(
                session=session,
                workspace_id=workspace,
                subject_id=ada,
                channel="email",
                since=utcnow() + timedelta(minutes=1),
            )
            == 0
        )


class SlowMailer(SmtpMailer):
    def send(self, message: EmailMessage) -> Sent:
        time.sleep(0.3)
        return super().send(message)


def test_two_workers_at_once_send_each_message_once(db: Database, workspace: str) -> None:
    newsletter = destination(db, workspace, processor(db, workspace)).destination
    ids = [
        mail(
            db,
            workspace,
            newsletter.id,
            f"k{i}",
            to=f"p{i}@example.com",
            subject_id=None,
            purpose=None,
        )
        for i in range(4)
    ]
    with smtp_server() as (sink, mailer):
        slow = SlowMailer(mailer.settings)
        reports: list[outbox.DeliveryReport] = []
        workers = [
            threading.Thread(target=lambda: reports.append(run(db, workspace, slow)))
            for _ in range(2)
        ]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert sum(r.sent for r in reports) == 4
        assert sorted(str(m["To"]) for m in sink.messages()) == [
            f"p{i}@example.com" for i in range(4)
        ]
    assert {status_of(db, workspace, str(i)).status for i in ids} == {"sent"}


def test_a_webhook_is_signed_retried_with_backoff_then_delivered(
    db: Database, workspace: str
) -> None:
    with hook_server() as server:
        made = webhook(db, workspace, server.url("/crm"), name="CRM", purpose=SMS_PURPOSE)
        assert made.secret and made.secret.startswith("whsec_")
        server.answer("/crm", 503, 200)
        message = hook(db, workspace, made.destination.id, "export:1:0", {"ids": ["a", "b"]})
        assert message is not None
        first = run(db, workspace, NoMail())
        assert (first.sent, first.retrying) == (0, 1)
        waiting = status_of(db, workspace, message)
        assert waiting.status == "retrying" and waiting.last_error == "HTTP 503"
        assert waiting.next_attempt_at is not None
        assert waiting.next_attempt_at - utcnow() > timedelta(seconds=20)  # base 60 s, jitter 0
        assert run(db, workspace, NoMail()).attempted == 0  # not due yet
        second = run(db, workspace, NoMail(), at=timedelta(minutes=2))
        assert second.sent == 1
        calls = server.to("/crm")
    assert len(calls) == 2 and calls[0].body == calls[1].body == b'{"ids":["a","b"]}'
    last = calls[1]
    assert last.headers["Idempotency-Key"] == message  # the same on every attempt
    assert verify_signature(
        made.secret, last.headers[SIGNATURE_HEADER], last.body, now=int(time.time())
    )
    done = status_of(db, workspace, message)
    assert (done.status, done.attempts, done.provider_message_id) == ("sent", 2, "prov-2")


def test_an_sms_provider_gets_the_number_in_e164_and_the_text(db: Database, workspace: str) -> None:
    grace = person(db, workspace, "u-grace", phone="+44 20 7946 0958")
    grant(db, workspace, grace, purpose=SMS_PURPOSE, channel="sms")
    with hook_server() as server:
        made = destination(
            db,
            workspace,
            processor(db, workspace),
            name="Texts",
            kind="sms",
            url=server.url("/sms"),
            purpose=SMS_PURPOSE,
        )
        with db.write() as session:
            message = outbox.enqueue(
                session=session,
                workspace_id=workspace,
                destination_id=made.destination.id,
                key="j2:sms:grace",
                subject_id=grace,
                purpose=SMS_PURPOSE,
                channel="sms",
                to="+44 20 7946 0958",
                content={"text": "Your order shipped"},
                origin="journey:j2:sms",
            )
        assert run(db, workspace, NoMail()).sent == 1
        (call,) = server.to("/sms")
    assert call.json() == {"to": "+442079460958", "text": "Your order shipped"}
    assert call.headers["Consentry-Event"] == "sms"
    assert made.secret and verify_signature(
        made.secret, call.headers[SIGNATURE_HEADER], call.body, now=int(time.time())
    )
    assert status_of(db, workspace, str(message)).status == "sent"


def test_a_client_error_is_dead_at_once_and_a_dead_letter_can_be_retried_by_hand(
    db: Database, workspace: str
) -> None:
    with hook_server() as server:
        made = webhook(db, workspace, server.url("/h"), name="Hook")
        server.answer("/h", 400, 200)
        refused = hook(db, workspace, made.destination.id, "k-400", {"n": 1})
        assert refused is not None
        assert run(db, workspace, NoMail()).dead == 1
        dead = status_of(db, workspace, refused)
        assert (dead.status, dead.attempts, dead.last_error) == ("dead", 1, "HTTP 400")
        with db.read() as session:
            total, letters = outbox.dead_letters(session=session, workspace_id=workspace)
        assert total == 1 and letters[0].id == refused
        with db.write() as session:
            again = outbox.retry_dead(
                session=session, workspace_id=workspace, message_id=refused, actor="test:ops"
            )
        assert (again.status, again.attempts) == ("queued", 0)
        with db.write() as session, pytest.raises(Conflict):
            outbox.retry_dead(
                session=session, workspace_id=workspace, message_id=refused, actor="test:ops"
            )
        assert run(db, workspace, NoMail()).sent == 1
    assert status_of(db, workspace, refused).status == "sent"


def test_retries_run_out_into_the_dead_letter_list(db: Database, workspace: str) -> None:
    with hook_server() as server:
        made = webhook(db, workspace, server.url("/f"), name="Flaky")
        server.answer("/f", 500)
        message = hook(db, workspace, made.destination.id, "k-500", {"n": 1})
        assert message is not None
        settings = FAST.model_copy(update={"circuit_threshold": 100})
        for hours in range(FAST.max_attempts):
            run(db, workspace, NoMail(), at=timedelta(hours=hours * 2), settings=settings)
        assert len(server.to("/f")) == FAST.max_attempts
    dead = status_of(db, workspace, str(message))
    assert dead.status == "dead" and dead.attempts == FAST.max_attempts
    assert dead.last_error == f"gave up after {FAST.max_attempts} attempts: HTTP 500"


def test_a_failing_destination_is_paused_while_another_delivers(
    db: Database, workspace: str
) -> None:
    with hook_server() as server:
        processor_id = processor(db, workspace)
        down = webhook(db, workspace, server.url("/down"), name="Down", processor_id=processor_id)
        up = webhook(db, workspace, server.url("/up"), name="Up", processor_id=processor_id)
        server.answer("/down", 502)
        for i in range(8):
            hook(db, workspace, down.destination.id, f"down-{i}", {"i": i})
        for i in range(5):
            hook(db, workspace, up.destination.id, f"up-{i}", {"i": i})
        report = run(db, workspace, NoMail())
        assert report.sent == 5 and len(server.to("/up")) == 5
        assert len(server.to("/down")) == FAST.circuit_threshold  # then the circuit opened
        assert report.paused == [down.destination.id]
        assert report.released == 8 - FAST.circuit_threshold
        with db.read() as session:
            paused = destinations.get_destination(
                session=session, workspace_id=workspace, destination_id=down.destination.id
            )
            counts = outbox.counts(session=session, workspace_id=workspace)
        assert paused.paused_until is not None and paused.failures == FAST.circuit_threshold
        assert counts[down.destination.id]["retrying"] == FAST.circuit_threshold
        assert counts[up.destination.id]["sent"] == 5
        # while paused nothing goes there; after the pause it is tried again (and works)
        assert run(db, workspace, NoMail(), at=timedelta(minutes=5)).attempted == 0
        server.answer("/down", 200)
        later = run(db, workspace, NoMail(), at=timedelta(minutes=11))
        assert later.sent == 8
    with db.read() as session:
        healed = destinations.get_destination(
            session=session, workspace_id=workspace, destination_id=down.destination.id
        )
    assert healed.failures == 0 and healed.paused_until is None


def test_consent_withdrawn_after_enqueue_cancels_the_message(db: Database, workspace: str) -> None:
    lin = person(db, workspace, "u-lin", email="lin@example.com", country="DE")
    grant(db, workspace, lin)
    newsletter = destination(db, workspace, processor(db, workspace)).destination
    message = mail(db, workspace, newsletter.id, "j3:lin", to="lin@example.com", subject_id=lin)
    grant(db, workspace, lin, state="withdrawn")
    with smtp_server() as (sink, mailer):
        report = run(db, workspace, mailer)
        assert report.cancelled == 1 and not sink.messages()
    cancelled = status_of(db, workspace, str(message))
    assert (cancelled.status, cancelled.last_error) == ("cancelled", "consent: withdrawn")
    assert cancelled.attempts == 0


def test_a_suppressed_address_and_a_hard_bounce_are_not_mailed(
    db: Database, workspace: str
) -> None:
    newsletter = destination(db, workspace, processor(db, workspace)).destination
    with db.write() as session:
        entry, new = suppressions.add(
            session=session,
            workspace_id=workspace,
            channel="email",
            address=" Quiet@Example.COM ",
            reason="complaint",
            actor="test:ops",
        )
    assert new
    quiet = mail(
        db, workspace, newsletter.id, "q", to="quiet@example.com", subject_id=None, purpose=None
    )
    bounce = mail(
        db, workspace, newsletter.id, "b", to="bounce@example.com", subject_id=None, purpose=None
    )
    with smtp_server() as (sink, mailer):
        report = run(db, workspace, mailer)
        assert (report.cancelled, report.dead, report.sent) == (1, 1, 0)
        assert not sink.messages()
    assert status_of(db, workspace, str(quiet)).last_error == (
        "the address is on the suppression list"
    )
    bounced = status_of(db, workspace, str(bounce))
    assert bounced.status == "dead" and bounced.last_error is not None
    assert "bounce@" not in bounced.last_error and "<address>" in bounced.last_error
    with db.read() as session:  # a hard bounce suppresses the address
        assert suppressions.is_suppressed(
            session=session, workspace_id=workspace, channel="email", address="BOUNCE@example.com"
        )
        total, entries = suppressions.list_suppressions(session=session, workspace_id=workspace)
    assert total == 2 and {e.reason for e in entries} == {"complaint", "bounce"}
    assert entry.id in {e.id for e in entries}


@pytest.mark.parametrize("reply", ["451 4.7.1", "450 4.2.0", "452 4.2.2", "421 4.7.0"])
def test_a_greylisting_4xx_is_retried_with_backoff_and_delivered_later(
    db: Database, workspace: str, reply: str
) -> None:
    newsletter = destination(db, workspace, processor(db, workspace)).destination
    message = mail(
        db, workspace, newsletter.id, "g", to="grey@example.com", subject_id=None, purpose=None
    )
    with smtp_server() as (sink, mailer):
        sink.greylist = reply
        first = run(db, workspace, mailer)
        assert (first.retrying, first.dead, first.sent) == (1, 0, 0)
        waiting = status_of(db, workspace, str(message))
        assert (waiting.status, waiting.attempts) == ("retrying", 1)
        assert waiting.last_error is not None and reply.split()[0] in waiting.last_error
        assert "grey@" not in waiting.last_error
        assert waiting.next_attempt_at is not None
        too_soon = run(db, workspace, mailer, at=timedelta(seconds=10))  # the back-off holds
        assert too_soon.attempted == 0 and not sink.messages()
        later = run(db, workspace, mailer, at=timedelta(seconds=FAST.backoff_base_seconds + 1))
        assert later.sent == 1
        assert [m["To"] for m in sink.messages()] == ["grey@example.com"]
        assert sink.tries["grey@example.com"] == 2
    sent = status_of(db, workspace, str(message))
    assert (sent.status, sent.attempts, sent.last_error) == ("sent", 2, None)
    with db.read() as session:  # a transient refusal is no bounce: the address is not suppressed
        assert not suppressions.is_suppressed(
            session=session, workspace_id=workspace, channel="email", address="grey@example.com"
        )


def test_a_5xx_reply_is_a_dead_letter_at_once(db: Database, workspace: str) -> None:
    newsletter = destination(db, workspace, processor(db, workspace)).destination
    message = mail(
        db, workspace, newsletter.id, "g5", to="grey@example.com", subject_id=None, purpose=None
    )
    with smtp_server() as (sink, mailer):
        sink.greylist = "554 5.7.1"
        report = run(db, workspace, mailer)
        assert (report.dead, report.retrying) == (1, 0)
        assert not run(db, workspace, mailer, at=timedelta(hours=2)).attempted
    dead = status_of(db, workspace, str(message))
    assert dead.status == "dead" and dead.last_error is not None and "554" in dead.last_error


def test_a_refused_processor_kills_the_message_and_a_deactivated_destination_cancels_it(
    db: Database, workspace: str
) -> None:
    with db.write() as session, pytest.raises(Invalid) as refused:
        destinations.register_destination(
            session=session,
            workspace_id=workspace,
            spec=destinations.DestinationSpec(
                name="Ghost", kind="email", processor_id="nope", purpose=SMS_PURPOSE
            ),
            actor="test:ops",
        )
    assert [e.field for e in refused.value.errors] == ["processor_id"]
    processor_id = processor(db, workspace)
    first = destination(db, workspace, processor_id, name="A").destination
    second = destination(db, workspace, processor_id, name="B").destination
    gone = mail(db, workspace, first.id, "a", to="a@example.com", subject_id=None, purpose=None)
    off = mail(db, workspace, second.id, "b", to="b@example.com", subject_id=None, purpose=None)
    with db.write() as session:
        destinations.deactivate_destination(
            session=session, workspace_id=workspace, destination_id=second.id, actor="test:ops"
        )
        processor_service.deactivate_processor(
            session=session, workspace_id=workspace, processor_id=processor_id, actor="test"
        )
    report = run(db, workspace, NoMail())
    assert (report.dead, report.cancelled) == (1, 1)
    dead = status_of(db, workspace, str(gone))
    assert dead.status == "dead" and dead.last_error is not None
    assert dead.last_error.startswith("transfer refused:") and "deactivated" in dead.last_error
    assert status_of(db, workspace, str(off)).last_error == "the destination is deactivated"
    with db.write() as session, pytest.raises(Invalid) as again:  # reactivation: the gate again
        destinations.update_destination(
            session=session,
            workspace_id=workspace,
            destination_id=second.id,
            changes={"active": True},
            actor="test:ops",
        )
    assert again.value.errors[0].field == "processor_id"


def test_an_erasure_deletes_the_persons_messages(db: Database, workspace: str) -> None:
    kim = person(db, workspace, "u-kim", email="kim@example.com")
    grant(db, workspace, kim)
    newsletter = destination(db, workspace, processor(db, workspace)).destination
    message = mail(db, workspace, newsletter.id, "kim-1", to="kim@example.com", subject_id=kim)
    with db.write() as session:
        erased = erasure_service.erase(
            session=session,
            workspace_id=workspace,
            profile_id=kim,
            actor="test:dpo",
            reason="erasure request",
        )
    assert erased.certificate["erased"]["outbox_messages"] == 1
    with db.read() as session:
        assert (
            session.scalar(select(OutboxMessageRow).where(OutboxMessageRow.id == message)) is None
        )


def test_cancel_for_subject_stops_what_is_not_sent(db: Database, workspace: str) -> None:
    max_ = person(db, workspace, "u-max", email="max@example.com")
    newsletter = destination(db, workspace, processor(db, workspace)).destination
    message = mail(
        db, workspace, newsletter.id, "max-1", to="max@example.com", subject_id=max_, purpose=None
    )
    with db.write() as session:
        assert (
            outbox.cancel_for_subject(
                session=session, workspace_id=workspace, profile_ids=[max_], reason="opted out"
            )
            == 1
        )
    assert run(db, workspace, NoMail()).attempted == 0
    cancelled = status_of(db, workspace, str(message))
    assert (cancelled.status, cancelled.last_error) == ("cancelled", "opted out")


def test_workspaces_do_not_see_each_others_destinations_or_messages(
    db: Database, workspace: str
) -> None:
    other = new_workspace(db)
    newsletter = destination(db, workspace, processor(db, workspace)).destination
    message = mail(
        db, workspace, newsletter.id, "mine", to="me@example.com", subject_id=None, purpose=None
    )
    assert message is not None
    with db.write() as session:
        with pytest.raises(NotFound):
            destinations.get_destination(
                session=session, workspace_id=other, destination_id=newsletter.id
            )
        with pytest.raises(NotFound):
            outbox.get_message(session=session, workspace_id=other, message_id=message)
        with pytest.raises(NotFound):
            outbox.enqueue(
                session=session,
                workspace_id=other,
                destination_id=newsletter.id,
                key="mine",
                subject_id=None,
                purpose=None,
                channel="email",
                to="x@example.com",
                content={"subject": "s", "text": "t"},
                origin="test",
            )
        assert outbox.list_messages(session=session, workspace_id=other) == (0, [])
        assert destinations.list_destinations(session=session, workspace_id=other) == []
    # the same key in another workspace is another message
    theirs = destination(db, other, processor(db, other)).destination
    assert (
        mail(db, other, theirs.id, "mine", to="me@example.com", subject_id=None, purpose=None)
        is not None
    )
    with smtp_server() as (sink, mailer):
        assert run(db, other, mailer).sent == 1  # a round of one workspace: only its own
        assert len(sink.messages()) == 1
    assert status_of(db, workspace, message).status == "queued"


def test_enqueue_names_each_bad_field(db: Database, workspace: str) -> None:
    newsletter = destination(db, workspace, processor(db, workspace)).destination
    with db.write() as session, pytest.raises(Invalid) as bad:
        outbox.enqueue(
            session=session,
            workspace_id=workspace,
            destination_id=newsletter.id,
            key="",
            subject_id=None,
            purpose=None,
            channel="sms",
            to="not an address",
            content={"subject": "two\nlines", "text": "", "headers": {"From": "x"}},
            origin="test",
        )
    assert {e.field for e in bad.value.errors} == {
        "key",
        "channel",
        "to",
        "content.subject",
        "content.text",
        "content.headers.From",
    }


def test_settled_messages_are_pruned_after_their_time_and_dead_letters_stay(
    db: Database, workspace: str
) -> None:
    with hook_server() as server:
        made = webhook(db, workspace, server.url("/o"), name="Old")
        server.answer("/o", 200, 400)
        sent = hook(db, workspace, made.destination.id, "old-sent", {"n": 1})
        dead = hook(db, workspace, made.destination.id, "old-dead", {"n": 2})
        report = run(db, workspace, NoMail())
        assert (report.sent, report.dead) == (1, 1)
    with db.write() as session:
        kept = outbox.prune(
            session=session, before=utcnow() - timedelta(days=1), workspace_id=workspace
        )
        gone = outbox.prune(
            session=session, before=utcnow() + timedelta(minutes=1), workspace_id=workspace
        )
    assert (kept, gone) == (0, 1)
    with db.read() as session, pytest.raises(NotFound):
        outbox.get_message(session=session, workspace_id=workspace, message_id=str(sent))
    assert status_of(db, workspace, str(dead)).status == "dead"

"""Double opt-in use cases on SQLite and PostgreSQL: the pending record, what the policy says
while it is pending, confirmation (once), supersession by a later withdrawal, and resend rules."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest

from consentry.consent import doi, doi_service, links
from consentry.consent import service as consent
from consentry.consent.models import GRANTED, PENDING, WITHDRAWN, ProofIn
from consentry.errors import Conflict, Invalid, NotFound
from consentry.platform.db import Database, utcnow
from tests.consent.support import EMAIL, subject

SECRET = "test-secret"


def ask(db: Database, workspace: str, **fields: Any) -> doi_service.Pending:
    with db.write() as session:
        return doi_service.request_confirmation(
            session=session,
            workspace_id=workspace,
            item=doi.DoubleOptInIn(**fields),
            actor="token:test",
        )


def link_of(pending: doi_service.Pending, **ttl: float) -> links.Link:
    token, _ = doi_service.sign_link(
        secret=SECRET, pending=pending, now=utcnow(), ttl=timedelta(**ttl or {"hours": 1})
    )
    return doi_service.read_link(secret=SECRET, token=token)


def confirm(db: Database, link: links.Link) -> doi_service.LinkState:
    with db.write() as session:
        return doi_service.confirm(session=session, link=link, ip="203.0.113.9", user_agent="UA")


def history(db: Database, workspace: str, profile_id: str) -> list[consent.ConsentRecord]:
    with db.read() as session:
        return consent.subject_history(
            session=session, workspace_id=workspace, profile_id=profile_id
        )[1]


def decide(db: Database, workspace: str, profile_id: str) -> consent.Decision:
    with db.read() as session:
        return consent.can_use(
            session=session,
            workspace_id=workspace,
            profile_id=profile_id,
            purpose=EMAIL,
            channel="email",
        )


def withdraw(db: Database, workspace: str, profile_id: str, channel: str = "email") -> None:
    with db.write() as session:
        consent.record(
            session=session,
            workspace_id=workspace,
            profile_id=profile_id,
            purpose=EMAIL,
            channel=channel,
            state=WITHDRAWN,
            source="preference_center",
            actor="test",
        )


def test_a_request_appends_a_pending_record_that_the_policy_refuses(
    db: Database, workspace: str
) -> None:
    pid = subject(db, workspace, "u-1", email="Ada@Example.com", country="DE")
    pending = ask(
        db,
        workspace,
        user_id="u-1",
        language="de-AT",
        notice_version="n-1",
        proof=ProofIn(ip="198.51.100.23", user_agent="Shop form"),
    )
    record = pending.record
    assert (record.state, record.channel, record.source) == (PENDING, "email", doi.SOURCE)
    assert (record.purpose, record.notice_version, record.actor) == (EMAIL, "n-1", "token:test")
    assert record.proof == {
        "ip": "198.51.100.0",
        "user_agent": "Shop form",
        "email": "ada@example.com",
        "language": "de",
    }
    assert (pending.address, pending.language, pending.brand) == (
        "ada@example.com",
        "de",
        workspace,
    )
    found = decide(db, workspace, pid)
    assert found.allowed is False
    assert (found.reason, found.record_id, found.regime) == (
        "pending_confirmation",
        record.id,
        "opt_in",
    )


def test_pending_is_refused_for_unknown_countries_under_the_default_opt_in(
    db: Database, workspace: str
) -> None:
    pid = subject(db, workspace, "u-1", email="kim@example.com")
    ask(db, workspace, email="kim@example.com")
    found = decide(db, workspace, pid)
    assert (found.allowed, found.reason) == (False, "pending_confirmation")


def test_subject_and_address_rules(db: Database, workspace: str) -> None:
    subject(db, workspace, "u-1", email="ada@example.com")
    subject(db, workspace, "u-2", name="No Mail")
    with pytest.raises(NotFound):
        ask(db, workspace, email="nobody@example.com")  # no profile is created
    with pytest.raises(Invalid) as no_mail:
        ask(db, workspace, user_id="u-2")
    assert no_mail.value.errors[0].field == "email"
    with pytest.raises(Conflict):  # email and user_id of different profiles
        ask(db, workspace, user_id="u-2", email="ada@example.com")
    with pytest.raises(Invalid) as bad_language:
        ask(db, workspace, user_id="u-1", language="fr;q=1")
    assert bad_language.value.errors[0].field == "language"
    with pytest.raises(Invalid) as bad_purpose:
        ask(db, workspace, user_id="u-1", purpose="no.such.purpose")
    assert bad_purpose.value.errors[0].field == "purpose"
    assert history(db, workspace, subject(db, workspace, "u-1")) == []


def test_the_address_named_must_belong_to_the_profile(db: Database, workspace: str) -> None:
    pid = subject(db, workspace, "u-1", email="ada@example.com")
    subject(db, workspace, "u-9", email="eve@example.com")
    with pytest.raises(Invalid) as caught:
        ask(db, workspace, profile_id=pid, email="eve@example.com")
    assert caught.value.errors[0].reason == "is not an email address of this profile"
    pending = ask(db, workspace, profile_id=pid, email="ADA@example.com")
    assert pending.address == "ada@example.com"


def test_a_grant_in_force_is_not_asked_again(db: Database, workspace: str) -> None:
    pid = subject(db, workspace, "u-1", email="ada@example.com", country="FR")
    with db.write() as session:
        consent.record(
            session=session,
            workspace_id=workspace,
            profile_id=pid,
            purpose=EMAIL,
            channel="any",
            state=GRANTED,
            source="web_form",
            actor="test",
        )
    with pytest.raises(Conflict):
        ask(db, workspace, user_id="u-1")
    assert decide(db, workspace, pid).allowed is True  # no pending record stepped in front


def test_confirming_grants_once(db: Database, workspace: str) -> None:
    pid = subject(db, workspace, "u-1", email="ada@example.com", country="DE")
    pending = ask(db, workspace, user_id="u-1", notice_version="n-2")
    link = link_of(pending)
    with db.read() as session:
        assert doi_service.link_state(session=session, link=link).outcome == doi.OPEN
    first = confirm(db, link)
    assert first.outcome == doi.OPEN and first.grant is not None
    grant = first.grant
    assert (grant.state, grant.source, grant.channel) == (GRANTED, doi.SOURCE, "email")
    assert (grant.notice_version, grant.actor) == ("n-2", doi.ACTOR_PREFIX + pending.record.id)
    assert grant.proof == {
        "pending_record_id": pending.record.id,
        "ip": "203.0.113.0",
        "user_agent": "UA",
    }
    found = decide(db, workspace, pid)
    assert (found.allowed, found.reason, found.record_id) == (True, "granted", grant.id)
    second = confirm(db, link)
    assert second.outcome == doi.ALREADY_CONFIRMED and second.grant is None
    assert [r.state for r in history(db, workspace, pid)] == [GRANTED, PENDING]
    with db.read() as session, pytest.raises(Conflict):
        doi_service.pending_request(
            session=session, workspace_id=workspace, record_id=pending.record.id
        )


def test_two_confirmations_at_once_grant_once(db: Database, workspace: str) -> None:
    pid = subject(db, workspace, "u-1", email="ada@example.com")
    link = link_of(ask(db, workspace, user_id="u-1"))
    outcomes: list[str] = []
    errors: list[BaseException] = []

    def click() -> None:
        try:
            outcomes.append(confirm(db, link).outcome)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=click) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert sorted(outcomes) == [doi.ALREADY_CONFIRMED] * 3 + [doi.OPEN]
    assert [r.state for r in history(db, workspace, pid)].count(GRANTED) == 1


@pytest.mark.parametrize("channel", ["email", "any"])
def test_a_later_withdrawal_supersedes_the_link(db: Database, workspace: str, channel: str) -> None:
    pid = subject(db, workspace, "u-1", email="ada@example.com")
    pending = ask(db, workspace, user_id="u-1")
    withdraw(db, workspace, pid, channel)
    state = confirm(db, link_of(pending))
    assert state.outcome == doi.SUPERSEDED and state.grant is None
    assert GRANTED not in [r.state for r in history(db, workspace, pid)]
    with db.read() as session, pytest.raises(Conflict):
        doi_service.pending_request(
            session=session, workspace_id=workspace, record_id=pending.record.id
        )


def test_a_new_request_after_a_withdrawal_is_open_again(db: Database, workspace: str) -> None:
    pid = subject(db, workspace, "u-1", email="ada@example.com")
    ask(db, workspace, user_id="u-1")
    withdraw(db, workspace, pid)
    again = ask(db, workspace, user_id="u-1")
    assert confirm(db, link_of(again)).outcome == doi.OPEN
    assert decide(db, workspace, pid).allowed is True


def test_resend_needs_an_open_double_opt_in_request(db: Database, workspace: str) -> None:
    pid = subject(db, workspace, "u-1", email="ada@example.com")
    pending = ask(db, workspace, user_id="u-1", language="nl")
    with db.read() as session:
        again = doi_service.pending_request(
            session=session, workspace_id=workspace, record_id=pending.record.id
        )
        assert (again.address, again.language) == ("ada@example.com", "nl")
        with pytest.raises(NotFound):
            doi_service.pending_request(session=session, workspace_id=workspace, record_id="nope")
    withdraw(db, workspace, pid)
    other = history(db, workspace, pid)[0]  # the withdrawal: not a double opt-in request
    with db.read() as session, pytest.raises(NotFound):
        doi_service.pending_request(session=session, workspace_id=workspace, record_id=other.id)


def test_a_link_that_names_another_subject_or_purpose_opens_nothing(
    db: Database, workspace: str
) -> None:
    subject(db, workspace, "u-1", email="ada@example.com")
    pending = ask(db, workspace, user_id="u-1")
    record = pending.record
    key = links.link_key(SECRET, workspace)
    now = utcnow()
    for profile_id, purpose in [("someone-else", record.purpose), (record.profile_id, "analytics")]:
        token = links.sign(
            key,
            workspace_id=workspace,
            profile_id=profile_id,
            kind=links.CONFIRM,
            now=now,
            **doi.link_extra(record.id, purpose, "en"),
        )
        link = doi_service.read_link(secret=SECRET, token=token)
        with db.read() as session, pytest.raises(NotFound):
            doi_service.link_state(session=session, link=link)

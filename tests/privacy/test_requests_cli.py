"""``consentry privacy requests list|remind`` against a real store and a real SMTP server:
the queue with days left, reminders mailed once per step to the privacy contact, unverified
requests expired, and the exits when there is no contact or no server."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from typer.testing import CliRunner

from consentry.cli import app
from consentry.config import get_settings
from consentry.platform.db import Database, utcnow
from consentry.privacy import request_service as service
from tests.privacy.requests_support import SmtpServer, free_port, made_at

runner = CliRunner()


@pytest.fixture(autouse=True)
def _fresh_settings() -> Iterator[None]:
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def invoke(args: list[str], environ: dict[str, str] | None = None) -> Any:
    """Run the CLI with these environment variables (the settings are read afresh)."""
    get_settings.cache_clear()
    return runner.invoke(app, args, env=environ)


def env(port: int, **more: str) -> dict[str, str]:
    return {
        "CONSENTRY_SMTP__HOST": "127.0.0.1",
        "CONSENTRY_SMTP__PORT": str(port),
        "CONSENTRY_SMTP__TIMEOUT": "5",
        "CONSENTRY_SMTP__FROM_ADDRESS": "consentry@shop.example",
        "CONSENTRY_PUBLIC_URL": "https://cdp.shop.example",
        **more,
    }


def test_the_help_names_the_commands() -> None:
    shown = invoke(["privacy", "--help"])
    assert shown.exit_code == 0 and "requests" in shown.output
    shown = invoke(["privacy", "requests", "--help"])
    assert shown.exit_code == 0
    assert "list" in shown.output and "remind" in shown.output


def test_list_shows_the_queue_with_days_left(
    database_url: str, db: Database, workspace: str
) -> None:
    now = utcnow()
    late = made_at(db, workspace, now - timedelta(days=50), country="US")
    soon = made_at(db, workspace, now - timedelta(days=40), country="US", email="b@example.com")
    where = ["--workspace", workspace, "--database-url", database_url]
    shown = invoke(["privacy", "requests", "list", *where], {"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    first = next(i for i, line in enumerate(lines) if late.id in line)
    second = next(i for i, line in enumerate(lines) if soon.id in line)
    assert first < second
    assert "-5 overdue" in lines[first] and " 5 " in lines[second]
    assert "2 of 2 requests" in shown.output
    as_json = invoke(["privacy", "requests", "list", *where, "--json"])
    assert as_json.exit_code == 0 and late.id in as_json.output
    bad = invoke(["privacy", "requests", "list", *where, "--status", "done"])
    assert bad.exit_code == 1


def test_remind_mails_each_step_once_and_expires_unverified_requests(
    database_url: str, db: Database, workspace: str, smtp: SmtpServer
) -> None:
    now = utcnow()
    week = made_at(db, workspace, now - timedelta(days=38), country="US", email="a@example.com")
    late = made_at(db, workspace, now - timedelta(days=50), country="US", email="b@example.com")
    calm = made_at(db, workspace, now - timedelta(days=1), country="US", email="c@example.com")
    stale = made_at(db, workspace, now - timedelta(days=15), verify=False, email="d@example.com")
    where = ["--workspace", workspace, "--database-url", database_url]
    contact = {"CONSENTRY_PRIVACY__CONTACTS": f'{{"{workspace}": "dpo@shop.example"}}'}

    done = invoke(["privacy", "requests", "remind", *where], env(smtp.port, **contact))
    assert done.exit_code == 0, done.output
    assert f"{workspace}: 1 expired, 2 reminders due; 2 reminded" in done.output
    (envelope, message) = smtp.inbox.messages[-1]
    assert envelope.rcpt_tos == ["dpo@shop.example"]
    body = message.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert week.id in text and late.id in text and calm.id not in text
    assert "overdue by 5 days" in text and "7 days left" in text
    assert "https://cdp.shop.example/app/privacy/requests" in text
    assert "@example.com" not in text  # no requester's address in the reminder
    with db.read() as session:
        assert (
            service.get_request(session=session, workspace_id=workspace, request_id=stale.id).status
            == "expired"
        )
        assert service.get_request(
            session=session, workspace_id=workspace, request_id=late.id
        ).reminders_sent == (2, 7)
        steps = service.history(session=session, workspace_id=workspace, request_id=week.id)
    assert [(s.action, s.details.get("days")) for s in steps][-1] == ("remind", 7)

    again = invoke(["privacy", "requests", "remind", *where], env(smtp.port, **contact))
    assert again.exit_code == 0 and "0 expired, 0 reminders due" in again.output
    assert len(smtp.inbox.messages) == 1

    later = made_at(db, workspace, now - timedelta(days=43), country="US", email="e@example.com")
    dry = invoke(["privacy", "requests", "remind", *where, "--dry-run"], env(smtp.port, **contact))
    assert dry.exit_code == 0 and "1 reminders due (dry run" in dry.output
    with db.read() as session:
        assert (
            service.get_request(
                session=session, workspace_id=workspace, request_id=later.id
            ).reminders_sent
            == ()
        )


def test_remind_fails_without_a_contact_or_a_server(
    database_url: str, db: Database, workspace: str, smtp: SmtpServer
) -> None:
    made = made_at(db, workspace, utcnow() - timedelta(days=44), country="US")
    where = ["--workspace", workspace, "--database-url", database_url]
    nobody = invoke(["privacy", "requests", "remind", *where], env(smtp.port))
    assert nobody.exit_code == 1 and "no privacy contact" in nobody.output
    down = invoke(
        ["privacy", "requests", "remind", *where],
        env(free_port(), CONSENTRY_PRIVACY__CONTACT_EMAIL="dpo@shop.example"),
    )
    assert down.exit_code == 1 and "not sent" in down.output
    with db.read() as session:
        assert (
            service.get_request(
                session=session, workspace_id=workspace, request_id=made.id
            ).reminders_sent
            == ()
        )  # tried again on the next run
    unknown = invoke(
        ["privacy", "requests", "remind", "--workspace", "no-such", "--database-url", database_url],
    )
    assert unknown.exit_code == 1

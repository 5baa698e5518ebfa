"""``consentry quality audit`` and ``latest`` against a real store (SQLite and PostgreSQL)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from consentry.cli import app
from consentry.platform.db import Database
from consentry.quality import service
from tests.quality.planted import EXPECTED_TOTALS, check_report, messages
from tests.support.store import send

runner = CliRunner()


def test_audit_prints_tables_and_json_and_stores_the_report(
    database_url: str, db: Database, workspace: str
) -> None:
    send(db, workspace, *messages())
    args = ["--workspace", workspace, "--database-url", database_url]
    done = runner.invoke(app, ["quality", "audit", *args])
    assert done.exit_code == 0, done.output
    out = done.output
    for title in ("Completeness", "Invalid values by reason", "Warnings", "Duplicates", "Stale"):
        assert title in out, title
    assert f"audited {EXPECTED_TOTALS['records']} unified profiles" in out
    for code in ("email.at_sign", "phone.invalid", "date.impossible", "postcode.format"):
        assert code in out
    assert "email.disposable" in out

    as_json = runner.invoke(app, ["quality", "audit", "--json", *args])
    assert as_json.exit_code == 0, as_json.output
    document = json.loads(as_json.output)
    check_report(document)
    assert document["actor"] == "cli"
    with db.read() as session:
        stored = [a.id for a in service.recent(session=session, workspace_id=workspace)]
    assert stored[0] == document["id"] and len(stored) == 2

    latest = runner.invoke(app, ["quality", "latest", "--json", *args])
    assert latest.exit_code == 0 and json.loads(latest.output)["id"] == document["id"]


def test_bad_options_exit_non_zero(database_url: str, db: Database, workspace: str) -> None:
    args = ["--workspace", workspace, "--database-url", database_url]
    none_yet = runner.invoke(app, ["quality", "latest", *args])
    assert none_yet.exit_code == 1 and "no quality audit yet" in none_yet.output
    assert runner.invoke(app, ["quality", "audit", "--stale-days", "0", *args]).exit_code == 2
    assert runner.invoke(app, ["quality", "audit", "--stale-days", "soon", *args]).exit_code == 2
    assert runner.invoke(app, ["quality", "audit", "--colour", "red", *args]).exit_code == 2
    unknown = runner.invoke(
        app, ["quality", "audit", "--workspace", "no-such-ws", "--database-url", database_url]
    )
    assert unknown.exit_code == 1
    short = runner.invoke(app, ["quality", "audit", "--stale-days", "1", "--json", *args])
    assert short.exit_code == 0 and json.loads(short.output)["stale"]["after_days"] == 1

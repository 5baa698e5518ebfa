"""``consentry consent verify`` and ``receipt`` against a real store."""

from __future__ import annotations

import json

from sqlalchemy import text
from typer.testing import CliRunner

from consentry.cli import app
from consentry.platform.db import Database
from tests.consent.support import choose, subject

runner = CliRunner()


def test_verify_exits_non_zero_and_names_the_record(
    database_url: str, db: Database, workspace: str
) -> None:
    profile = subject(db, workspace, "cli-user", email="cli@example.com")
    args = ["consent", "verify", "--workspace", workspace, "--database-url", database_url]
    made = [
        choose(db, workspace, profile, s, minutes=i)
        for i, s in enumerate(("granted", "withdrawn", "granted"))
    ]
    ok = runner.invoke(app, args)
    assert ok.exit_code == 0, ok.output
    assert "3 consent records" in ok.output

    printed = runner.invoke(app, ["consent", "receipt", made[0].id, *args[2:]])
    assert printed.exit_code == 0, printed.output
    assert json.loads(printed.output)["consentReceiptID"] == made[0].id

    with db.write() as session:
        session.execute(text("DELETE FROM consent_records WHERE id = :id"), {"id": made[1].id})
    broken = runner.invoke(app, args)
    assert broken.exit_code == 1
    assert "deleted" in broken.output and "seq 2" in broken.output, broken.output
    missing = runner.invoke(app, [*args[:3], "no-such-ws", *args[4:]])
    assert missing.exit_code == 1

"""``consentry audit verify`` and ``export`` against a real store, with their exit codes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from sqlalchemy import text
from typer.testing import CliRunner

from consentry.cli import app
from consentry.platform import audit
from consentry.platform.db import Database

runner = CliRunner()


def _entries(db: Database, workspace: str, n: int) -> list[audit.AuditEntry]:
    with db.write() as session:
        return audit.record_many(
            session=session,
            workspace_id=workspace,
            actor="token:key-1",
            action="profile.read",
            target_type="profile",
            target_ids=[f"p-{i}" for i in range(n)],
            reason="ticket 7",
            details={"lookup": "profile_id"},
        )


def test_verify_exits_non_zero_and_names_the_entry(
    database_url: str, db: Database, workspace: str
) -> None:
    made = _entries(db, workspace, 3)
    args = ["audit", "verify", "--workspace", workspace, "--database-url", database_url]
    ok = runner.invoke(app, args)
    assert ok.exit_code == 0, ok.output
    assert "3 audit entries" in ok.output

    with db.write() as session:
        session.execute(text("DELETE FROM audit_entries WHERE id = :id"), {"id": made[1].id})
    broken = runner.invoke(app, args)
    assert broken.exit_code == 1
    assert "deleted" in broken.output and "seq 2" in broken.output, broken.output

    missing = runner.invoke(app, [*args[:3], "no-such-ws", *args[4:]])
    assert missing.exit_code == 1


def test_verify_names_an_edited_entry_by_id(
    database_url: str, db: Database, workspace: str
) -> None:
    made = _entries(db, workspace, 2)
    with db.write() as session:
        session.execute(
            text("UPDATE audit_entries SET target_id = 'p-9' WHERE id = :id"), {"id": made[0].id}
        )
    broken = runner.invoke(
        app, ["audit", "verify", "--workspace", workspace, "--database-url", database_url]
    )
    assert broken.exit_code == 1
    assert "edited" in broken.output and made[0].id in broken.output, broken.output


def test_export_writes_jsonl_to_stdout_and_csv_to_a_file(
    database_url: str, db: Database, workspace: str, tmp_path: Path
) -> None:
    made = _entries(db, workspace, 2)
    base = ["audit", "export", "--workspace", workspace, "--database-url", database_url]
    printed = runner.invoke(app, base)
    assert printed.exit_code == 0, printed.output
    shown = [json.loads(line) for line in printed.stdout.splitlines()]
    assert [(e["id"], e["hash"]) for e in shown] == [(e.id, e.hash) for e in made]

    out = tmp_path / "trail.csv"
    written = runner.invoke(app, [*base, "--format", "csv", "--out", str(out)])
    assert written.exit_code == 0, written.output
    with out.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["target_id"] for r in rows] == ["p-0", "p-1"]
    assert "wrote 2 audit entries" in written.output

    bad = runner.invoke(app, [*base, "--format", "xml"])
    assert bad.exit_code != 0

"""The store adapter: settings that keep personal data out of errors and logs."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from consentry.platform.db import Database


def test_errors_never_carry_the_values_that_were_bound(db: Database, workspace: str) -> None:
    secret = "jane.doe.private@example.com"
    with pytest.raises(IntegrityError) as caught, db.write() as session:
        for _ in range(2):  # the second insert breaks the primary key
            session.execute(
                text("INSERT INTO workspaces (id, name, created_at) VALUES (:id, :n, :t)"),
                {"id": workspace, "n": secret, "t": "2026-01-01 00:00:00"},
            )
    assert secret not in str(caught.value)


def test_sqlite_runs_in_wal_mode(db: Database) -> None:
    if db.dialect != "sqlite":
        pytest.skip("SQLite only")
    with db.read() as session:
        assert session.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert session.execute(text("PRAGMA foreign_keys")).scalar() == 1

"""The store adapter: settings that keep personal data out of errors and logs."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from consentry.platform import tenancy
from consentry.platform.db import Database, after_commit


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


def _sync_level(db: Database, durable: bool) -> str:
    query = "PRAGMA synchronous" if db.dialect == "sqlite" else "SHOW synchronous_commit"
    with db.write(durable=durable) as session:
        return str(session.execute(text(query)).scalar())


def test_only_work_that_can_be_redone_skips_the_wait_for_the_disk(db: Database) -> None:
    """Applying stored events commits without fsync; everything else (ingestion, consent) with."""
    if db.dialect == "sqlite":
        durable, redoable = "2", "1"  # FULL, NORMAL
    else:  # the server's own setting (the throwaway test server runs with it off), then off
        with db.read() as session:
            reset = "SELECT reset_val FROM pg_settings WHERE name = 'synchronous_commit'"
            durable, redoable = str(session.execute(text(reset)).scalar()), "off"
    assert _sync_level(db, durable=True) == durable
    assert _sync_level(db, durable=False) == redoable
    assert _sync_level(db, durable=True) == durable  # the connection is not left relaxed


def test_optimize_gives_the_planner_statistics(db: Database) -> None:
    """Without statistics SQLite scanned a million events for a list of two profile ids
    (bench/privacy.py): the server refreshes them with Database.optimize()."""
    db.optimize()
    with db.read() as session:
        if db.dialect == "sqlite":
            names = session.execute(text("SELECT name FROM sqlite_master")).scalars().all()
            assert "sqlite_stat1" in names
            assert session.execute(text("SELECT count(*) FROM sqlite_stat1")).scalar()


def test_actions_after_commit_follow_the_outer_commit_only(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """after_commit: not on a savepoint's release, not on a rollback; once the unit of work
    commits; an action that fails is logged and the commit stands."""
    ran: list[str] = []
    with db.write() as session:
        with session.begin_nested():
            after_commit(session, lambda: ran.append("outer"))
        assert ran == []  # a savepoint released: nothing yet
    assert ran == ["outer"]
    with pytest.raises(RuntimeError), db.write() as session:
        after_commit(session, lambda: ran.append("rolled back"))
        raise RuntimeError("rolled back")
    assert ran == ["outer"]

    def fails() -> None:
        raise OSError("the spool is away")

    name = f"ws-{uuid.uuid4().hex[:10]}"
    with db.write() as session:
        after_commit(session, fails)
        after_commit(session, lambda: ran.append("next"))
        tenancy.create_workspace(session=session, workspace_id=name)
    assert ran == ["outer", "next"]
    assert "an action after a commit failed" in caplog.text
    with db.read() as session:
        assert name in {w.id for w in tenancy.list_workspaces(session=session)}

"""The server's scheduled rounds: one workspace's failure does not stop the round."""

from __future__ import annotations

import logging

import pytest

from consentry import api
from consentry.errors import Conflict
from consentry.platform import tenancy
from consentry.platform.db import Database
from tests.conftest import new_workspace


def test_a_round_goes_on_past_a_failing_workspace(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    broken, empty, fine = (new_workspace(db) for _ in range(3))
    with db.read() as session:
        everyone = [w.id for w in tenancy.list_workspaces(session=session)]
    done: list[str] = []

    def job(name: str) -> str:
        done.append(name)
        if name == broken:
            raise RuntimeError("disk full")
        if name == empty:
            raise Conflict("nothing to learn from yet")
        return "ok"

    with caplog.at_level(logging.INFO, logger="consentry.api"):
        api._each_workspace(db, "test round", job)
    assert done == everyone and {broken, empty, fine} <= set(done)
    failed = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in failed] == [f"test round {broken}: failed; the round goes on"]
    assert f"test round {empty}: skipped: nothing to learn from yet" in caplog.messages
    assert f"test round {fine}: ok" in caplog.messages

    done.clear()
    api._each_workspace(
        db, "test round", job, due=lambda session, workspace_id: workspace_id == fine
    )
    assert done == [fine]

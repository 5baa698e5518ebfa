"""The server's scheduled rounds: one workspace's failure does not stop the round."""

from __future__ import annotations

import logging
import os
import pickle

import pytest

from consentry import api
from consentry.config import Settings
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


def _mark(store: Database, settings: Settings) -> None:
    """A round that leaves a workspace named after the process it ran in."""
    with store.write() as session:
        tenancy.create_workspace(session=session, workspace_id=f"child-{os.getpid()}")


def test_heavy_rounds_run_in_a_child_process_on_the_same_store(
    db: Database, settings: Settings
) -> None:
    """Analytics and training run in a process of their own (they would hold the server's
    GIL for minutes on a big shop); what they write lands in the store the server reads."""
    with db.read() as session:
        before = {w.id for w in tenancy.list_workspaces(session=session)}
    api._in_child(_mark, settings)()
    with db.read() as session:
        (made,) = {w.id for w in tenancy.list_workspaces(session=session)} - before
    assert made.startswith("child-") and made != f"child-{os.getpid()}"
    for scheduled in (api._analytics_round, api._recommend_round):  # what the server sends
        assert pickle.loads(pickle.dumps(scheduled)) is scheduled


def _fails(store: Database, settings: Settings) -> None:
    raise RuntimeError(f"no disk for {settings.environment}")


def test_a_failing_round_in_a_child_process_fails_its_job(settings: Settings) -> None:
    with pytest.raises(RuntimeError, match="no disk for test"):  # _every logs it and goes on
        api._in_child(_fails, settings)()

"""The journeys' segment-change cursor skips ahead while no active journey listens to segment
changes, and the list page's statistics take the same few queries however many journeys there
are (both stores)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from sqlalchemy import event

from consentry.audiences import service as segments
from consentry.journeys import service
from consentry.journeys.tables import TriggerCursorRow
from consentry.platform.db import Database, utcnow
from tests.integration.test_journey_engine import (
    abandoned_cart,
    checkout,
    noon,
    run,
    setup_shop,
    shopper,
    start,
)


def cursor(db: Database, workspace: str) -> TriggerCursorRow:
    with db.read() as session:
        found = session.get(TriggerCursorRow, workspace)
        assert found is not None
        session.expunge(found)
        return found


def test_the_segment_change_cursor_skips_ahead_while_nothing_listens(
    db: Database, workspace: str
) -> None:
    dest = setup_shop(db, workspace)
    t0 = utcnow()
    start(db, workspace, abandoned_cart(dest), t0 - timedelta(minutes=1))  # events only
    for user in ("ann", "bob"):
        shopper(db, workspace, user, plan="gold")
    with db.write() as session:
        made, report = segments.create_segment(
            session=session,
            workspace_id=workspace,
            name="gold",
            rule={"trait": "plan", "op": "eq", "value": "gold"},
            actor="test",
        )
        last = segments.last_change_id(session=session, workspace_id=workspace)
    assert report.entered == 2 and last > 0
    assert run(db, workspace, noon()).triggers.changes == 0
    assert cursor(db, workspace).last_change_id == last

    # a journey on the segment switched on now reads only what changes from here on
    welcome: dict[str, Any] = {
        "name": "Welcome to gold",
        "trigger": {"type": "segment_entered", "segment_id": made.id},
        "steps": [{"id": "wait", "type": "wait", "hours": 1}],
    }
    start(db, workspace, welcome, utcnow() - timedelta(seconds=1))
    shopper(db, workspace, "cid", plan="gold")
    with db.write() as session:
        segments.catch_up(session=session, workspace_id=workspace)
    checkout(db, workspace, "ann", t0)
    report_ = run(db, workspace, noon())
    assert report_.triggers.changes == 1 and report_.triggers.enrolled == 2  # cid, ann's cart


@contextmanager
def statements(db: Database) -> Iterator[list[str]]:
    seen: list[str] = []

    def count(*args: Any) -> None:
        if str(args[2]).lstrip().upper().startswith("SELECT"):
            seen.append(str(args[2]))

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", count)


def test_statistics_of_many_journeys_take_three_queries(db: Database, workspace: str) -> None:
    dest = setup_shop(db, workspace)
    t0 = utcnow()
    ids = [
        start(db, workspace, abandoned_cart(dest, name=f"Cart {i}"), t0 - timedelta(minutes=1))
        for i in range(4)
    ]
    shopper(db, workspace, "ann")
    checkout(db, workspace, "ann", t0)
    run(db, workspace, noon())
    run(db, workspace, t0 + timedelta(hours=5))
    with db.read() as session:
        with statements(db) as seen:
            every = service.journeys_stats(session=session, workspace_id=workspace)
        one = [
            service.journey_stats(session=session, workspace_id=workspace, journey_id=jid)
            for jid in ids
        ]
    assert len(seen) == 3
    assert [every[jid] for jid in ids] == one
    with db.read() as session:  # the list page has the journeys already: two queries
        listed = service.list_journeys(session=session, workspace_id=workspace)
        with statements(db) as seen_given:
            given = service.journeys_stats(session=session, workspace_id=workspace, journeys=listed)
    assert len(seen_given) == 2 and given == every
    assert [s["entered"] for s in one] == [1, 1, 1, 1]
    assert sum(s["sent"] + s["skipped"] for s in one) == 4

"""Store-then-apply: an acknowledged event is stored; the processor applies it exactly once,
also when the process stopped between the two steps."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient

from consentry.api import create_app
from consentry.config import IdentitySettings, Settings
from consentry.ingest import service as ingest
from consentry.ingest.models import Envelope, parse_message
from consentry.ingest.writer import IngestWriter
from consentry.platform.db import Database, utcnow
from tests.support.segment import bearer, identify, track
from tests.support.store import maybe_profile


def _envelopes(*messages: dict[str, object]) -> list[Envelope]:
    out = []
    for i, raw in enumerate(messages):
        env = parse_message(raw, index=i, received_at=utcnow())
        assert not isinstance(env, list)
        out.append(env)
    return out


def test_stored_events_are_applied_once_in_order(db: Database, workspace: str) -> None:
    with db.write() as session:
        ingest.store(
            session=session,
            workspace_id=workspace,
            envelopes=_envelopes(
                identify(anonymousId="p-1", traits={"email": "p1@x.test"}),
                track(
                    "Order Completed",
                    anonymousId="p-1",
                    properties={"order_id": "p-o1", "total": 9},
                ),
            ),
        )
    with db.read() as session:
        assert ingest.pending_count(session=session, workspace_id=workspace) == 2
        assert workspace in ingest.workspaces_with_pending(session=session)
    assert maybe_profile(db, workspace, email="p1@x.test") == []  # stored, not applied yet
    with db.write() as session:
        first = ingest.process_pending(
            session=session, workspace_id=workspace, identity=IdentitySettings(), limit=1
        )
        second = ingest.process_pending(
            session=session, workspace_id=workspace, identity=IdentitySettings()
        )
        third = ingest.process_pending(
            session=session, workspace_id=workspace, identity=IdentitySettings()
        )
    assert (first.processed, second.processed, third.processed) == (1, 1, 0)
    (profile_id,) = maybe_profile(db, workspace, email="p1@x.test")
    with db.read() as session:
        events = ingest.events_of(session=session, workspace_id=workspace, profile_ids=[profile_id])
        assert ingest.pending_count(session=session, workspace_id=workspace) == 0
        assert workspace not in ingest.workspaces_with_pending(session=session)
    assert len(events) == 2


def test_a_restarted_server_applies_what_it_had_only_stored(
    settings: Settings, db: Database, workspace: str, admin_token: str
) -> None:
    with db.write() as session:  # as if the process died right after acknowledging
        ingest.store(
            session=session,
            workspace_id=workspace,
            envelopes=_envelopes(identify(userId="late", traits={"plan": "gold"})),
        )
    with TestClient(create_app(settings, db)) as client:
        client.app.state.ingest_writer.settle()  # type: ignore[attr-defined]
        status = client.get("/v1/ingest/status", headers=bearer(admin_token)).json()
        found = client.get(
            "/v1/profiles", params={"user_id": "late"}, headers=bearer(admin_token)
        ).json()["profiles"]
    assert status == {"pending": 0}
    assert [p["traits"] for p in found] == [{"plan": "gold"}]


def test_processing_is_not_starved_by_a_steady_stream(
    settings: Settings, db: Database, workspace: str
) -> None:
    # quiet is longer than the whole test: only the max_lag rule can apply anything
    writer = IngestWriter(db, settings, quiet=30.0, max_lag=0.1, chunk=20)
    sent = 0
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            batch = _envelopes(*[track("Tick", anonymousId=f"s-{sent + i}") for i in range(10)])
            writer.submit(workspace, batch).result(10)
            sent += 10
            with db.read() as session:
                if ingest.pending_count(session=session, workspace_id=workspace) < sent:
                    break  # something was applied while requests kept coming
        with db.read() as session:
            assert ingest.pending_count(session=session, workspace_id=workspace) < sent
    finally:
        writer.close()


def test_processing_chunks_are_sized_to_their_time_budget(settings: Settings, db: Database) -> None:
    """A chunk under load must fit its budget, or requests wait for the difference: once the
    cost of an event is known, a chunk is as many events as fit, within min and max."""
    writer = IngestWriter(db, settings, chunk=200, min_chunk=50, max_chunk=2000)
    assert writer._chunk_size(0.05) == 200  # nothing measured yet: the first chunk
    writer._learn(200, 0.070)  # 350 µs an event, as measured under load
    assert writer._chunk_size(0.05) == 142  # not the 200 of the first chunk
    assert writer._chunk_size(0.2) == 571
    writer._learn(10, 5.0)  # very slow events: the smallest chunk still makes progress
    assert writer._chunk_size(0.05) == 50
    writer._per_event = 1e-6
    assert writer._chunk_size(0.2) == 2000

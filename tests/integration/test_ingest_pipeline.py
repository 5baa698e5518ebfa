"""Store-then-apply: an acknowledged event is stored; the processor applies it exactly once,
also when the process stopped between the two steps."""

from __future__ import annotations

import time
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import update

from consentry.api import create_app
from consentry.config import IdentitySettings, Settings
from consentry.ingest import service as ingest
from consentry.ingest.writer import IngestWriter
from consentry.platform.db import Database, utcnow
from consentry.platform.keystore import subject_keys
from consentry.platform.vault import token_subject
from tests.support.segment import bearer, identify, parsed, track
from tests.support.store import maybe_profile


def test_stored_events_are_applied_once_in_order(db: Database, workspace: str) -> None:
    with db.write() as session:
        ingest.store(
            session=session,
            workspace_id=workspace,
            envelopes=parsed(
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
            envelopes=parsed(identify(userId="late", traits={"plan": "gold"})),
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
            batch = parsed(*[track("Tick", anonymousId=f"s-{sent + i}") for i in range(10)])
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
    writer._costs["process"] = 1e-6
    assert writer._chunk_size(0.2) == 2000


def test_a_request_is_acknowledged_as_one_stage_then_expanded_into_events(
    settings: Settings, db: Database, workspace: str
) -> None:
    """The answer waits for one sealed row per request; the writer expands it into events and
    applies them, deletes the stage and discards its key. A retry of a staged message is
    dropped when its stage is expanded; one of a stored message is a duplicate at once."""
    writer = IngestWriter(db, settings, quiet=30.0, max_lag=30.0)  # nothing applied meanwhile
    keystore = db.vault.keystore  # type: ignore[attr-defined]
    far = utcnow() + timedelta(days=1)
    batch = parsed(
        identify(userId="st-1", traits={"plan": "gold"}, messageId="st-m1"),
        track("Tick", userId="st-1", messageId="st-m2"),
        track("Tick", userId="st-1", messageId="st-m2"),  # the same message twice in a batch
    )
    try:
        first = writer.submit(workspace, batch).result(10)
        again = writer.submit(workspace, batch[:1]).result(10)  # retried while staged
        assert (first.accepted, first.duplicates, again.accepted) == (2, 1, 1)
        with db.read() as session:
            assert workspace in ingest.workspaces_with_stages(session=session)
            assert ingest.pending_count(session=session, workspace_id=workspace) == 3
            assert not ingest.get_event(session=session, workspace_id=workspace, message_id="st-m1")
        made = {s for w, s in keystore.subjects(ingest.STAGE_SUBJECT, far) if w == workspace}
        spent = db.spool.subjects() & made  # type: ignore[attr-defined]
        assert len(spent) == 2  # one key per stage, from the keys the writer made ahead
        writer.settle()
        with db.read() as session:
            assert ingest.pending_count(session=session, workspace_id=workspace) == 0
            stored = ingest.get_event(session=session, workspace_id=workspace, message_id="st-m1")
            assert stored is not None and stored.profile_id is not None
            assert ingest.events_of(
                session=session, workspace_id=workspace, profile_ids=[stored.profile_id]
            )[0].message_id in {"st-m1", "st-m2"}
        left = {s for w, s in keystore.subjects(ingest.STAGE_SUBJECT, far) if w == workspace}
        assert left == made - spent  # made ahead, not used yet
        assert all(keystore.data_key(workspace, s) is None for s in spent)
        retry = writer.submit(workspace, batch).result(10)
        assert (retry.accepted, retry.duplicates) == (0, 3)
    finally:
        writer.close()
    with db.read() as session:
        (profile_id,) = maybe_profile(db, workspace, user_id="st-1")
        events = ingest.events_of(session=session, workspace_id=workspace, profile_ids=[profile_id])
    assert sorted(e.message_id for e in events) == ["st-m1", "st-m2"]


def test_spent_stage_keys_are_discarded_and_live_ones_kept(db: Database, workspace: str) -> None:
    """Keys of stages that are gone (a crash after an expansion committed) are discarded;
    the key of a stage still waiting is kept, and so is a key younger than SPENT_AFTER, which
    another process may be about to write its stage for."""
    batch = parsed(track("Tick", anonymousId="k-1"))
    with db.read() as session:
        live, orphan, young = ingest.seal_stages(
            session=session, keys=ingest.StageKeys(), batches=[(workspace, batch)] * 3
        )
    ingest.stage(spool=db.spool, staged=[live])  # type: ignore[arg-type]
    keystore = db.vault.keystore  # type: ignore[attr-defined]
    subject = {
        name: token_subject(staged.row["body"])  # type: ignore[index]
        for name, staged in (("live", live), ("orphan", orphan), ("young", young))
    }
    with keystore.db.write() as session:  # made two hours ago
        session.execute(
            update(subject_keys)
            .where(subject_keys.c.subject_id.in_([subject["live"], subject["orphan"]]))
            .values(created_at=utcnow() - timedelta(hours=2))
        )
    with db.read() as session:
        assert ingest.discard_spent_stage_keys(session=session) >= 1
    assert keystore.data_key(workspace, subject["orphan"]) is None
    assert keystore.data_key(workspace, subject["live"]) is not None
    assert keystore.data_key(workspace, subject["young"]) is not None
    with db.write() as session:  # leave nothing staged for the session's other tests
        assert ingest.expand_stages(session=session, workspace_id=workspace).stages == 1


def test_stage_keys_are_made_ahead_and_handed_out_only_while_young(
    db: Database, workspace: str
) -> None:
    """A key made ahead and left unused an hour is discarded as spent; so the writer hands out
    a key only while it is young (max_age), and makes a new batch after."""
    vault = db.vault  # type: ignore[attr-defined]
    keys = ingest.StageKeys(batch=2, max_age=0.3)
    far = utcnow() + timedelta(days=1)

    def made() -> set[str]:
        return {s for w, s in vault.keystore.subjects(ingest.STAGE_SUBJECT, far) if w == workspace}

    taken = [keys.take(vault, workspace), keys.take(vault, workspace)]
    assert len(made()) == 2 and set(taken) == made()  # one batch, one key-store commit
    taken.append(keys.take(vault, workspace))  # the batch is used up: the next one
    assert len(made()) == 4
    time.sleep(0.35)
    late = keys.take(vault, workspace)  # its batch-mate is too old now: a new batch
    assert len(made()) == 6 and late not in taken
    assert all(vault.keystore.data_key(workspace, s) is not None for s in [*taken, late])


def test_a_unit_of_work_expands_a_stage_once(db: Database, workspace: str) -> None:
    """A stage is deleted only once the unit of work that expanded it commits; until then the
    same unit does not expand it again (a retention round erases many people in one)."""
    with db.read() as session:
        staged = ingest.seal_stages(
            session=session,
            keys=ingest.StageKeys(),
            batches=[(workspace, parsed(track("Once", anonymousId="o-1")))],
        )
    ingest.stage(spool=db.spool, staged=staged)  # type: ignore[arg-type]
    with db.write() as session:
        first = ingest.expand_stages(session=session, workspace_id=workspace)
        again = ingest.expand_stages(session=session, workspace_id=workspace)
        assert workspace in ingest.workspaces_with_stages(session=session)  # not committed yet
    assert (first.stages, first.stored.accepted, again.stages) == (1, 1, 0)
    with db.read() as session:
        assert workspace not in ingest.workspaces_with_stages(session=session)

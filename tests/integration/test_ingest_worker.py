"""The ingest worker process: the server acknowledges, the worker expands and applies."""

from __future__ import annotations

import threading
import time

from fastapi.testclient import TestClient

from consentry import api
from consentry.api import create_app
from consentry.config import Settings
from consentry.ingest import service as ingest
from consentry.ingest.worker import run_worker
from consentry.ingest.writer import IngestWriter
from consentry.platform.db import Database
from tests.support.segment import basic, bearer, identify, parsed, track
from tests.support.store import maybe_profile


def _pending(db: Database, workspace: str) -> int:
    with db.read() as session:
        return ingest.pending_count(session=session, workspace_id=workspace)


def test_a_writer_without_apply_only_acknowledges_and_the_worker_does_the_rest(
    settings: Settings, db: Database, workspace: str
) -> None:
    writer = IngestWriter(db, settings, apply=False, quiet=0.0)
    batch = parsed(identify(userId="w-1", traits={"plan": "gold"}), track("Tick", userId="w-1"))
    stop = threading.Event()
    worker = threading.Thread(target=run_worker, args=(settings, stop), kwargs={"poll": 0.01})
    try:
        assert writer.submit(workspace, batch).result(10).accepted == 2
        time.sleep(0.3)  # quiet: a writer that applied would have done it by now
        assert _pending(db, workspace) == 2
        worker.start()
        writer.settle(30)  # waits for the worker
        assert _pending(db, workspace) == 0
        (profile_id,) = maybe_profile(db, workspace, user_id="w-1")
        assert profile_id
        # a new request while the worker runs: found by its look for new stages
        assert writer.submit(workspace, parsed(track("Tock", userId="w-1"))).result(10)
        writer.settle(30)
        assert _pending(db, workspace) == 0
    finally:
        stop.set()
        if worker.is_alive():
            worker.join(30)
        writer.close()
    assert not worker.is_alive()


def test_a_worker_whose_server_is_gone_stops(settings: Settings) -> None:
    started = time.monotonic()
    run_worker(settings, threading.Event(), parent=-1)  # type: ignore[arg-type]
    assert time.monotonic() - started < 30


def _send_and_wait_applied(
    client: TestClient, write_key: str, admin_token: str, user_id: str, plan: str
) -> list[dict[str, object]]:
    """Send an identify call, wait until nothing is pending, and return the user's traits."""
    answer = client.post(
        "/v1/batch",
        json={"batch": [identify(userId=user_id, traits={"plan": plan})]},
        headers=basic(write_key),
    )
    assert answer.status_code == 200, answer.text
    deadline = time.monotonic() + 30
    status = None
    while status != {"pending": 0} and time.monotonic() < deadline:
        time.sleep(0.05)
        status = client.get("/v1/ingest/status", headers=bearer(admin_token)).json()
    found = client.get(
        "/v1/profiles", params={"user_id": user_id}, headers=bearer(admin_token)
    ).json()["profiles"]
    return [p["traits"] for p in found]


def test_the_server_starts_an_ingest_worker_process_and_stops_it(
    settings: Settings, db: Database, workspace: str, write_key: str, admin_token: str
) -> None:
    with_worker = settings.model_copy(
        update={"ingest": settings.ingest.model_copy(update={"worker_process": True})}
    )
    with TestClient(create_app(with_worker, db)) as client:
        worker = client.app.state.ingest_worker  # type: ignore[attr-defined]
        assert worker is not None and worker.process.is_alive()
        traits = _send_and_wait_applied(client, write_key, admin_token, "srv-1", "silver")
        assert traits == [{"plan": "silver"}]
        worker.process.kill()  # killed for memory, say: the server starts another
        worker.process.join(10)
        api._keep_worker_alive(client.app, with_worker)  # type: ignore[arg-type]
        again = client.app.state.ingest_worker  # type: ignore[attr-defined]
        assert again is not worker and again.process.is_alive()
        traits = _send_and_wait_applied(client, write_key, admin_token, "srv-2", "gold")
        assert traits == [{"plan": "gold"}]
    assert not again.process.is_alive()

"""An acknowledged batch survives a crash, and retrying every batch stores each message once.

Four client threads send 200 batches of 20 track events with fixed messageIds to a live
``consentry serve``. The server is SIGKILLed right after the 60th acknowledgement, with requests
still in flight, and restarted on the same store. Then:

- every message of every acknowledged batch is in the store (a 200 means committed);
- every batch is all there or not there at all (a batch is one transaction);
- the clients retry every batch, acknowledged or not, as an SDK would after a timeout, and the
  store ends with exactly one event per distinct messageId: nothing lost, nothing twice.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from consentry.ingest import service as ingest
from consentry.platform.db import Database
from tests.support.segment import basic, bearer, track
from tests.support.server import Credentials, LiveServer, credentials_via_cli

pytestmark = pytest.mark.slow

BATCHES = 200
PER_BATCH = 20
THREADS = 4
KILL_AFTER_ACKS = 60
PHASE_TIMEOUT = 120.0  # seconds for one phase of sending, whatever happens
RETRY_ATTEMPTS = 5  # transport failures tolerated per batch in the retry phase
USERS = 37  # userIds the events are spread over: one profile each
PAGE = 500  # timeline page size when reading everything back


def message_id(batch: int, index: int) -> str:
    return f"crash-b{batch:03d}-m{index:02d}"


def batch_body(batch: int) -> dict[str, Any]:
    """Batch ``batch``: 20 track events of a few users, the same body on every send."""
    return {
        "batch": [
            track(
                "Load Tested",
                messageId=message_id(batch, i),
                userId=f"load-user-{(batch * PER_BATCH + i) % USERS}",
                properties={"batch": batch, "index": i},
            )
            for i in range(PER_BATCH)
        ]
    }


ALL_IDS = [message_id(b, i) for b in range(BATCHES) for i in range(PER_BATCH)]


@dataclass
class Outcome:
    """What the clients saw, shared by the sending threads."""

    acks: dict[int, dict[str, Any]] = field(default_factory=dict)
    transport_errors: dict[int, str] = field(default_factory=dict)
    http_errors: dict[int, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ack(self, batch: int, body: dict[str, Any]) -> int:
        """Record a 200; return how many batches are acknowledged now."""
        with self.lock:
            self.acks[batch] = body
            self.transport_errors.pop(batch, None)
            return len(self.acks)

    def fail(self, batch: int, reason: str, *, transport: bool) -> None:
        with self.lock:
            (self.transport_errors if transport else self.http_errors)[batch] = reason


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    live = LiveServer(database_url, tmp_path)
    try:
        yield live.start()
    finally:
        live.close()


def send_all(
    server: LiveServer,
    write_key: str,
    *,
    kill_after: int | None = None,
    attempts: int = 1,
) -> Outcome:
    """Send every batch from THREADS threads; SIGKILL the server at the ``kill_after``-th ack."""
    todo: queue.SimpleQueue[int] = queue.SimpleQueue()
    for b in range(BATCHES):
        todo.put(b)
    outcome = Outcome()
    deadline = time.monotonic() + PHASE_TIMEOUT

    def worker() -> None:
        with httpx.Client(base_url=server.url, headers=basic(write_key), timeout=30.0) as http:
            while time.monotonic() < deadline:
                try:
                    b = todo.get_nowait()
                except queue.Empty:
                    return
                acks = _send(http, b, outcome, attempts, deadline)
                if kill_after is not None and acks == kill_after:
                    server.kill()  # exactly one thread makes the kill_after-th ack

    threads = [threading.Thread(target=worker, name=f"client-{n}") for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(deadline - time.monotonic(), 0) + 10)
    assert not any(t.is_alive() for t in threads), "a client thread is stuck"
    return outcome


def _send(http: httpx.Client, batch: int, outcome: Outcome, attempts: int, deadline: float) -> int:
    """Send one batch; return the number of acks after its 200, or 0 when it got none."""
    body = batch_body(batch)
    for _ in range(attempts):
        if time.monotonic() > deadline:
            break
        try:
            response = http.post("/v1/batch", json=body)
        except httpx.TransportError as exc:
            outcome.fail(batch, repr(exc), transport=True)
            continue
        if response.status_code == 200:
            return outcome.ack(batch, response.json())
        outcome.fail(batch, f"{response.status_code} {response.text[:300]}", transport=False)
        break
    return 0


def missing_ids(db: Database, workspace_id: str, ids: Iterable[str]) -> set[str]:
    """Which of ``ids`` the store lacks, asked one by one through the ingest service."""
    with db.read() as session:
        return {
            mid
            for mid in ids
            if ingest.get_event(session=session, workspace_id=workspace_id, message_id=mid) is None
        }


def timeline_ids(server: LiveServer, creds: Credentials) -> Counter[str]:
    """Every messageId on every profile's timeline, with how often it is there (admin API)."""
    found: Counter[str] = Counter()
    with httpx.Client(base_url=server.url, headers=bearer(creds.admin_token), timeout=30) as api:
        listing = api.get("/v1/profiles", params={"limit": 500}).json()
        assert listing["total"] == len(listing["profiles"]) <= USERS
        for profile in listing["profiles"]:
            cursor = None
            for _ in range(len(ALL_IDS) // PAGE + 2):  # bounded paging
                params: dict[str, Any] = {"limit": PAGE}
                if cursor is not None:
                    params["before"] = cursor
                page = api.get(f"/v1/profiles/{profile['id']}/events", params=params)
                assert page.status_code == 200, page.text
                found.update(e["messageId"] for e in page.json()["events"])
                cursor = page.json()["next"]
                if cursor is None:
                    break
    return found


def counts(server: LiveServer, creds: Credentials) -> dict[str, int]:
    """The workspace's counts from the admin API (events, profiles, orders, ...)."""
    response = httpx.get(
        f"{server.url}/v1/workspace", headers=bearer(creds.admin_token), timeout=30.0
    )
    assert response.status_code == 200, response.text
    return dict(response.json()["counts"])


def test_acknowledged_batches_survive_sigkill_and_retries_store_each_message_once(
    server: LiveServer, database_url: str, db: Database
) -> None:
    creds = credentials_via_cli(database_url)

    first = send_all(server, creds.write_key, kill_after=KILL_AFTER_ACKS)

    assert first.http_errors == {}, f"non-200 answers before the crash:\n{server.log_tail()}"
    assert not server.running, "the server was never killed: fewer acks than KILL_AFTER_ACKS"
    assert KILL_AFTER_ACKS <= len(first.acks) < BATCHES, "the kill did not land mid-load"
    assert all(
        a == {"success": True, "accepted": PER_BATCH, "duplicates": 0} for a in first.acks.values()
    )
    server.start()
    server.wait_processed(creds.admin_token)  # what was stored before the crash is applied once
    stored = assert_acks_survived(server, creds, db, first)

    retry = send_all(server, creds.write_key, attempts=RETRY_ATTEMPTS)
    server.wait_processed(creds.admin_token)

    assert_each_message_stored_once(server, creds, db, first, retry, already_stored=len(stored))


def assert_acks_survived(
    server: LiveServer, creds: Credentials, db: Database, first: Outcome
) -> Counter[str]:
    """Every acknowledged message is stored, and each batch is whole or absent; return the store."""
    acked_ids = [message_id(b, i) for b in sorted(first.acks) for i in range(PER_BATCH)]
    assert missing_ids(db, creds.workspace_id, acked_ids) == set(), "acked messages were lost"
    stored = timeline_ids(server, creds)
    assert set(stored) <= set(ALL_IDS) and set(stored.values()) <= {1}
    for b in range(BATCHES):
        in_store = sum(message_id(b, i) in stored for i in range(PER_BATCH))
        assert in_store in (0, PER_BATCH), f"batch {b} is half stored ({in_store}/{PER_BATCH})"
    assert counts(server, creds)["events"] == len(stored)
    return stored


def assert_each_message_stored_once(
    server: LiveServer,
    creds: Credentials,
    db: Database,
    first: Outcome,
    retry: Outcome,
    *,
    already_stored: int,
) -> None:
    """Retrying every batch was acknowledged, stored only what was missing, and no more."""
    assert retry.http_errors == {} and retry.transport_errors == {}, server.log_tail()
    assert sorted(retry.acks) == list(range(BATCHES))
    assert sum(a["accepted"] for a in retry.acks.values()) == len(ALL_IDS) - already_stored
    assert all(a["accepted"] + a["duplicates"] == PER_BATCH for a in retry.acks.values())
    for b in first.acks:
        assert retry.acks[b]["duplicates"] == PER_BATCH, f"acked batch {b} was stored again"
    final = counts(server, creds)
    assert final["events"] == len(set(ALL_IDS)) == BATCHES * PER_BATCH
    assert final["profiles"] == USERS, "events applied twice or not at all made extra profiles"
    assert timeline_ids(server, creds) == Counter(ALL_IDS), "lost or doubled messages"
    assert missing_ids(db, creds.workspace_id, ALL_IDS[::PER_BATCH]) == set()

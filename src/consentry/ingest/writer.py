"""The ingest writer: one thread per process that stores requests with group commit and, when no
request is waiting, applies stored events to profiles and commerce.

Storing: every request waiting is written in one transaction, each in its own savepoint, so a
single commit (one fsync) makes many requests durable at once; a request that fails is rolled
back alone and its caller gets the error. A caller is answered only after the commit that holds
its events. Before that transaction the group is sealed (``service.seal_batches``): the data
keys of its new people are made in one commit of the key store, and its rows are built and
sealed, so the transaction itself only checks for duplicates (and for erasures since) and
inserts.

Processing: between groups, the thread applies pending events in chunks (each chunk one
transaction that also moves the workspace's cursor), and goes back to storing as soon as a
request arrives. Under load, acknowledgement comes first and processing catches up in the
slack; at rest, events are applied milliseconds after they were acknowledged. One thread does
both, so SQLite's single writer never waits on itself.

Chunks are sized to a time budget, because a request that arrives while a chunk runs waits for
it: ``chunk_seconds`` when requests keep coming (the ``max_lag`` rule), ``idle_chunk_seconds``
when the queue was quiet. The first chunk holds ``chunk`` events; each full chunk (there was a
backlog) measures how long an event takes, and the next is sized to its budget, between
``min_chunk`` and ``max_chunk`` events (under load, 200 events took about 70 ms against a
budget of 50, and requests waited for the difference). A chunk has a fixed cost (its look-ups
and its commit), so under a backlog bigger chunks apply more events per second.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from consentry.config import Settings
from consentry.ingest import service
from consentry.ingest.models import Envelope
from consentry.ingest.service import IngestResult
from consentry.platform.db import Database

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Job:
    workspace_id: str
    envelopes: Sequence[Envelope]
    future: Future[IngestResult] = field(default_factory=Future)
    barrier: bool = False  # resolves once everything queued before it is stored and applied


class IngestWriter:
    """Serialises the ingestion writes of one process; see the module docstring."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        max_group_messages: int = 5000,
        chunk: int = 200,
        quiet: float = 0.01,
        max_lag: float = 0.25,
        max_chunk: int = 2000,
        min_chunk: int = 50,
        chunk_seconds: float = 0.05,
        idle_chunk_seconds: float = 0.2,
    ) -> None:
        self._db = db
        self._settings = settings
        self._max = max_group_messages
        self._chunk = chunk  # the first chunk, and the smallest
        self._max_chunk = max(chunk, max_chunk)
        self._min_chunk = max(1, min(chunk, min_chunk))  # once the cost of an event is known
        self._chunk_seconds = chunk_seconds
        self._idle_chunk_seconds = idle_chunk_seconds
        self._per_event: float | None = None  # seconds per event, from recent full chunks
        self._quiet = quiet
        self._max_lag = max_lag
        self._last_chunk = time.monotonic()
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._dirty: set[str] = set()

    def start(self) -> None:
        """Start the thread (idempotent); leftovers of an earlier run are processed first."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._thread = threading.Thread(
                target=self._run, name="consentry-ingest-writer", daemon=True
            )
            self._thread.start()

    def submit(self, workspace_id: str, envelopes: Sequence[Envelope]) -> Future[IngestResult]:
        """Queue a validated batch; the future resolves once its events are durable."""
        self.start()
        job = _Job(workspace_id, envelopes)
        self._queue.put(job)
        return job.future

    async def write(self, workspace_id: str, envelopes: Sequence[Envelope]) -> IngestResult:
        """Queue a batch and wait, without blocking the event loop, until it is durable."""
        return await asyncio.wrap_future(self.submit(workspace_id, envelopes))

    def settle(self, timeout: float = 60.0) -> None:
        """Block until everything submitted so far is stored and applied (tests, shutdown)."""
        self.start()
        job = _Job("", [], barrier=True)
        self._queue.put(job)
        job.future.result(timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Store what is queued, then stop; unprocessed events wait for the next start."""
        with self._lock:
            thread = self._thread
        if thread is not None and thread.is_alive():
            self._queue.put(None)
            thread.join(timeout)

    # --- the thread -------------------------------------------------------------------------

    def _run(self) -> None:
        self._recover()
        while True:
            job = self._next_job()
            if job is None:
                return
            group, stop = self._drain(job)
            self._store(group)
            if stop:
                return

    def _recover(self) -> None:
        try:
            with self._db.read() as session:
                self._dirty.update(service.workspaces_with_pending(session=session))
        except Exception:  # noqa: BLE001 - the store may not be migrated yet; retried later
            log.warning("could not list pending workspaces at start")

    def _next_job(self) -> _Job | None:
        """The next request. Pending events are processed a chunk at a time when the queue has
        been empty for ``quiet`` seconds, and at least every ``max_lag`` seconds under load, so
        acknowledgement comes first but processing is never starved. Once the queue was quiet,
        chunks follow each other without waiting again, as long as no request is waiting."""
        catching_up = False
        while True:
            if self._dirty and time.monotonic() - self._last_chunk > self._max_lag:
                self._process_one_chunk(self._chunk_seconds)
            try:
                if catching_up:
                    return self._queue.get_nowait()
                return self._queue.get(timeout=self._quiet)
            except queue.Empty:
                pass
            if not self._process_one_chunk(self._idle_chunk_seconds):
                return self._queue.get()
            catching_up = True

    def _drain(self, first: _Job) -> tuple[list[_Job], bool]:
        group, size = [first], len(first.envelopes)
        while size < self._max:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                return group, True
            group.append(job)
            size += len(job.envelopes)
        return group, False

    def _store(self, jobs: list[_Job]) -> None:
        group = [j for j in jobs if not j.barrier]
        if group:
            self._store_group(group)
        for barrier in (j for j in jobs if j.barrier):
            while self._process_one_chunk(self._idle_chunk_seconds):
                pass
            barrier.future.set_result(IngestResult())

    def _store_group(self, group: list[_Job]) -> None:
        sealed = self._seal(group)
        results: list[tuple[_Job, IngestResult]] = []
        try:
            with self._db.write() as session:
                for job, ready in zip(group, sealed, strict=True):
                    try:
                        with session.begin_nested():
                            results.append((job, self._store_one(session, job, ready)))
                    except Exception as exc:  # noqa: BLE001 - handed to that request's caller
                        job.future.set_exception(exc)
        except Exception as exc:  # noqa: BLE001 - the commit failed: nothing was stored
            log.exception("ingest group commit failed")
            for job, _ in results:
                job.future.set_exception(exc)
            return
        for job, result in results:
            self._dirty.add(job.workspace_id)
            job.future.set_result(result)

    def _seal(self, group: list[_Job]) -> list[service.Sealed | None]:
        """Seal the group's batches before its write transaction: its new data keys are made
        in one commit of the key store (not one per request), and the write transaction, which
        holds the store's single writer, only writes."""
        try:
            with self._db.read() as session:
                return service.seal_batches(
                    session=session, batches=[(j.workspace_id, j.envelopes) for j in group]
                )
        except Exception:  # noqa: BLE001 - only a head start: each job is sealed as it is stored
            log.warning("sealing a group ahead of its transaction failed; it is sealed within")
            return [None] * len(group)

    def _store_one(
        self, session: Session, job: _Job, sealed: service.Sealed | None
    ) -> IngestResult:
        return service.store(
            session=session, workspace_id=job.workspace_id, envelopes=job.envelopes, sealed=sealed
        )

    def _chunk_size(self, budget: float) -> int:
        """Events in the next chunk: as many as fit the time budget, within the bounds."""
        if self._per_event is None:
            return self._chunk
        fits = int(budget / self._per_event)
        return max(self._min_chunk, min(self._max_chunk, fits))

    def _learn(self, events: int, seconds: float) -> None:
        per_event = max(seconds, 1e-6) / events
        previous = self._per_event
        self._per_event = per_event if previous is None else (previous + per_event) / 2

    def _process_one_chunk(self, budget: float) -> bool:
        """Apply one chunk of one dirty workspace, sized to take about ``budget`` seconds; False
        when nothing is pending."""
        self._last_chunk = time.monotonic()
        while self._dirty:
            workspace_id = next(iter(self._dirty))
            limit = self._chunk_size(budget)
            started = time.monotonic()
            try:
                with self._db.write(durable=False) as session:  # redone if lost
                    done = service.process_pending(
                        session=session,
                        workspace_id=workspace_id,
                        identity=self._settings.identity,
                        default_region=self._settings.default_phone_region,
                        limit=limit,
                    ).processed
            except Exception:  # noqa: BLE001 - kept pending; retried when new events arrive
                log.exception("processing stored events failed; they stay pending")
                self._dirty.discard(workspace_id)
                continue
            if done == limit:  # a full chunk: more is waiting, and it measured the cost
                self._learn(done, time.monotonic() - started)
            if done:
                return True
            self._dirty.discard(workspace_id)
        return False

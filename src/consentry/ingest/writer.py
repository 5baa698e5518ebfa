"""Group commit: one writer thread per process applies every batch that is waiting in one
transaction, so a single commit (one fsync) makes many requests durable at once.

Each request is applied inside its own savepoint: a request that fails is rolled back alone and
its caller gets the error; the others still commit. A caller is answered only after the commit
that holds its events, so an acknowledged event is always durable. SQLite allows one writer at a
time anyway; queueing here instead of on the database lock keeps the threads from spinning.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
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
    future: Future[service.IngestResult] = field(default_factory=Future)


class GroupCommitWriter:
    """Serialises ingestion writes of one process and commits them in groups."""

    def __init__(self, db: Database, settings: Settings, max_group_messages: int = 5000) -> None:
        self._db = db
        self._settings = settings
        self._max = max_group_messages
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _ensure_started(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="consentry-ingest-writer", daemon=True
                )
                self._thread.start()

    def submit(
        self, workspace_id: str, envelopes: Sequence[Envelope]
    ) -> Future[service.IngestResult]:
        """Queue a validated batch; the future resolves after its transaction committed."""
        self._ensure_started()
        job = _Job(workspace_id, envelopes)
        self._queue.put(job)
        return job.future

    async def write(self, workspace_id: str, envelopes: Sequence[Envelope]) -> IngestResult:
        """Queue a batch and wait, without blocking the event loop, until it is durable."""
        return await asyncio.wrap_future(self.submit(workspace_id, envelopes))

    def close(self, timeout: float = 30.0) -> None:
        """Finish what is queued and stop the thread."""
        with self._lock:
            thread = self._thread
        if thread is not None and thread.is_alive():
            self._queue.put(None)
            thread.join(timeout)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            group, stop = self._drain(first)
            self._commit(group)
            if stop:
                return

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

    def _commit(self, group: list[_Job]) -> None:
        results: list[tuple[_Job, service.IngestResult]] = []
        try:
            with self._db.write() as session:
                for job in group:
                    try:
                        with session.begin_nested():
                            results.append((job, self._apply(session, job)))
                    except Exception as exc:  # noqa: BLE001 - handed to that request's caller
                        job.future.set_exception(exc)
        except Exception as exc:  # noqa: BLE001 - the commit failed: nobody was stored
            log.exception("ingest group commit failed")
            for job, _ in results:
                job.future.set_exception(exc)
            return
        for job, result in results:
            job.future.set_result(result)

    def _apply(self, session: Session, job: _Job) -> service.IngestResult:
        return service.ingest(
            session=session,
            workspace_id=job.workspace_id,
            envelopes=job.envelopes,
            identity=self._settings.identity,
            default_region=self._settings.default_phone_region,
        )

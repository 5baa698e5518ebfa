"""The ingest writer: one thread per process that acknowledges requests with group commit and,
when no request is waiting (and no ingest worker process does it), expands acknowledged
requests into events and applies them to profiles and commerce.

Acknowledging: every request waiting is sealed as one stage row (``service.seal_stages``: its
new messages as one value under a key of its own, made ahead by ``service.StageKeys``) and the
group's stages are written to the spool (``ingest.spool``) in one
transaction, so a single commit (one fsync) makes many requests durable at once. A caller is
answered only after the commit that holds its stage. If a group fails, its requests are tried
one at a time, so only a request that fails by itself gets the error.

Background work, in chunks: expanding a workspace's oldest stages into events (``service.
expand_stages``, durable, as the stages' keys are discarded after it), and applying its stored
events (each chunk one transaction that also moves the workspace's cursor); the two take turns,
so neither waits for the other under a steady stream. With ``apply=False`` the writer only
acknowledges, and an ingest worker process does the background work with the same code
(``ingest.worker``, which ``consentry serve`` starts); else the thread does it between groups
and goes back to acknowledging as soon as a request arrives: under load acknowledgement comes
first and the rest catches up in the slack, and at rest events are applied milliseconds after
they were acknowledged.

Chunks are sized to a time budget, because a request that arrives while a chunk runs waits for
it: ``chunk_seconds`` when requests keep coming (the ``max_lag`` rule), ``idle_chunk_seconds``
when the queue was quiet. The first chunk holds ``chunk`` events; each full chunk (there was a
backlog) measures how long an event takes to expand or to apply, and the next is sized to its
budget, between ``min_chunk`` and ``max_chunk`` events (under load, 200 events took about 70 ms
to apply against a budget of 50, and requests waited for the difference). A chunk has a fixed
cost (its look-ups and its commit), so under a backlog bigger chunks do more per second.
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

from consentry.config import Settings
from consentry.ingest import service
from consentry.ingest.models import Envelope
from consentry.ingest.service import IngestResult
from consentry.ingest.spool import spool_of
from consentry.platform.db import Database

log = logging.getLogger(__name__)

SETTLE_SECONDS = 60.0  # how long settle() waits for an ingest worker to catch up


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
        *,
        apply: bool = True,
    ) -> None:
        self._db = db
        self._settings = settings
        self._max = max_group_messages
        self._chunk = chunk  # the first chunk, and the smallest
        self._max_chunk = max(chunk, max_chunk)
        self._min_chunk = max(1, min(chunk, min_chunk))  # once the cost of an event is known
        self._chunk_seconds = chunk_seconds
        self._idle_chunk_seconds = idle_chunk_seconds
        self._costs: dict[str, float] = {}  # seconds per event to expand, to process
        self._expand_first = False  # chunks take turns: expand stages, apply events
        self._quiet = quiet
        self._max_lag = max_lag
        self._last_chunk = time.monotonic()
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._dirty: set[str] = set()
        self._apply = apply  # False: an ingest worker process expands and applies
        self._staged: set[str] = set()  # workspaces this writer acknowledged requests of
        self._stage_keys = service.StageKeys()

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
        self.recover()
        while True:
            job = self._next_job()
            if job is None:
                return
            group, stop = self._drain(job)
            self._store(group)
            if stop:
                return

    def recover(self) -> None:
        """Before the first request: discard the keys of stages that are gone, and expand
        every stage left by an earlier run, so that a client's retry of an acknowledged
        request is answered as a duplicate."""
        try:
            with self._db.read() as session:
                service.discard_spent_stage_keys(session=session)
                self._dirty.update(service.workspaces_with_pending(session=session))
            for workspace_id in list(self._dirty):
                while self._expand_chunk(workspace_id, self._idle_chunk_seconds):
                    pass
        except Exception:  # noqa: BLE001 - the store may not be migrated yet; retried later
            log.warning("could not recover pending ingestion at start")

    def work_once(self) -> bool:
        """One chunk of background work (an ingest worker's loop); False when there is none."""
        return self._process_one_chunk(self._chunk_seconds)

    def mark_dirty(self, workspace_ids: Sequence[str]) -> None:
        """Workspaces that have background work (an ingest worker found their stages)."""
        self._dirty.update(workspace_ids)

    def _next_job(self) -> _Job | None:
        """The next request. Pending events are processed a chunk at a time when the queue has
        been empty for ``quiet`` seconds, and at least every ``max_lag`` seconds under load, so
        acknowledgement comes first but processing is never starved. Once the queue was quiet,
        chunks follow each other without waiting again, as long as no request is waiting.
        Without ``apply``, only requests."""
        if not self._apply:
            return self._queue.get()
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
            if self._apply:
                while self._process_one_chunk(self._idle_chunk_seconds):
                    pass
            elif not self._wait_applied(SETTLE_SECONDS):
                barrier.future.set_exception(TimeoutError("the ingest worker did not catch up"))
                continue
            barrier.future.set_result(IngestResult())

    def _wait_applied(self, timeout: float) -> bool:
        """Without ``apply``: wait until the ingest worker has expanded and applied everything
        this writer acknowledged; False if it did not within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            with self._db.read() as session:
                left = [
                    w
                    for w in self._staged
                    if service.pending_count(session=session, workspace_id=w)
                ]
            if not left or time.monotonic() > deadline:
                return not left
            time.sleep(0.01)

    def _store_group(self, group: list[_Job]) -> None:
        """Acknowledge a group: each request becomes one stage row, sealed first (under a key
        made ahead), all written to the spool in one commit. If the
        group fails, its requests are tried one at a time, so only a request that fails by
        itself gets the error."""
        try:
            with self._db.read() as session:
                staged = service.seal_stages(
                    session=session,
                    batches=[(j.workspace_id, j.envelopes) for j in group],
                    keys=self._stage_keys,
                )
                service.stage(spool=spool_of(session), staged=staged)
        except Exception as exc:  # noqa: BLE001 - handed to the callers
            if len(group) > 1:
                for job in group:
                    self._store_group([job])
                return
            log.exception("acknowledging an ingest request failed")
            group[0].future.set_exception(exc)
            return
        for job, ready in zip(group, staged, strict=True):
            if ready.row is not None:
                self._staged.add(job.workspace_id)
                if self._apply:
                    self._dirty.add(job.workspace_id)
            job.future.set_result(ready.result)

    def _chunk_size(self, budget: float, kind: str = "process") -> int:
        """Events in the next chunk of ``kind`` (expand or process): as many as fit the time
        budget, within the bounds."""
        cost = self._costs.get(kind)
        if cost is None:
            return self._chunk
        fits = int(budget / cost)
        return max(self._min_chunk, min(self._max_chunk, fits))

    def _learn(self, events: int, seconds: float, kind: str = "process") -> None:
        per_event = max(seconds, 1e-6) / events
        previous = self._costs.get(kind)
        self._costs[kind] = per_event if previous is None else (previous + per_event) / 2

    def _process_one_chunk(self, budget: float) -> bool:
        """Expand or apply one chunk of one dirty workspace, sized to take about ``budget``
        seconds: its oldest stages or its next stored events, in turns, so that neither
        waits for the other under a steady stream. False when nothing is pending."""
        self._last_chunk = time.monotonic()
        while self._dirty:
            workspace_id = next(iter(self._dirty))
            steps = (self._expand_chunk, self._apply_chunk)
            self._expand_first = not self._expand_first
            try:
                first, then = steps if self._expand_first else steps[::-1]
                if first(workspace_id, budget) or then(workspace_id, budget):
                    return True
            except Exception:  # noqa: BLE001 - kept pending; retried when new events arrive
                log.exception("expanding or applying acknowledged events failed; they stay pending")
            self._dirty.discard(workspace_id)
        return False

    def _expand_chunk(self, workspace_id: str, budget: float) -> int:
        """Expand the workspace's oldest stages into events; how many messages. Durable: the
        stages' keys are discarded once it commits."""
        limit = self._chunk_size(budget, "expand")
        started = time.monotonic()
        with self._db.write() as session:
            done = service.expand_stages(
                session=session, workspace_id=workspace_id, max_messages=limit
            ).messages
        if done >= limit:  # a full chunk: it measured the cost
            self._learn(done, time.monotonic() - started, "expand")
        return done

    def _apply_chunk(self, workspace_id: str, budget: float) -> int:
        """Apply the workspace's next stored events; how many."""
        limit = self._chunk_size(budget)
        started = time.monotonic()
        with self._db.write(durable=False) as session:  # redone if lost
            done = service.process_pending(
                session=session,
                workspace_id=workspace_id,
                identity=self._settings.identity,
                default_region=self._settings.default_phone_region,
                limit=limit,
            ).processed
        if done == limit:  # a full chunk: more is waiting, and it measured the cost
            self._learn(done, time.monotonic() - started)
        return done

"""The ingest worker: a process of its own that expands acknowledged requests into events and
applies them, so that the server's process only acknowledges.

One server process acknowledging a request as one stage row spends about 40 µs of CPU per
event; expanding and applying it costs about six times that. In one process both share one
core (the GIL), so the server acknowledged about 14k events/s while applying 4k/s. With this
worker, ``consentry serve`` uses the machine's second core for the background work and its
first for the answers (docs/ARCHITECTURE.md, "Ingestion").

The worker runs the ingest writer's background half (:class:`IngestWriter` with no requests):
at start it discards spent stage keys and expands what an earlier run left; then it expands
and applies chunk after chunk while any workspace has work, and looks for new stages every
``poll`` seconds when there is none (and every ten minutes for spent stage keys and for
events a failed chunk left unapplied). It stops when told to, or when the server that started
it is gone (checked between chunks), as a server killed with SIGKILL cannot tell it.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event

from consentry.config import Settings
from consentry.ingest import service
from consentry.ingest.writer import IngestWriter

log = logging.getLogger(__name__)

POLL_SECONDS = 0.02  # how often an idle worker looks for new stages
SWEEP_SECONDS = 600.0  # how often an idle worker sweeps: spent stage keys, unapplied events
NICE = 10  # the worker's scheduling priority below the server's: it takes the idle CPU first


@dataclass
class IngestWorker:
    """A started worker process, as its server holds it."""

    process: BaseProcess
    stop_event: Event

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the worker to stop after its current chunk; kill it if it does not in time
        (what it had not committed is redone by the next one)."""
        self.stop_event.set()
        self.process.join(timeout)
        if self.process.is_alive():
            log.warning("the ingest worker did not stop in %.0f s; killed", timeout)
            self.process.kill()
            self.process.join(5)


def start_worker(settings: Settings) -> IngestWorker:
    """Start the worker process for the store of ``settings`` (spawned: it inherits no
    connections and no threads)."""
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    process = context.Process(
        target=_worker_process,
        args=(settings, stop, os.getpid()),
        name="consentry-ingest-worker",
        daemon=True,
    )
    process.start()
    return IngestWorker(process, stop)


def _worker_process(settings: Settings, stop: Event, parent: int) -> None:
    """The worker process's entry: it yields the CPU to the server (a nice value of
    :data:`NICE`), as answering clients is what they wait for, and runs :func:`run_worker`."""
    os.nice(NICE)
    run_worker(settings, stop, parent)


def run_worker(
    settings: Settings, stop: Event, parent: int | None = None, poll: float = POLL_SECONDS
) -> None:
    """The worker's loop (see the module's text); returns when ``stop`` is set or the process
    ``parent`` is gone."""
    from consentry.stores import child_store

    with child_store(settings) as store:
        writer = IngestWriter(store, settings)
        writer.recover()  # discards spent stage keys first
        swept = time.monotonic()
        while not stop.is_set() and (parent is None or os.getppid() == parent):
            if writer.work_once():
                continue
            stop.wait(poll)
            try:
                with store.read() as session:
                    writer.mark_dirty(service.workspaces_with_stages(session=session))
                    if time.monotonic() - swept > SWEEP_SECONDS:
                        swept = time.monotonic()
                        service.discard_spent_stage_keys(session=session)
                        # and events left unapplied by a chunk that failed, in a quiet workspace
                        writer.mark_dirty(service.workspaces_with_pending(session=session))
            except Exception:  # noqa: BLE001 - the store is away for a moment: look again
                log.exception("the ingest worker could not look for new stages")

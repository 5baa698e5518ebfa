"""The HTTP application: mounts each capability's router and maps ConsentryError to statuses.

This is the only place that turns a domain error into an HTTP status.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
from collections.abc import AsyncIterator, Callable, Coroutine
from concurrent.futures import ProcessPoolExecutor
from contextlib import asynccontextmanager, suppress
from dataclasses import asdict
from datetime import timedelta
from functools import partial
from typing import Any, Protocol

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from consentry import __version__
from consentry.analytics import service as analytics
from consentry.analytics.routes import router as analytics_router
from consentry.audiences import service as audiences
from consentry.audiences.export_routes import router as audience_exports_router
from consentry.audiences.routes import router as segments_router
from consentry.audiences.routes import traits_router as computed_traits_router
from consentry.commerce import service as commerce
from consentry.config import Settings, get_settings
from consentry.consent.config_routes import router as consent_config_router
from consentry.consent.doi_routes import pages as doi_pages
from consentry.consent.doi_routes import router as doi_router
from consentry.consent.preference_routes import admin as preference_admin
from consentry.consent.preference_routes import pages as preference_pages
from consentry.consent.routes import router as consent_router
from consentry.consent.signal_routes import router as consent_signals_router
from consentry.consent.signal_routes import well_known as consent_well_known
from consentry.delivery import outbox
from consentry.delivery.routes import router as delivery_router
from consentry.delivery.smtp import SmtpMailer
from consentry.delivery.webhook import send as post_webhook
from consentry.deps import AnyToken, CommerceRead, DbDep, ReadAudit, WriteKeys
from consentry.errors import (
    Conflict,
    ConsentryError,
    FieldError,
    Forbidden,
    Invalid,
    NotFound,
    TooManyRequests,
    Unauthorized,
)
from consentry.ingest import service as ingest
from consentry.ingest.routes import router as ingest_router
from consentry.ingest.worker import start_worker
from consentry.ingest.writer import IngestWriter
from consentry.journeys import service as journeys
from consentry.journeys.preset_routes import attribution_router as journey_attribution_router
from consentry.journeys.preset_routes import router as journey_presets_router
from consentry.journeys.routes import router as journeys_router
from consentry.nul_guard import NulGuard
from consentry.platform import tenancy
from consentry.platform.audit_routes import router as audit_router
from consentry.platform.db import Database, utcnow
from consentry.privacy import notification_service, retention_service
from consentry.privacy.access_routes import router as access_router
from consentry.privacy.erasure_routes import router as erasure_router
from consentry.privacy.processor_routes import router as privacy_processors_router
from consentry.privacy.request_pages import pages as privacy_request_pages
from consentry.privacy.request_routes import router as privacy_requests_router
from consentry.privacy.retention_routes import router as retention_router
from consentry.profiles import dedupe_service as dedupe
from consentry.profiles import service as profiles
from consentry.profiles.dedupe_routes import router as dedupe_router
from consentry.profiles.routes import router as profiles_router
from consentry.quality import service as quality
from consentry.quality.routes import router as quality_router
from consentry.recommend import service as recommend
from consentry.recommend.routes import router as recommend_router
from consentry.stores import child_store, open_database

STATUS: list[tuple[type[ConsentryError], int]] = [
    (Invalid, 400),  # LimitExceeded included: the ingestion contract answers 400
    (Unauthorized, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (Conflict, 409),
    (TooManyRequests, 429),
]

log = logging.getLogger("consentry.api")


def _status(exc: ConsentryError) -> int:
    return next((code for kind, code in STATUS if isinstance(exc, kind)), 500)


def _error_body(code: str, message: str, errors: list[FieldError]) -> dict[str, Any]:
    return {"code": code, "message": message, "errors": [e.as_dict() for e in errors]}


async def _on_consentry_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ConsentryError)
    headers = {"WWW-Authenticate": "Basic, Bearer"} if isinstance(exc, Unauthorized) else None
    body = _error_body(exc.code, exc.message, exc.errors)
    if isinstance(exc, TooManyRequests):
        headers = {"Retry-After": str(exc.retry_after)}
        body["retry_after"] = exc.retry_after
    return JSONResponse(body, status_code=_status(exc), headers=headers)


async def _on_validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        FieldError(
            field=".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query")),
            reason=str(err.get("msg", "invalid")),
        )
        for err in exc.errors()
    ]
    return JSONResponse(_error_body("invalid", "the request is malformed", errors), 400)


async def _on_http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return JSONResponse(
        _error_body("http_error", str(exc.detail), []),
        status_code=exc.status_code,
        headers=getattr(exc, "headers", None),
    )


def create_app(settings: Settings | None = None, db: Database | None = None) -> FastAPI:
    """Build the application around a store; nothing connects before the first request."""
    settings = settings or get_settings()
    store = db or open_database(settings)
    in_worker = settings.ingest.worker_process  # else the writer thread expands and applies
    writer = IngestWriter(store, settings, apply=not in_worker)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        writer.start()  # expands what a previous run acknowledged before the first answer
        # None: the writer thread expands and applies
        _app.state.ingest_worker = start_worker(settings) if in_worker else None
        background = _background_jobs(store, settings)
        if in_worker:
            watch = partial(_keep_worker_alive, _app, settings)
            background.append(_every(WORKER_CHECK_SECONDS, watch, "ingest worker", first=5))
        jobs = [asyncio.create_task(job) for job in background]
        yield
        for job in jobs:
            job.cancel()
            with suppress(asyncio.CancelledError):
                await job
        writer.close()
        worker = _app.state.ingest_worker
        if worker is not None:
            await run_in_threadpool(worker.stop)

    app = FastAPI(
        lifespan=lifespan,
        title="consentry",
        version=__version__,
        description="Customer data platform for e-commerce, governed by consent. "
        "Ingestion is wire-compatible with the Segment HTTP tracking API.",
    )
    app.state.settings = settings
    app.state.db = store
    app.state.ingest_writer = writer
    app.state.write_keys = WriteKeys()  # ingestion's write keys, remembered for a second
    app.state.mailer = SmtpMailer(settings.smtp)  # consent.doi_routes sends through it
    app.add_middleware(NulGuard)
    app.add_exception_handler(ConsentryError, _on_consentry_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.include_router(ingest_router)
    app.include_router(profiles_router)
    app.include_router(dedupe_router)  # /v1/identity: dedupe runs, the review queue
    app.include_router(consent_config_router)  # before /v1/consent/{profile_id}
    app.include_router(doi_router)
    app.include_router(doi_pages)  # /c/{token}: the confirmation page
    app.include_router(preference_admin)  # links, branding: before /v1/consent/{profile_id}
    app.include_router(preference_pages)  # /p/{token}, /u/{token}: the customer's pages
    app.include_router(consent_signals_router)  # /tcf, /signals/...: before {profile_id}
    app.include_router(consent_well_known)  # /.well-known/gpc.json
    app.include_router(consent_router)
    app.include_router(privacy_processors_router)
    app.include_router(privacy_requests_router)  # /v1/privacy/requests: intake, queue, steps
    app.include_router(privacy_request_pages)  # /privacy-request/{workspace}, /dsr/{token}
    app.include_router(audit_router)
    app.include_router(access_router)
    app.include_router(erasure_router)
    app.include_router(retention_router)
    app.include_router(analytics_router)
    app.include_router(recommend_router)  # /item/..., /models before /{profile_id}
    app.include_router(quality_router)
    app.include_router(audience_exports_router)  # /v1/audiences/exports
    app.include_router(segments_router)  # /v1/segments
    app.include_router(computed_traits_router)  # /v1/computed-traits
    app.include_router(delivery_router)  # /v1/destinations, /v1/outbox, /v1/suppressions
    app.include_router(journey_presets_router)  # /v1/journeys/presets: before /{journey_id}
    app.include_router(journey_attribution_router)  # /v1/journeys/{journey_id}/attribution
    app.include_router(journeys_router)  # /v1/journeys: after the presets
    _mount_core(app)
    _mount_web(app)
    return app


MAINTENANCE_SECONDS = 6 * 3600
WORKER_CHECK_SECONDS = 5.0  # how often the server checks that its ingest worker runs


def _keep_worker_alive(app: FastAPI, settings: Settings) -> None:
    """Start a new ingest worker if the server's has died (killed for memory, say): without
    one, acknowledged requests would wait in the spool."""
    worker = app.state.ingest_worker
    if worker is not None and not worker.process.is_alive():
        log.error(
            "the ingest worker died (exit code %s); starting another", worker.process.exitcode
        )
        app.state.ingest_worker = start_worker(settings)


async def _every(seconds: float, job: Callable[[], object], what: str, *, first: float) -> None:
    """Run ``job`` in a worker thread ``first`` seconds after start, then every ``seconds``.
    A failed round is logged and the schedule goes on (the next round tries again)."""
    await asyncio.sleep(first)
    while True:
        try:
            await run_in_threadpool(job)
        except Exception:
            log.exception("%s: the scheduled round failed", what)
        await asyncio.sleep(seconds)


def _background_jobs(store: Database, settings: Settings) -> list[Coroutine[Any, Any, None]]:
    """The server's schedule: erasure webhooks retried, planner statistics refreshed (5 s
    after start, then every six hours), retention run and analytics run (when scheduled; the
    analytics a minute after start, then every ``analytics.interval_hours``), data-quality
    audits (when scheduled: checked every ten minutes, a workspace audited when its latest
    audit is ``quality.interval_hours`` old), recommendations retrained (when scheduled: five
    minutes after start, then every ``recommend.interval_hours``), the outbox delivered (when
    scheduled: every ``delivery.interval_seconds``) and its settled messages pruned (every six
    hours). Analytics runs and training run in a child process each (:func:`_in_child`)."""
    webhooks = settings.erasure.webhook_interval_seconds
    jobs = [
        _every(
            webhooks,
            partial(_deliver_notifications, store, settings),
            "erasure notifications",
            first=webhooks,
        ),
        _every(MAINTENANCE_SECONDS, store.optimize, "store maintenance", first=5),
    ]
    if settings.retention.scheduled:
        hours = settings.retention.interval_hours * 3600
        jobs.append(
            _every(hours, partial(_retention_round, store, settings), "retention", first=hours)
        )
    if settings.analytics.scheduled:  # in a child process, as is training (see _in_child)
        hours = settings.analytics.interval_hours * 3600
        analytics_round = _in_child(_analytics_round, settings)
        jobs.append(_every(hours, analytics_round, "analytics", first=60))
    if settings.recommend.scheduled:  # after the first analytics run: its RFM segments
        hours = settings.recommend.interval_hours * 3600
        recommend_round = _in_child(_recommend_round, settings)
        jobs.append(_every(hours, recommend_round, "recommendations", first=RECOMMEND_FIRST))
    if settings.dedupe.scheduled:  # incremental runs, for workspaces that had a batch run
        hours = settings.dedupe.interval_hours * 3600
        jobs.append(_every(hours, partial(_dedupe_round, store, settings), "dedupe", first=hours))
    if settings.quality.scheduled:  # each round audits only the workspaces that are due
        quality_round = partial(_quality_round, store, settings)
        jobs.append(_every(QUALITY_CHECK_SECONDS, quality_round, "quality", first=120))
    if settings.audiences.scheduled:  # segment membership: catch-ups, full refresh when due
        every = settings.audiences.catch_up_seconds
        audiences_round = partial(_audiences_round, store, settings)
        jobs.append(_every(every, audiences_round, "audiences", first=every))
    if settings.journeys.scheduled:  # workspaces with an active journey, every tick_seconds
        every = settings.journeys.tick_seconds
        journeys_round = partial(_journeys_round, store, settings)
        jobs.append(_every(every, journeys_round, "journeys", first=every))
    if settings.delivery.scheduled:  # the outbox: every workspace's due messages
        seconds = settings.delivery.interval_seconds
        delivery_round = partial(_deliver_outbox, store, settings)
        jobs.append(_every(seconds, delivery_round, "delivery", first=seconds))
        prune = partial(_prune_outbox, store, settings)
        jobs.append(_every(MAINTENANCE_SECONDS, prune, "outbox pruning", first=600))
    return jobs


class _Due(Protocol):
    def __call__(self, *, session: Session, workspace_id: str) -> bool: ...


def _workspaces(store: Database, due: _Due | None = None) -> list[str]:
    """The workspaces a scheduled round goes through, oldest first: every one, or those
    ``due`` keeps."""
    with store.read() as session:
        return [
            w.id
            for w in tenancy.list_workspaces(session=session)
            if due is None or due(session=session, workspace_id=w.id)
        ]


def _each_workspace(
    store: Database, what: str, job: Callable[[str], str | None], due: _Due | None = None
) -> None:
    """Run a scheduled round's ``job`` on each workspace (those ``due`` keeps) and log what it
    says (nothing when it says None). One workspace's failure is logged and the round goes on
    to the next; a domain error (too little data to learn from yet, say) only skips that
    workspace this time."""
    for name in _workspaces(store, due):
        try:
            said = job(name)
        except ConsentryError as exc:
            log.info("%s %s: skipped: %s", what, name, exc.message)
        except Exception:
            log.exception("%s %s: failed; the round goes on", what, name)
        else:
            if said is not None:
                log.info("%s %s: %s", what, name, said)


Round = Callable[[Database, Settings], None]  # a scheduled round over every workspace


def _in_child(round_: Round, settings: Settings) -> Callable[[], None]:
    """A scheduled round that runs in a child process of its own, on its own connections.

    Analytics runs and model training load DuckDB, pyarrow and scipy and compute for minutes
    on a large shop: in the server's process they would hold its GIL against ingestion and the
    API the whole time, and leave it hundreds of megabytes larger afterwards. A child process
    uses the other core and gives its memory back when it ends (spawned, so it inherits no
    connections). ``round_`` must be a module-level function (it is pickled by name)."""

    def job() -> None:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            pool.submit(_child_round, round_, settings).result()

    return job


def _child_round(round_: Round, settings: Settings) -> None:
    """The child's side of :func:`_in_child` (see ``stores.child_store``)."""
    with child_store(settings) as store:
        round_(store, settings)


def _analytics_round(store: Database, settings: Settings) -> None:
    def job(name: str) -> str:
        report = analytics.run(store, name, settings.analytics)
        return f"{report.customers} customers scored"

    _each_workspace(store, "analytics", job)


RECOMMEND_FIRST = 300


def _recommend_round(store: Database, settings: Settings) -> None:
    """Retrain every workspace's recommendations; a workspace without orders is skipped."""

    def job(name: str) -> str:
        return f"version {recommend.train(store, name, settings.recommend).version} trained"

    _each_workspace(store, "recommendations", job)


QUALITY_CHECK_SECONDS = 600


def _quality_round(store: Database, settings: Settings) -> None:
    """Audit each workspace whose latest data-quality audit is ``quality.interval_hours`` old
    (or that has none), so a restart of the server does not audit again."""
    every = timedelta(hours=settings.quality.interval_hours)

    def job(name: str) -> str:
        found = quality.run(
            store,
            name,
            settings.quality,
            default_country=settings.default_phone_region,
            actor="schedule",
        )
        return f"{found.profiles} profiles audited"

    _each_workspace(store, "quality", job, partial(quality.due, every=every, now=utcnow()))


def _audiences_round(store: Database, settings: Settings) -> None:
    """Keep segment membership current in each workspace that has segments or computed
    traits: a full refresh when the last is ``audiences.refresh_minutes`` old (computed in
    reads, applied in short write transactions), else an incremental catch-up on the events,
    consent records and merges since. Logged only when members changed."""
    every = timedelta(minutes=settings.audiences.refresh_minutes)

    def job(name: str) -> str | None:
        with store.read() as session:
            due = audiences.full_refresh_due(session=session, workspace_id=name, every=every)
        if due:
            report = audiences.refresh_in_steps(store, workspace_id=name)
        else:
            with store.write() as session:
                report = audiences.catch_up(session=session, workspace_id=name)
        if not (report.entered or report.exited or report.mode == "full"):
            return None
        return (
            f"{report.mode} refresh, {report.entered} entered, {report.exited} left, "
            f"{report.seconds:.2f} s"
        )

    _each_workspace(store, "audiences", job, audiences.has_audiences)


def _journeys_round(store: Database, settings: Settings) -> None:
    """A round of the journeys of each workspace that has an active one: triggers read,
    due enrollments advanced, messages enqueued (the outbox delivers them); repeated at once
    while a backlog of triggers remains, for up to one tick."""

    def job(name: str) -> str:
        reports = journeys.run_backlog(
            store, name, settings, budget_seconds=settings.journeys.tick_seconds
        )
        enrolled = sum(r.triggers.enrolled for r in reports)
        return f"{enrolled} enrolled, {sum(r.sent for r in reports)} sent in {len(reports)} rounds"

    _each_workspace(store, "journeys", job, journeys.has_active)


def _dedupe_round(store: Database, settings: Settings) -> None:
    """An incremental dedupe of each workspace that has a trained model (a batch run)."""

    def job(name: str) -> str:
        report = dedupe.run(
            store,
            name,
            settings.dedupe,
            cap=settings.identity.cap,
            default_region=settings.default_phone_region,
            mode="incremental",
            open_store=partial(open_database, settings),
        )
        return (
            f"{report.scored} profiles scored, {report.auto_merged} merged, {report.queued} queued"
        )

    _each_workspace(store, "dedupe", job, dedupe.has_run)


def _deliver_notifications(store: Database, settings: Settings) -> None:
    report = notification_service.deliver_due(db=store, server_secret=settings.secret_key)
    if report.attempted:
        log.info(
            "erasure notifications: %d delivered, %d to retry, %d failed",
            report.delivered,
            report.retrying,
            report.failed,
        )


def _deliver_outbox(store: Database, settings: Settings) -> None:
    """One delivery round of the outbox (journeys' and exports' messages), all workspaces."""
    report = outbox.deliver_configured(
        store, settings, mailer=SmtpMailer(settings.smtp), post=post_webhook
    )
    if report.attempted or report.released:
        log.info(
            "delivery: %d sent, %d to retry, %d dead, %d cancelled, %d handed back",
            report.sent,
            report.retrying,
            report.dead,
            report.cancelled,
            report.released,
        )


def _prune_outbox(store: Database, settings: Settings) -> None:
    """Delete sent and cancelled messages older than ``delivery.keep_days``."""
    before = utcnow() - timedelta(days=settings.delivery.keep_days)
    with store.write() as session:
        pruned = outbox.prune(session=session, before=before)
    if pruned:
        log.info("outbox: %d settled messages deleted", pruned)


def _retention_round(store: Database, settings: Settings) -> None:
    def job(name: str) -> str:
        retention_service.run(db=store, workspace_id=name, order_hold=settings.erasure.order_hold)
        return "retention applied"

    _each_workspace(store, "retention", job)


def _mount_web(app: FastAPI) -> None:
    from consentry.web.routes import mount

    mount(app)


def _mount_core(app: FastAPI) -> None:
    @app.get("/health", tags=["platform"])
    def health(db: DbDep) -> dict[str, Any]:
        """Liveness and store check."""
        return {"status": "ok", "database": db.dialect, "version": __version__}

    @app.get("/v1/workspace", tags=["platform"])
    def workspace(principal: AnyToken, db: DbDep) -> dict[str, Any]:
        """The caller's workspace, role and scopes, with counts of what it holds."""
        with db.read() as session:
            ws = tenancy.get_workspace(session=session, workspace_id=principal.workspace_id)
            counts = commerce.counts(session=session, workspace_id=ws.id)
            counts["events"] = ingest.count_events(session=session, workspace_id=ws.id)
            counts["profiles"] = profiles.count_profiles(session=session, workspace_id=ws.id)
        return {
            "id": ws.id,
            "name": ws.name,
            "role": principal.role,
            "scopes": sorted(principal.scopes),
            "counts": counts,
        }

    @app.get("/v1/ingest/status", tags=["ingest"])
    def ingest_status(principal: AnyToken, db: DbDep) -> dict[str, Any]:
        """Events stored but not yet applied to profiles and commerce (normally near 0)."""
        with db.read() as session:
            pending = ingest.pending_count(session=session, workspace_id=principal.workspace_id)
        return {"pending": pending}

    @app.get("/v1/orders/{order_id}", tags=["commerce"])
    def get_order(
        order_id: str, principal: CommerceRead, db: DbDep, reads: ReadAudit
    ) -> dict[str, Any]:
        """One order with its items (the read is recorded under the buyer's profile id)."""
        with reads.reading(principal, "order.read", lookup="order_id") as note:
            with db.read() as session:
                order = commerce.get_order(
                    session=session, workspace_id=principal.workspace_id, order_id=order_id
                )
            note.found([order.profile_id] if order.profile_id else [])
        return asdict(order)

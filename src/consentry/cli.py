"""The ``consentry`` command line: serve, db, workspace, key (and the capability commands).

Only this module and ``api.py`` read settings and wire adapters together.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy.orm import Session

from consentry import __version__
from consentry.cli_options import DatabaseOpt
from consentry.commerce import service as commerce_service
from consentry.config import Settings, get_settings
from consentry.consent import service as consent_service
from consentry.demo.catalog import usd_rates
from consentry.demo.generator import ShopSpec, window
from consentry.demo.seeding import chunks
from consentry.errors import ConsentryError
from consentry.ingest import service as ingest_service
from consentry.migrations import current as current_revision
from consentry.migrations import upgrade as upgrade_store
from consentry.platform import tenancy
from consentry.platform.db import Database, utcnow
from consentry.profiles import service as profiles_service
from consentry.stores import open_database

app = typer.Typer(
    help="consentry: a self-hosted customer data platform for e-commerce, governed by consent.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
db_app = typer.Typer(help="The store: migrations.", no_args_is_help=True)
workspace_app = typer.Typer(help="Workspaces (one per brand or region).", no_args_is_help=True)
key_app = typer.Typer(help="Write keys (ingestion) and admin tokens (API).", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(workspace_app, name="workspace")
app.add_typer(key_app, name="key")


def _register_capability_commands() -> None:
    """Capabilities' own command groups (imported late: they import this module's helpers)."""
    from consentry.analytics.cli import analytics_app
    from consentry.audiences.cli import audiences_app, segments_app
    from consentry.commerce.import_cli import import_app
    from consentry.consent.cli import consent_app
    from consentry.delivery.cli import delivery_app
    from consentry.journeys.cli import journeys_app
    from consentry.journeys.preset_cli import list_presets as _presets  # noqa: F401 - registers
    from consentry.platform.audit_cli import audit_app
    from consentry.platform.keys_cli import keys_app
    from consentry.privacy.cli import privacy_app
    from consentry.privacy.erasure_cli import erase as _erase_commands  # noqa: F401 - registers
    from consentry.privacy.retention_cli import retention_app
    from consentry.profiles.dedupe_cli import identity_app
    from consentry.quality.cli import quality_app
    from consentry.recommend.cli import recommend_app

    app.add_typer(import_app, name="import")
    app.add_typer(consent_app, name="consent")
    app.add_typer(privacy_app, name="privacy")
    app.add_typer(retention_app, name="retention")
    app.add_typer(audit_app, name="audit")
    app.add_typer(keys_app, name="keys")
    app.add_typer(analytics_app, name="analytics")
    app.add_typer(identity_app, name="identity")
    app.add_typer(quality_app, name="quality")
    app.add_typer(recommend_app, name="recommend")
    app.add_typer(delivery_app, name="delivery")
    app.add_typer(journeys_app, name="journeys")
    app.add_typer(segments_app, name="segments")
    app.add_typer(audiences_app, name="audiences")


console = Console()
err_console = Console(stderr=True)


def settings_for(database_url: str | None) -> Settings:
    """The settings, with the store URL from the command line when given."""
    settings = get_settings()
    if database_url:
        settings = settings.model_copy(update={"database_url": database_url})
    return settings


def open_store(settings: Settings, *, migrate: bool = True) -> Database:
    """Open the store, bringing its schema up to date first."""
    if migrate:
        upgrade_store(settings.database_url, settings=settings)
    return open_database(settings)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print an error the user can act on and return the exit to raise."""
    err_console.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


@app.command()
def version() -> None:
    """Print the version."""
    console.print(__version__)


@app.command()
def serve(
    database_url: DatabaseOpt = None,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
) -> None:
    """Serve the ingestion API, the admin API (OpenAPI at /docs) and the dashboard."""
    import uvicorn

    from consentry.api import create_app

    settings = settings_for(database_url)
    upgrade_store(settings.database_url, settings=settings)
    if workers > 1:
        import os

        os.environ["CONSENTRY_DATABASE_URL"] = settings.database_url
        uvicorn.run(
            "consentry.api:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level="warning",
        )
        return
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")


@db_app.command("upgrade")
def db_upgrade(
    database_url: DatabaseOpt = None,
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Apply the migrations up to REVISION (default: the newest)."""
    settings = settings_for(database_url)
    upgrade_store(settings.database_url, revision, settings=settings)
    console.print(f"store at revision [bold]{current_revision(settings.database_url)}[/]")


@db_app.command("current")
def db_current(database_url: DatabaseOpt = None) -> None:
    """Print the store's migration revision."""
    console.print(current_revision(settings_for(database_url).database_url) or "(empty store)")


@contextmanager
def unit_of_work(database_url: str | None, *, write: bool = True) -> Iterator[Session]:
    """Open the store, run one unit of work, turn a domain error into a message and exit 1."""
    db = open_store(settings_for(database_url))
    try:
        with db.write() if write else db.read() as session:
            yield session
    except ConsentryError as exc:
        raise fail(exc.message) from exc
    finally:
        db.dispose()


@workspace_app.command("create")
def workspace_create(
    workspace_id: Annotated[str, typer.Argument(help="Slug, e.g. acme-eu.")],
    name: Annotated[str | None, typer.Option(help="Display name.")] = None,
    database_url: DatabaseOpt = None,
) -> None:
    """Create a workspace."""
    with unit_of_work(database_url) as session:
        ws = tenancy.create_workspace(session=session, workspace_id=workspace_id, name=name)
    console.print(f"workspace [bold]{ws.id}[/] created")


@workspace_app.command("list")
def workspace_list(database_url: DatabaseOpt = None) -> None:
    """List workspaces."""
    with unit_of_work(database_url, write=False) as session:
        rows = tenancy.list_workspaces(session=session)
    table = Table("id", "name", "created")
    for ws in rows:
        table.add_row(ws.id, ws.name, ws.created_at.isoformat(timespec="seconds"))
    console.print(table)


@key_app.command("create")
def key_create(
    workspace_id: Annotated[str, typer.Argument(help="The workspace.")],
    kind: Annotated[str, typer.Option(help="write (ingestion) or token (admin API).")] = "write",
    role: Annotated[
        tenancy.Role | None, typer.Option(help="Role of an admin token.", case_sensitive=False)
    ] = None,
    name: Annotated[str, typer.Option(help="What the key is for.")] = "default",
    database_url: DatabaseOpt = None,
) -> None:
    """Issue a write key or an admin token. The secret is printed once and never stored."""
    with unit_of_work(database_url) as session:
        issued = tenancy.issue_key(
            session=session, workspace_id=workspace_id, kind=kind, name=name, role=role
        )
    label = "write key" if kind == "write" else f"admin token ({issued.role})"
    err_console.print(f"{label} {issued.id} for [bold]{workspace_id}[/]; shown once:")
    console.print(issued.secret)


@key_app.command("revoke")
def key_revoke(
    workspace_id: Annotated[str, typer.Argument(help="The workspace.")],
    key_id: Annotated[str, typer.Argument(help="Id printed when the key was created.")],
    database_url: DatabaseOpt = None,
) -> None:
    """Revoke a write key or admin token."""
    with unit_of_work(database_url) as session:
        tenancy.revoke_key(session=session, workspace_id=workspace_id, key_id=key_id)
    console.print(f"revoked {key_id}")


DEMO_WORKSPACE = "demo-shop"


@app.command()
def demo(
    database_url: Annotated[
        str, typer.Option("--database-url", help="Store of the demo (embedded by default).")
    ] = "sqlite:///var/demo.db",
    customers: Annotated[int, typer.Option(min=1, help="People in the generated shop.")] = 5000,
    months: Annotated[int, typer.Option(min=1, max=60, help="Months of history.")] = 18,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same shop).")] = 42,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
    serve_after: Annotated[bool, typer.Option("--serve/--no-serve", help="Serve after.")] = True,
) -> None:
    """Seed a realistic demo shop (once) and serve the API, docs and dashboard."""
    settings = _demo_settings(settings_for(database_url))
    db = open_store(settings)
    try:
        with db.write() as session:
            fresh = _ensure_demo_workspace(session)
        if fresh:
            _seed_demo(db, settings, ShopSpec(customers=customers, months=months, seed=seed))
            _derive_demo(db, settings)
        else:
            err_console.print(f"[dim]{DEMO_WORKSPACE} already seeded; reusing it[/]")
        with db.write() as session:
            write_key = tenancy.issue_key(
                session=session, workspace_id=DEMO_WORKSPACE, kind="write", name="demo"
            )
            token = tenancy.issue_key(
                session=session,
                workspace_id=DEMO_WORKSPACE,
                kind="token",
                name="demo",
                role=tenancy.Role.ADMIN,
            )
    finally:
        db.dispose()
    _print_demo_access(host, port, write_key.secret, token.secret)
    if serve_after:
        serve(database_url=database_url, host=host, port=port, workers=1)


def _ensure_demo_workspace(session: Session) -> bool:
    try:
        tenancy.get_workspace(session=session, workspace_id=DEMO_WORKSPACE)
    except ConsentryError:
        tenancy.create_workspace(session=session, workspace_id=DEMO_WORKSPACE, name="Demo shop")
        return True
    return False


def _demo_settings(settings: Settings) -> Settings:
    """The demo sells in USD, EUR and GBP: unless rates are configured, analytics converts
    at the demo shop's own fixed rates."""
    if settings.analytics.fx_rates:
        return settings
    analytics = settings.analytics.model_copy(update={"fx_rates": usd_rates()})
    return settings.model_copy(update={"analytics": analytics})


def _seed_demo(db: Database, settings: Settings, spec: ShopSpec) -> None:
    start, end = window(spec)
    total = int((end - start).total_seconds())
    stored = 0
    with Progress(
        TextColumn("[bold]seeding the demo shop"),
        BarColumn(),
        TextColumn("{task.fields[month]}"),
        TextColumn("{task.fields[stored]:,} events"),
        TimeElapsedColumn(),
        console=err_console,
    ) as progress:
        task = progress.add_task("seed", total=total, month="", stored=0)
        for chunk in chunks(spec, received_at=utcnow()):
            with db.write() as session:
                ingest_service.ingest(
                    session=session,
                    workspace_id=DEMO_WORKSPACE,
                    envelopes=chunk.envelopes,
                    identity=settings.identity,
                    default_region=settings.default_phone_region,
                )
                if chunk.consents:  # sign-up and newsletter choices, as the shop's backend
                    consent_service.record_requests(  # sends them to POST /v1/consent/bulk
                        session=session,
                        workspace_id=DEMO_WORKSPACE,
                        items=chunk.consents,
                        actor="demo-shop-backend",
                    )
            stored += len(chunk.envelopes)
            done = int((chunk.reached - start).total_seconds())
            progress.update(task, completed=done, month=f"{chunk.reached:%Y-%m}", stored=stored)
        progress.update(task, completed=total)
    db.optimize()  # the planner's statistics for the new data
    with db.read() as session:
        counts = commerce_service.counts(session=session, workspace_id=DEMO_WORKSPACE)
        profiles = profiles_service.count_profiles(session=session, workspace_id=DEMO_WORKSPACE)
    err_console.print(
        f"seeded {stored:,} events: {profiles:,} unified profiles, {counts['orders']:,} orders, "
        f"{counts['products']:,} products, {counts['carts']:,} carts"
    )


def _derive_demo(db: Database, settings: Settings) -> None:
    """What the server's schedules would compute, done now so every page has something to
    show: analytics scores and cohorts, a de-duplication run (likely duplicates merged or
    queued for review), a data-quality audit, the recommendation model, and the marketing
    set-up (mail relay, segments, three journeys switched on)."""
    from consentry.analytics import service as analytics_service
    from consentry.demo import activation
    from consentry.profiles import dedupe_service
    from consentry.quality import service as quality_service
    from consentry.recommend import service as recommend_service

    steps = (
        ("analytics", lambda: analytics_service.run(db, DEMO_WORKSPACE, settings.analytics)),
        (
            "duplicates",
            lambda: dedupe_service.run(
                db,
                DEMO_WORKSPACE,
                settings.dedupe,
                cap=settings.identity.cap,
                default_region=settings.default_phone_region,
            ),
        ),
        (
            "data quality",
            lambda: quality_service.run(
                db,
                DEMO_WORKSPACE,
                settings.quality,
                default_country=settings.default_phone_region,
                actor="demo",
            ),
        ),
        (
            "recommendations",
            lambda: recommend_service.train(db, DEMO_WORKSPACE, settings.recommend),
        ),
        ("segments and journeys", lambda: activation.set_up(db, DEMO_WORKSPACE, settings)),
    )
    for name, step in steps:
        with err_console.status(f"computing {name}"):
            try:
                step()
            except ConsentryError as exc:  # e.g. too little history: the page says so
                err_console.print(f"[yellow]{name}: {exc.message}[/]")
            else:
                err_console.print(f"computed {name}")


def _print_demo_access(host: str, port: int, write_key: str, token: str) -> None:
    base = f"http://{host}:{port}"
    table = Table(title="consentry demo", show_header=False)
    table.add_row("dashboard", f"{base}/app  (sign in with the admin token)")
    table.add_row("API docs", f"{base}/docs")
    table.add_row("ingestion", f"POST {base}/v1/batch  (HTTP Basic, write key as user name)")
    table.add_row("write key", write_key)
    table.add_row("admin token", token)
    console.print(table)


_register_capability_commands()


def main() -> None:
    """Entry point of the ``consentry`` script."""
    app()


if __name__ == "__main__":
    main()

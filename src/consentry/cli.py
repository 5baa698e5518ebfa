"""The ``consentry`` command line: serve, db, workspace, key (and the capability commands).

Only this module and ``api.py`` read settings and wire adapters together.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from consentry import __version__
from consentry.config import Settings, get_settings
from consentry.errors import ConsentryError
from consentry.migrations import current as current_revision
from consentry.migrations import upgrade as upgrade_store
from consentry.platform import tenancy
from consentry.platform.db import Database

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

console = Console()
err_console = Console(stderr=True)

DatabaseOpt = Annotated[
    str | None,
    typer.Option("--database-url", envvar="CONSENTRY_DATABASE_URL", help="Store URL."),
]


def settings_for(database_url: str | None) -> Settings:
    """The settings, with the store URL from the command line when given."""
    settings = get_settings()
    if database_url:
        settings = settings.model_copy(update={"database_url": database_url})
    return settings


def open_store(settings: Settings, *, migrate: bool = True) -> Database:
    """Open the store, bringing its schema up to date first."""
    if migrate:
        upgrade_store(settings.database_url)
    return Database.from_url(settings.database_url)


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
    upgrade_store(settings.database_url)
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
    upgrade_store(settings.database_url, revision)
    console.print(f"store at revision [bold]{current_revision(settings.database_url)}[/]")


@db_app.command("current")
def db_current(database_url: DatabaseOpt = None) -> None:
    """Print the store's migration revision."""
    console.print(current_revision(settings_for(database_url).database_url) or "(empty store)")


@workspace_app.command("create")
def workspace_create(
    workspace_id: Annotated[str, typer.Argument(help="Slug, e.g. acme-eu.")],
    name: Annotated[str | None, typer.Option(help="Display name.")] = None,
    database_url: DatabaseOpt = None,
) -> None:
    """Create a workspace."""
    db = open_store(settings_for(database_url))
    try:
        with db.write() as session:
            ws = tenancy.create_workspace(session=session, workspace_id=workspace_id, name=name)
    except ConsentryError as exc:
        raise fail(exc.message) from exc
    console.print(f"workspace [bold]{ws.id}[/] created")


@workspace_app.command("list")
def workspace_list(database_url: DatabaseOpt = None) -> None:
    """List workspaces."""
    db = open_store(settings_for(database_url))
    with db.read() as session:
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
    db = open_store(settings_for(database_url))
    try:
        with db.write() as session:
            issued = tenancy.issue_key(
                session=session, workspace_id=workspace_id, kind=kind, name=name, role=role
            )
    except ConsentryError as exc:
        raise fail(exc.message) from exc
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
    db = open_store(settings_for(database_url))
    try:
        with db.write() as session:
            tenancy.revoke_key(session=session, workspace_id=workspace_id, key_id=key_id)
    except ConsentryError as exc:
        raise fail(exc.message) from exc
    console.print(f"revoked {key_id}")


def main() -> None:
    """Entry point of the ``consentry`` script."""
    app()

"""Options and helpers every ``consentry`` command shares (the root CLI and each capability's
commands)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from consentry.errors import ConsentryError
from consentry.platform import tenancy

if TYPE_CHECKING:
    from consentry.config import Settings
    from consentry.platform.db import Database

DatabaseOpt = Annotated[
    str | None,
    typer.Option("--database-url", envvar="CONSENTRY_DATABASE_URL", help="Store URL."),
]
WorkspaceOpt = Annotated[str, typer.Option("--workspace", help="The workspace.")]


def echo_json(found: Any) -> None:
    """Print a document as indented JSON (dates as text)."""
    typer.echo(json.dumps(found, indent=2, ensure_ascii=False, default=str))


def workspace_store(database_url: str | None, workspace: str) -> tuple[Settings, Database]:
    """The settings and the open store for a command on ``workspace``; an unknown workspace is
    the command's clear error (non-zero exit), with the store closed again."""
    from consentry.cli import fail, open_store, settings_for  # the root CLI imports this module

    settings = settings_for(database_url)
    db = open_store(settings)
    try:
        with db.read() as session:
            tenancy.get_workspace(session=session, workspace_id=workspace)
    except ConsentryError as exc:
        db.dispose()
        raise fail(exc.message) from None
    return settings, db

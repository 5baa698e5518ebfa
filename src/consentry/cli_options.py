"""Options and helpers every ``consentry`` command shares (the root CLI and each capability's
commands)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn

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
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def echo_json(found: Any) -> None:
    """Print a document as indented JSON (dates as text)."""
    typer.echo(json.dumps(found, indent=2, ensure_ascii=False, default=str))


def refused(exc: ConsentryError) -> typer.Exit:
    """Print each field the error names, then its message; return the exit (1) to raise."""
    from consentry.cli import err_console, fail  # the root CLI imports this module

    for error in exc.errors:
        err_console.print(f"  {error.field}: {error.reason}", markup=False, highlight=False)
    return fail(exc.message)


@contextmanager
def workspace_store(
    database_url: str | None, workspace: str | None
) -> Iterator[tuple[Settings, Database]]:
    """The settings and the open store for a command on ``workspace`` (None: every workspace,
    none checked), closed again when the block ends. An unknown workspace, or a domain error
    the block raises, is the command's clear error (each field it names, its message, exit 1)."""
    from consentry.cli import open_store, settings_for  # the root CLI imports this module

    settings = settings_for(database_url)
    db = open_store(settings)
    try:
        if workspace is not None:
            with db.read() as session:
                tenancy.get_workspace(session=session, workspace_id=workspace)
        yield settings, db
    except ConsentryError as exc:
        raise refused(exc) from None
    finally:
        db.dispose()


def progress_bar(*columns: ProgressColumn) -> Progress:
    """A progress display on stderr that disappears when done (stdout stays the result)."""
    from consentry.cli import err_console  # the root CLI imports this module

    return Progress(*columns, console=err_console, transient=True)


@contextmanager
def step_bar(first: str, next_labels: Mapping[str, str]) -> Iterator[Callable[[str], None]]:
    """A bar for a run of named steps, one notch each: it shows ``first``, then as each step
    reports done, ``next_labels[step]`` (what the run does next). Yields the step callback."""
    with progress_bar(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn()) as bar:
        task = bar.add_task(first, total=len(next_labels))

        def step(name: str) -> None:
            bar.update(task, advance=1, description=next_labels.get(name, name))

        yield step

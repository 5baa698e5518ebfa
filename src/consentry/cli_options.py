"""Options every ``consentry`` command shares (the root CLI and each capability's commands)."""

from __future__ import annotations

from typing import Annotated

import typer

DatabaseOpt = Annotated[
    str | None,
    typer.Option("--database-url", envvar="CONSENTRY_DATABASE_URL", help="Store URL."),
]
WorkspaceOpt = Annotated[str, typer.Option("--workspace", help="The workspace.")]

"""``consentry audit verify|export``: check a workspace's audit trail, export it.

Exit codes: 0 the trail is intact (or the export was written); 1 the trail is broken, or the
workspace does not exist.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from consentry.cli_options import DatabaseOpt, WorkspaceOpt
from consentry.platform import audit, tenancy

audit_app = typer.Typer(
    help="The audit trail: verify its hash chain, export it (JSON Lines or CSV).",
    no_args_is_help=True,
)


@audit_app.command("verify")
def verify(workspace: WorkspaceOpt, database_url: DatabaseOpt = None) -> None:
    """Walk the workspace's trail; name the first edited, deleted or reordered entry."""
    from consentry.cli import console, fail, unit_of_work  # cli.py registers this app

    with unit_of_work(database_url, write=False) as session:
        tenancy.get_workspace(session=session, workspace_id=workspace)
        report = audit.verify(session=session, workspace_id=workspace)
    if report.problem is not None:
        p = report.problem
        where = f"entry {p.entry_id} at seq {p.seq}" if p.entry_id else f"seq {p.seq}"
        raise fail(f"the audit trail of {workspace} is broken: {p.kind} {where}: {p.detail}")
    console.print(f"OK: {report.checked} audit entries, hash chain intact")


@audit_app.command("export")
def export(
    workspace: WorkspaceOpt,
    format: Annotated[  # noqa: A002 (the option is --format)
        Literal["jsonl", "csv"], typer.Option("--format", help="jsonl or csv.")
    ] = "jsonl",
    out: Annotated[
        Path | None, typer.Option("--out", help="Write to this file (default: stdout).")
    ] = None,
    database_url: DatabaseOpt = None,
) -> None:
    """Write every entry of the workspace's trail in seq order."""
    from consentry.cli import err_console, unit_of_work

    written = 0
    with unit_of_work(database_url, write=False) as session:
        tenancy.get_workspace(session=session, workspace_id=workspace)
        found = audit.iter_entries(session=session, workspace_id=workspace)
        lines = audit.jsonl_lines(found) if format == "jsonl" else audit.csv_lines(found)
        with out.open("w", encoding="utf-8", newline="") if out else _stdout() as sink:
            for line in lines:
                sink.write(line)
                written += line.count("\n")
    if out is not None:
        rows = written - 1 if format == "csv" else written
        err_console.print(f"wrote {rows} audit entries to {out}")


class _stdout:
    """Standard output as a context manager that is not closed on exit."""

    def __enter__(self) -> _stdout:
        return self

    def __exit__(self, *_exc: object) -> None:
        return None

    def write(self, text: str) -> None:
        typer.echo(text, nl=False)

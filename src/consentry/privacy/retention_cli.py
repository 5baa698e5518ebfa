"""``consentry retention show|set|run``: retention policies from the command line.

``run --dry-run`` reports what would go and deletes nothing; ``run`` deletes it, in chunks,
with a progress bar. Exit codes: 0 done; 1 no such workspace or a bad period.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from consentry.cli_options import DatabaseOpt, JsonOpt, echo_json, progress_bar, workspace_store
from consentry.platform import tenancy
from consentry.platform.db import utcnow
from consentry.privacy import retention_service
from consentry.privacy.retention import CATEGORIES, CategoryRun, report

retention_app = typer.Typer(
    help="Retention: how long each category of data is kept, and the runs that delete the rest.",
    no_args_is_help=True,
)
WorkspaceArg = Annotated[
    str | None,
    typer.Option("--workspace", "-w", help="The workspace (run: every workspace when left out)."),
]


def _table(runs: list[CategoryRun], dry_run: bool) -> Table:
    table = Table("category", "kept for", "older than", "would go" if dry_run else "deleted")
    for r in runs:
        table.add_row(
            r.category,
            "until erased" if r.days is None else f"{r.days} days",
            r.cutoff.date().isoformat() if r.cutoff else "-",
            str(r.count),
        )
    return table


@retention_app.command("show")
def show(
    workspace: Annotated[str, typer.Option("--workspace", "-w", help="The workspace.")],
    database_url: DatabaseOpt = None,
) -> None:
    """Show the workspace's policy."""
    from consentry.cli import console, unit_of_work

    with unit_of_work(database_url, write=False) as session:
        policy = retention_service.get_policy(session=session, workspace_id=workspace)
    table = Table("category", "kept for", "what")
    for category, what in CATEGORIES.items():
        days = policy.days.get(category)
        table.add_row(category, "until erased" if days is None else f"{days} days", what)
    console.print(table)


@retention_app.command("set")
def set_period(
    workspace: Annotated[str, typer.Option("--workspace", "-w", help="The workspace.")],
    category: Annotated[str, typer.Argument(help=", ".join(CATEGORIES))],
    days: Annotated[str, typer.Argument(help="Days to keep, or 'keep' (until erased).")],
    database_url: DatabaseOpt = None,
) -> None:
    """Set how long one category is kept."""
    from consentry.cli import console, fail, unit_of_work

    value: int | None
    if days == "keep":
        value = None
    else:
        try:
            value = int(days)
        except ValueError:
            raise fail(f"{days!r} is not a number of days (or 'keep')") from None
    with unit_of_work(database_url) as session:
        policy = retention_service.set_policy(
            session=session,
            workspace_id=workspace,
            changes={category: value},
            actor="cli:retention",
        )
    kept = policy.days.get(category)
    console.print(f"{category}: {'until erased' if kept is None else f'{kept} days'}")


@retention_app.command("run")
def run(
    workspace: WorkspaceArg = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report; delete nothing.")] = False,
    as_json: JsonOpt = False,
    database_url: DatabaseOpt = None,
) -> None:
    """Delete what the workspace's policy no longer keeps (--dry-run: report only)."""
    from consentry.cli import console

    now = utcnow()
    reports = []
    with workspace_store(database_url, workspace) as (settings, db):
        with db.read() as session:
            names = (
                [workspace]
                if workspace
                else [w.id for w in tenancy.list_workspaces(session=session)]
            )
        for name in names:
            if dry_run:
                with db.read() as session:
                    runs = retention_service.plan(session=session, workspace_id=name, now=now)
            else:
                with progress_bar(TextColumn("{task.description}"), TimeElapsedColumn()) as bar:
                    task = bar.add_task(f"{name}: deleting", total=None)

                    def step(
                        category: str, done: int, task: TaskID = task, name: str = name
                    ) -> None:
                        bar.update(task, description=f"{name}: {category} {done}")

                    runs = retention_service.run(
                        db=db,
                        workspace_id=name,
                        now=now,
                        order_hold=settings.erasure.order_hold,
                        on_progress=step,
                    )
            reports.append({"workspace": name, **report(runs, dry_run=dry_run, at=now)})
            if not as_json:
                console.print(
                    f"[bold]{name}[/]" + (" (dry run: nothing deleted)" if dry_run else "")
                )
                console.print(_table(runs, dry_run))
    if as_json:
        echo_json(reports)

"""``consentry identity``: find duplicate profiles and list the pairs waiting for review
(docs/identity.md).

Exit codes: 0 done; 1 a bad argument, an unknown workspace, or a run that cannot start (no
batch run before an incremental one, too few profiles); the message says which.
"""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from consentry.cli_options import (
    DatabaseOpt,
    JsonOpt,
    WorkspaceOpt,
    echo_json,
    progress_bar,
    workspace_store,
)
from consentry.profiles import dedupe_service as service
from consentry.stores import open_database

identity_app = typer.Typer(
    help="Identity resolution: probabilistic de-duplication of profiles and its review queue.",
    no_args_is_help=True,
)
STAGES = {"read": "reading profiles", "match": "matching", "write": "merging and queueing"}


@identity_app.command("dedupe")
def dedupe(
    workspace: WorkspaceOpt,
    incremental: Annotated[
        bool,
        typer.Option(
            "--incremental",
            help="Score only profiles created or changed since the last run, with its model.",
        ),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Score and count; merge and queue nothing.")
    ] = False,
    threshold: Annotated[
        float | None,
        typer.Option(
            "--threshold",
            help="Auto-merge at or above this match probability (default: the setting, 0.95).",
        ),
    ] = None,
    as_json: JsonOpt = False,
    database_url: DatabaseOpt = None,
) -> None:
    """Find duplicate profiles: train a model on the workspace's profiles (or reuse the last
    one with --incremental), merge pairs above the threshold (reversible: consentry's unmerge)
    and queue the grey zone for review."""
    from consentry.cli import console

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with (
        workspace_store(database_url, workspace) as (settings, db),
        progress_bar(*columns) as bar,
    ):
        tasks: dict[str, Any] = {}

        def step(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(STAGES.get(stage, stage), total=total)
            bar.update(tasks[stage], completed=done, total=total)

        report = service.run(
            db,
            workspace,
            settings.dedupe,
            cap=settings.identity.cap,
            default_region=settings.default_phone_region,
            mode="incremental" if incremental else "batch",
            dry_run=dry_run,
            auto_merge_threshold=threshold,
            progress=step,
            open_store=partial(open_database, settings),
        )
    if as_json:
        echo_json(report.document())
        return
    title = f"{report.mode} dedupe" + (" (dry run: nothing written)" if dry_run else "")
    table = Table("", "count", title=title)
    merged = "would merge" if dry_run else "merged automatically"
    queued = "would queue for review" if dry_run else "queued for review"
    for label, value in (
        ("unified profiles read", report.profiles),
        ("profiles scored", report.scored),
        ("candidate pairs compared", report.candidate_pairs),
        (f"pairs at or above p={report.review_threshold}", report.kept_pairs),
        (f"{merged} (p >= {report.auto_merge_threshold})", report.auto_merged),
        (queued, report.queued),
        ("pending pairs scored again", report.refreshed),
        ("auto-merges refused by identifier caps", report.refused),
        *((f"skipped: {why}", n) for why, n in sorted(report.skipped.items())),
    ):
        table.add_row(label, str(value))
    console.print(table)
    seconds = sum(report.seconds.values())
    console.print(f"run [bold]{report.id}[/] in {seconds:.1f} s")


@identity_app.command("review")
def review(
    workspace: WorkspaceOpt,
    status: Annotated[
        str, typer.Option("--status", help="pending, merged, approved, rejected, unified or all.")
    ] = "pending",
    limit: Annotated[int, typer.Option("--limit", min=1, max=service.MAX_PAGE)] = 50,
    as_json: JsonOpt = False,
    database_url: DatabaseOpt = None,
) -> None:
    """List candidate pairs (pending review by default), the most probable first: their
    profile ids, probability and the fields that weighed most. Decide them in the dashboard
    (/app/identity/review) or the API."""
    from consentry.cli import console

    with workspace_store(database_url, workspace) as (_, db), db.read() as session:
        total, found = service.list_candidates(
            session=session, workspace_id=workspace, status=status, limit=limit
        )
    if as_json:
        echo_json({"total": total, "pairs": [c.document() for c in found]})
        return
    table = Table(
        "pair", "profile a", "profile b", "p", "strongest evidence", title=f"{total} {status}"
    )
    for c in found:
        fields = sorted(c.explanation.get("fields", []), key=lambda f: -abs(f["weight"]))
        evidence = ", ".join(f"{f['field']} {f['weight']:+.1f}" for f in fields[:3])
        table.add_row(c.id, c.profile_a, c.profile_b, f"{c.probability:.3f}", evidence)
    console.print(table)

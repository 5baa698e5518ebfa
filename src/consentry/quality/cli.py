"""``consentry quality``: audit the profiles' data quality and show the report (docs/quality.md).

Exit codes: 0 done; 1 an unknown workspace, or no audit yet for ``latest``; 2 a bad option.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from consentry.cli_options import (
    DatabaseOpt,
    WorkspaceOpt,
    echo_json,
    progress_bar,
    workspace_store,
)
from consentry.quality import service

quality_app = typer.Typer(
    help="Data quality: completeness, invalid values, likely duplicates and stale profiles.",
    no_args_is_help=True,
)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the report as JSON.")]


def _pct(part: int, whole: int) -> str:
    return f"{part / whole:.1%}" if whole else "-"


def print_report(console: Console, found: dict[str, Any]) -> None:
    """The report as rich tables: totals, completeness per field, invalid values by reason,
    warnings, duplicates and stale profiles."""
    totals = found["totals"]
    records = totals["records"]
    console.print(
        f"audited [bold]{found['profiles']}[/] unified profiles "
        f"({totals['profiles_with_traits']} with traits) in {found['seconds']:.1f} s: "
        f"{totals['records_clean']} clean, {totals['records_with_errors']} with errors, "
        f"{totals['records_with_warnings']} with warnings only"
    )
    fields = found["fields"]
    complete = Table("field", "present", "complete", "valid", "invalid", title="Completeness")
    for name, f in fields.items():
        complete.add_row(
            name, str(f["present"]), _pct(f["present"], records), str(f["valid"]),
            str(f["invalid_total"]),
        )  # fmt: skip
    console.print(complete)
    for kind, title in (("invalid", "Invalid values by reason"), ("warnings", "Warnings")):
        rows = [
            (name, code, c["count"], f["present"])
            for name, f in fields.items()
            for code, c in f[kind].items()
        ]
        if not rows:
            console.print(f"no {title.lower()}")
            continue
        table = Table("field", "reason", "profiles", "of present", title=title)
        for name, code, count, present in sorted(rows, key=lambda r: (-r[2], r[0], r[1])):
            table.add_row(name, code, str(count), _pct(count, present))
        console.print(table)
    dupes = found["duplicates"]
    table = Table("likely duplicates", "candidate pairs", "crowded keys", "matched on",
                  title="Duplicates")  # fmt: skip
    table.add_row(
        str(dupes["likely_duplicates"]), str(dupes.get("pairs", "-")),
        str(dupes.get("crowded_keys", "-")), ", ".join(dupes.get("rules", [])),
    )  # fmt: skip
    console.print(table)
    stale = found["stale"]
    table = Table("stale", "share", "not seen for", title="Stale profiles")
    table.add_row(str(stale["stale"]), _pct(stale["stale"], records), f"{stale['after_days']} days")
    console.print(table)


@quality_app.command("audit")
def audit(
    workspace: WorkspaceOpt,
    stale_days: Annotated[
        int | None,
        typer.Option(
            "--stale-days",
            min=1,
            max=36500,
            help="A profile not seen for this many days is stale (default: the setting).",
        ),
    ] = None,
    as_json: JsonOpt = False,
    database_url: DatabaseOpt = None,
) -> None:
    """Audit every unified profile of the workspace now and store the report: completeness
    per field, invalid values by reason, likely duplicates and stale profiles."""
    from consentry.cli import console

    columns = (TextColumn("auditing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with workspace_store(database_url, workspace) as (settings, db), progress_bar(*columns) as bar:
        options = settings.quality
        if stale_days is not None:
            options = options.model_copy(update={"stale_days": stale_days})
        task = bar.add_task("profiles", total=None)

        def step(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        found = service.run(
            db,
            workspace,
            options,
            default_country=settings.default_phone_region,
            actor="cli",
            progress=step,
        )
    if as_json:
        echo_json(found.document())
        return
    print_report(console, found.document())


@quality_app.command("latest")
def latest(
    workspace: WorkspaceOpt, as_json: JsonOpt = False, database_url: DatabaseOpt = None
) -> None:
    """Show the workspace's latest stored audit."""
    from consentry.cli import console, fail

    with workspace_store(database_url, workspace) as (_, db), db.read() as session:
        found = service.latest(session=session, workspace_id=workspace)
    if found is None:
        raise fail("no quality audit yet; run: consentry quality audit")
    if as_json:
        echo_json(found.document())
        return
    print_report(console, found.document())

"""``consentry journeys``: build, switch on and off, run and watch journeys (docs/journeys.md).

Exit codes: 0 done; 1 a bad argument, an unknown workspace or journey, a definition that does
not hold (each problem printed with its field) or a file that cannot be read.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from consentry.cli_options import DatabaseOpt, JsonOpt, WorkspaceOpt, echo_json, workspace_store
from consentry.journeys import service

journeys_app = typer.Typer(
    help="Journeys: triggered, consent-gated message sequences (abandoned cart, win-back, ...).",
    no_args_is_help=True,
)
ACTOR = "cli:journeys"
JourneyArg = Annotated[str, typer.Argument(help="The journey's id.")]


def _read_definition(path: Path) -> Any:
    from consentry.cli import fail

    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
        return json.loads(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(f"cannot read {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise fail(f"{path} is not JSON: {exc}") from None


def _show(found: service.JourneyView, as_json: bool = False) -> None:
    """The journey as JSON, or its one-line summary."""
    from consentry.cli import console

    if as_json:
        echo_json(found.document())
        return
    console.print(
        f"[bold]{found.name}[/] {found.id}  {found.status}  version {found.version}"
        f"  trigger {found.trigger_type}",
        highlight=False,
    )


@journeys_app.command("create")
def create(
    workspace: WorkspaceOpt,
    file: Annotated[
        Path, typer.Argument(help="The definition, a JSON file (- reads standard input).")
    ],
    activate: Annotated[
        bool, typer.Option("--activate", help="Switch it on at once (else a draft).")
    ] = False,
    as_json: JsonOpt = False,
    database_url: DatabaseOpt = None,
) -> None:
    """Save a journey from its JSON definition; every problem is printed with its field."""
    document = _read_definition(file)
    with workspace_store(database_url, workspace) as (_, db), db.write() as session:
        found = service.create_journey(
            session=session, workspace_id=workspace, document=document, actor=ACTOR
        )
        if activate:
            found = service.change_status(
                session=session,
                workspace_id=workspace,
                journey_id=found.id,
                action="activate",
                actor=ACTOR,
            )
    _show(found, as_json)


@journeys_app.command("update")
def update(
    workspace: WorkspaceOpt,
    journey_id: JourneyArg,
    file: Annotated[
        Path, typer.Argument(help="The new definition, a JSON file (- reads standard input).")
    ],
    as_json: JsonOpt = False,
    database_url: DatabaseOpt = None,
) -> None:
    """Save a new version of a journey (running enrollments keep theirs)."""
    document = _read_definition(file)
    with workspace_store(database_url, workspace) as (_, db), db.write() as session:
        found = service.update_journey(
            session=session,
            workspace_id=workspace,
            journey_id=journey_id,
            document=document,
            actor=ACTOR,
        )
    _show(found, as_json)


@journeys_app.command("list")
def list_journeys(
    workspace: WorkspaceOpt,
    status: Annotated[
        str | None,
        typer.Option("--status", help="Only draft, active, paused or archived journeys."),
    ] = None,
    as_json: JsonOpt = False,
    database_url: DatabaseOpt = None,
) -> None:
    """The workspace's journeys (archived ones only with --status archived)."""
    from consentry.cli import console

    with workspace_store(database_url, workspace) as (_settings, db):
        with db.read() as session:
            found = service.list_journeys(session=session, workspace_id=workspace, status=status)
    if as_json:
        echo_json([j.document() for j in found])
        return
    table = Table("id", "name", "status", "version", "trigger", "updated")
    for j in found:
        table.add_row(
            j.id, j.name, j.status, str(j.version), j.trigger_type, f"{j.updated_at:%Y-%m-%d %H:%M}"
        )
    console.print(table)


@journeys_app.command("show")
def show(workspace: WorkspaceOpt, journey_id: JourneyArg, database_url: DatabaseOpt = None) -> None:
    """One journey with its definition, as JSON."""
    with workspace_store(database_url, workspace) as (_settings, db):
        with db.read() as session:
            found = service.get_journey(
                session=session, workspace_id=workspace, journey_id=journey_id
            )
    echo_json(found.document())


def _change(database_url: str | None, workspace: str, journey_id: str, action: str) -> None:
    with workspace_store(database_url, workspace) as (_, db), db.write() as session:
        found = service.change_status(
            session=session,
            workspace_id=workspace,
            journey_id=journey_id,
            action=action,
            actor=ACTOR,
        )
    _show(found)


@journeys_app.command("activate")
def activate(
    workspace: WorkspaceOpt, journey_id: JourneyArg, database_url: DatabaseOpt = None
) -> None:
    """Switch a draft or paused journey on (its definition is checked again first)."""
    _change(database_url, workspace, journey_id, "activate")


@journeys_app.command("pause")
def pause(
    workspace: WorkspaceOpt, journey_id: JourneyArg, database_url: DatabaseOpt = None
) -> None:
    """Stop enrolling and advancing; enrollments wait where they are."""
    _change(database_url, workspace, journey_id, "pause")


@journeys_app.command("archive")
def archive(
    workspace: WorkspaceOpt, journey_id: JourneyArg, database_url: DatabaseOpt = None
) -> None:
    """Retire a journey: running enrollments end as exited."""
    _change(database_url, workspace, journey_id, "archive")


@journeys_app.command("run")
def run(
    workspace: WorkspaceOpt,
    as_of: Annotated[
        datetime | None, typer.Option("--as-of", help="Run as of this moment (default: now).")
    ] = None,
    as_json: JsonOpt = False,
    database_url: DatabaseOpt = None,
) -> None:
    """One round now: read the triggers, advance due enrollments, enqueue what is sent (the
    outbox delivers it: `consentry delivery run`)."""
    from consentry.cli import console

    with workspace_store(database_url, workspace) as (settings, db):
        report = service.run_configured(
            db,
            workspace,
            settings,
            now=as_of.replace(tzinfo=as_of.tzinfo or UTC) if as_of else None,
        )
    found = report.document()
    if as_json:
        echo_json(found)
        return
    t = found["triggers"]
    console.print(
        f"{t['enrolled']} enrolled ({t['events']} events, {t['changes']} segment changes, "
        f"{t['scanned']} from scans read), {t['exited']} exited; {found['advanced']} advanced: "
        f"{found['sent']} sent, {found['deferred']} deferred, {found['held_out']} held out, "
        f"{found['completed']} completed",
        highlight=False,
    )
    for reason, count in found["skipped"].items():
        console.print(f"  skipped {count}: {reason}", highlight=False)


@journeys_app.command("stats")
def stats(
    workspace: WorkspaceOpt,
    journey_id: JourneyArg,
    as_json: JsonOpt = False,
    database_url: DatabaseOpt = None,
) -> None:
    """Entered, active, completed, exited, held out; per step sent and skipped by reason."""
    from consentry.cli import console

    with workspace_store(database_url, workspace) as (_settings, db):
        with db.read() as session:
            found = service.journey_stats(
                session=session, workspace_id=workspace, journey_id=journey_id
            )
    if as_json:
        echo_json(found)
        return
    console.print(
        f"[bold]{found['name']}[/] ({found['status']}, version {found['version']}): "
        f"{found['entered']} entered, {found['active']} active, {found['completed']} completed, "
        f"{found['exited']} exited, {found['held_out']} held out",
        highlight=False,
    )
    table = Table("step", "sent", "skipped", "deferred", "branched", "updated", "reasons")
    for s in found["steps"]:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(s["reasons"].items()))
        table.add_row(
            s["step"],
            str(s["sent"]),
            str(s["skipped"]),
            str(s["deferred"]),
            str(s["branched"]),
            str(s["updated"]),
            reasons,
        )
    console.print(table)

"""``consentry privacy processors list`` and ``consentry privacy ropa``: the processor register
and the record of processing activities (GDPR Art. 30) from the command line;
``consentry privacy requests list|remind`` (data-subject requests) live in ``request_cli``.

Exit codes: 0 done; 1 the workspace does not exist or the output file cannot be written.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

import typer

from consentry.cli_options import DatabaseOpt, JsonOpt, WorkspaceOpt, echo_json, workspace_store
from consentry.platform import audit, tenancy
from consentry.privacy import processor_service as service
from consentry.privacy.processors import Processor
from consentry.privacy.request_cli import requests_app
from consentry.privacy.ropa import record_csv, record_json
from consentry.profiles import service as profiles

privacy_app = typer.Typer(
    help="Privacy: the processor register, the record of processing activities, access "
    "archives, erasure and data-subject requests.",
    no_args_is_help=True,
)
processors_app = typer.Typer(help="Processors and destinations data may leave to.")
privacy_app.add_typer(processors_app, name="processors", no_args_is_help=True)
privacy_app.add_typer(requests_app, name="requests", no_args_is_help=True)

AtOpt = Annotated[
    datetime | None, typer.Option("--at", help="The register as it stood then (UTC).")
]


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@processors_app.command("list")
def list_processors(
    workspace: WorkspaceOpt,
    database_url: DatabaseOpt = None,
    at: AtOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List the workspace's processors with their purposes, categories, country and DPA."""
    from consentry.cli import unit_of_work  # cli.py registers this app

    with unit_of_work(database_url, write=False) as session:
        tenancy.get_workspace(session=session, workspace_id=workspace)
        found = service.list_processors(session=session, workspace_id=workspace, at=_utc(at))
    if as_json:
        echo_json([p.document() for p in found])
        return
    for p in found:
        typer.echo("\n".join(_describe(p)) + "\n")
    typer.echo(f"{len(found)} processors")


def _describe(processor: Processor) -> list[str]:
    """A processor as a few plain lines (names are printed as they are, never as markup)."""
    spec = processor.spec
    transfer = spec.transfer_country
    if processor.third_country:
        transfer += f" ({spec.transfer_safeguard or 'no safeguard'})"
    state = "active" if spec.active else "inactive"
    return [
        f"{spec.name}  [{spec.kind}, {state}, v{processor.version}]  {processor.id}",
        f"  purposes    {', '.join(spec.purposes)}",
        f"  categories  {', '.join(spec.categories)}",
        f"  transfer    {transfer}",
        f"  DPA         {spec.dpa_signed_on.isoformat() if spec.dpa_signed_on else '-'}",
    ]


@privacy_app.command("personal-traits")
def personal_traits(
    workspace: WorkspaceOpt,
    mark: Annotated[
        list[str] | None,
        typer.Option("--mark", help="Mark this trait personal (repeatable). Cannot be undone."),
    ] = None,
    reason: Annotated[str, typer.Option("--reason", help="Why, for the audit trail.")] = (
        audit.UNSPECIFIED
    ),
    database_url: DatabaseOpt = None,
) -> None:
    """List the traits stored sealed (built in and marked), or mark more with --mark: their
    values are sealed from now on and every stored value is sealed at once."""
    with workspace_store(database_url, workspace) as (_, db):
        if mark:
            with db.write() as session:
                report = profiles.mark_personal(
                    session=session,
                    workspace_id=workspace,
                    keys=mark,
                    actor="cli:privacy",
                    reason=reason,
                )
            echo_json(asdict(report))
            return
        with db.read() as session:
            marked = profiles.list_personal(session=session, workspace_id=workspace)
    echo_json({"builtin": profiles.builtin_personal(), "marked": [asdict(m) for m in marked]})


@privacy_app.command("ropa")
def ropa(
    workspace: WorkspaceOpt,
    output_format: Annotated[
        Literal["csv", "json"], typer.Option("--format", help="csv or json.")
    ] = "csv",
    out: Annotated[Path | None, typer.Option("--out", help="Write to FILE, not stdout.")] = None,
    at: AtOpt = None,
    database_url: DatabaseOpt = None,
) -> None:
    """Export the record of processing activities (GDPR Art. 30) as CSV or JSON."""
    from consentry.cli import err_console, fail, unit_of_work

    with unit_of_work(database_url, write=False) as session:
        record = service.record_of_processing(session=session, workspace_id=workspace, at=_utc(at))
    if output_format == "json":
        text = json.dumps(record_json(record), indent=2, ensure_ascii=False) + "\n"
    else:
        text = record_csv(record)
    if out is None:
        typer.echo(text, nl=False)
        return
    try:
        out.write_bytes(text.encode())  # bytes: the CSV's CRLF line ends stay as they are
    except OSError as exc:
        raise fail(f"cannot write {out}: {exc.strerror}") from exc
    err_console.print(f"{len(record.activities)} activities written to {out}")


@privacy_app.command("export")
def export(
    workspace: WorkspaceOpt,
    out: Annotated[Path, typer.Option("--out", help="Where to write the ZIP.")],
    profile_id: Annotated[str | None, typer.Option("--profile-id", help="The person.")] = None,
    email: Annotated[str | None, typer.Option("--email", help="...or their email.")] = None,
    user_id: Annotated[str | None, typer.Option("--user-id", help="...or their user id.")] = None,
    database_url: DatabaseOpt = None,
) -> None:
    """Write the access and portability archive of one person (JSON + CSV per category, a
    readable summary, a manifest of SHA-256 digests) to a ZIP file."""
    from consentry.cli import err_console, fail, unit_of_work
    from consentry.consent import service as consent
    from consentry.privacy import access, access_service

    with unit_of_work(database_url, write=False) as session:
        tenancy.get_workspace(session=session, workspace_id=workspace)
        subject = consent.resolve_subject(
            session=session,
            workspace_id=workspace,
            profile_id=profile_id,
            email=email,
            user_id=user_id,
        )
        data = access_service.collect(session=session, workspace_id=workspace, profile_id=subject)
    try:
        out.write_bytes(access.build_archive(data))
    except OSError as exc:
        raise fail(f"cannot write {out}: {exc.strerror}") from exc
    counts = ", ".join(f"{c} {data.count(c)}" for c in access.CATEGORIES)
    err_console.print(f"archive of {data.profile_id} written to {out} ({counts})")

"""``consentry audiences export``, ``exports`` and ``export-manifest``: consent-gated audience
exports to a file or a partner's webhook, and their manifests (docs/audience-exports.md).

``register(app)`` adds the three commands to the ``consentry audiences`` group.

Exit codes: 0 done; 1 a bad argument, an unknown workspace, segment, processor or destination,
a refused transfer, or a file that cannot be read or written (the message names what is wrong).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from consentry.audiences import export_service as service
from consentry.audiences import exports
from consentry.cli_options import (
    DatabaseOpt,
    JsonOpt,
    WorkspaceOpt,
    echo_json,
    progress_bar,
    workspace_store,
)
from consentry.platform import audit

ACTOR = "cli:audience-export"


def export(
    workspace: WorkspaceOpt,
    purpose: Annotated[
        str, typer.Option("--purpose", help="The consent purpose the export serves.")
    ],
    channel: Annotated[
        str, typer.Option("--channel", help="The channel consent is asked for (email, sms, any).")
    ] = "any",
    segment: Annotated[
        str | None, typer.Option("--segment", help="Export this segment's current members.")
    ] = None,
    profiles_file: Annotated[
        Path | None,
        typer.Option(
            "--profiles-file",
            help="Export these profiles: a text file, one profile id a line.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    mode: Annotated[
        str,
        typer.Option(
            "--mode",
            help="download (internal, raw identifiers) or partner (hashed identifiers only).",
        ),
    ] = exports.DOWNLOAD,
    fmt: Annotated[str, typer.Option("--format", help="The file: csv or json.")] = "csv",
    platform: Annotated[
        str, typer.Option("--platform", help="A partner file's layout: google, meta or generic.")
    ] = "generic",
    fields: Annotated[
        str | None,
        typer.Option(
            "--fields",
            help="Comma-separated columns (download: profile_id, email, phone, first_name, "
            "last_name, country, postcode, traits.<key>; partner: the identity fields). "
            "Default: the mode's.",
        ),
    ] = None,
    processor: Annotated[
        str | None,
        typer.Option("--processor", help="Partner file: the registered processor receiving it."),
    ] = None,
    destination: Annotated[
        str | None,
        typer.Option(
            "--destination", help="Partner push: the webhook destination (no file is written)."
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the file here (required unless pushing).")
    ] = None,
    summary_by: Annotated[
        str,
        typer.Option(
            "--summary-by", help="Comma-separated: country, traits.<key> (k-safe counts)."
        ),
    ] = "country",
    k: Annotated[
        int | None, typer.Option("--k", help="k of the summary (at least the setting).")
    ] = None,
    reason: Annotated[
        str, typer.Option("--reason", help="Why: recorded in the audit trail.")
    ] = audit.UNSPECIFIED,
    database_url: DatabaseOpt = None,
) -> None:
    """Export an audience: consent decides who is in (the refused are counted by reason), a
    manifest lists the consent record that let each subject out, and the file holds the chosen
    fields (download) or normalised, SHA-256-hashed identifiers (partner)."""
    from consentry.cli import console, fail

    if destination is None and out is None:
        raise fail("--out is required (the file to write), unless --destination pushes it")
    if destination is not None and out is not None:
        raise fail("--out and --destination exclude each other: a push writes no file")
    ids: list[str] | None = None
    if profiles_file is not None:
        try:
            text = profiles_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise fail(f"cannot read {profiles_file}: {exc}") from None
        ids = [line.strip() for line in text.splitlines() if line.strip()]
    request = service.ExportRequest(
        purpose=purpose,
        channel=channel,
        mode=mode,
        fields=[f.strip() for f in fields.split(",") if f.strip()] if fields else None,
        profile_ids=ids,
        segment_id=segment,
        file_format=fmt,
        platform=platform,
        destination_id=destination,
        processor_id=processor,
        summary_by=[s.strip() for s in summary_by.split(",") if s.strip()],
        k=k,
    )
    with workspace_store(database_url, workspace) as (settings, db):
        config = settings.audience_exports
        if request.profile_ids is not None:  # the CLI's limit is the store's, not the API's
            config = config.model_copy(update={"max_profile_ids": max(1, len(request.profile_ids))})
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
        with progress_bar(*columns, TimeElapsedColumn()) as bar:
            task = bar.add_task("exporting", total=None)

            def step(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            try:
                sink = out.open("wb") if out is not None else None
            except OSError as exc:
                raise fail(f"cannot write {out}: {exc}") from None
            done = False
            try:
                record = service.export_audience(
                    db,
                    workspace_id=workspace,
                    request=request,
                    actor=ACTOR,
                    settings=config,
                    default_region=settings.default_phone_region,
                    reason=reason,
                    sink=sink,
                    progress=step,
                )
                done = True
            finally:
                if sink is not None:
                    sink.close()
                    if not done and out is not None:
                        out.unlink(missing_ok=True)  # no half-written file of personal data
    document = record.document()
    console.print(
        f"export [bold]{record.id}[/]: {record.subjects} subjects "
        + (f"queued in {record.batches} messages" if destination else f"written to {out}")
    )
    for why, count in sorted(record.left_out.items()):
        console.print(f"  left out ({why}): {count}")
    if document["summary"] and document["summary"].get("by"):
        console.print(json.dumps(document["summary"], ensure_ascii=False))


def list_exports(
    workspace: WorkspaceOpt,
    limit: Annotated[int, typer.Option("--limit", min=1, max=service.MAX_PAGE)] = 20,
    as_json: JsonOpt = False,
    database_url: DatabaseOpt = None,
) -> None:
    """The latest audience exports: mode, purpose, subjects, left out by reason, status."""
    from consentry.cli import console

    with workspace_store(database_url, workspace) as (_settings, db):
        with db.read() as session:
            found = service.list_exports(session=session, workspace_id=workspace, limit=limit)
    if as_json:
        echo_json([r.document() for r in found])
        return
    table = Table("id", "created", "mode", "delivery", "purpose", "subjects", "left out", "status")
    for r in found:
        table.add_row(
            r.id,
            r.created_at.isoformat(timespec="seconds"),
            r.mode,
            r.delivery,
            r.purpose,
            str(r.subjects),
            str(sum(r.left_out.values())),
            r.status,
        )
    console.print(table)


def export_manifest(
    workspace: WorkspaceOpt,
    export_id: Annotated[str, typer.Argument(help="The export's id.")],
    database_url: DatabaseOpt = None,
) -> None:
    """An export's manifest as JSON Lines: its summary first, then each exported subject with
    the consent record, reason and regime that justified it (the read is audited)."""
    with workspace_store(database_url, workspace) as (_settings, db):
        with db.write() as session:
            found = service.get_export(session=session, workspace_id=workspace, export_id=export_id)
            audit.record(
                session=session,
                workspace_id=workspace,
                actor=ACTOR,
                action="audience_export.manifest",
                target_type=service.TARGET,
                target_id=export_id,
                reason=audit.UNSPECIFIED,
                details={"via": "cli"},
            )
        typer.echo(json.dumps(found.document(), ensure_ascii=False))
        after = 0
        while True:
            with db.read() as session:
                page = service.manifest_page(
                    session=session, workspace_id=workspace, export_id=export_id, after=after
                )
            for entry in page:
                typer.echo(json.dumps(entry.document()))
            if len(page) < service.MAX_PAGE:
                break
            after = page[-1].seq


def register(app: typer.Typer) -> None:
    """Add ``export``, ``exports`` and ``export-manifest`` to the ``consentry audiences``
    group."""
    app.command("export")(export)
    app.command("exports")(list_exports)
    app.command("export-manifest")(export_manifest)

"""``consentry delivery``: destinations, the outbox and its dead letters, the suppression list,
and a delivery round on demand (docs/delivery.md).

Exit codes: 0 done; 1 a bad argument, an unknown workspace, message or destination (the message
names what is wrong).
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from consentry.cli_options import DatabaseOpt, JsonOpt, WorkspaceOpt, echo_json, workspace_store
from consentry.delivery import destinations, outbox, suppressions

delivery_app = typer.Typer(
    help="Delivery: destinations, the outbox (queued, sent, retrying, dead), suppressions.",
    no_args_is_help=True,
)
DestinationOpt = Annotated[
    str | None, typer.Option("--destination", help="Only this destination's messages.")
]
LimitOpt = Annotated[int, typer.Option("--limit", min=1, max=outbox.MAX_PAGE, help="At most.")]
ACTOR = "cli:delivery"


def _when(value: object) -> str:
    text = str(value or "")
    return text[:19].replace("T", " ") if text else "-"


@delivery_app.command("destinations")
def list_destinations(
    workspace: WorkspaceOpt, as_json: JsonOpt = False, database_url: DatabaseOpt = None
) -> None:
    """List the workspace's destinations with their messages per status (register and change
    them through the API: POST/PATCH /v1/destinations)."""
    from consentry.cli import console

    with workspace_store(database_url, workspace) as (_, db), db.read() as session:
        found = destinations.list_destinations(session=session, workspace_id=workspace)
        counted = outbox.counts(session=session, workspace_id=workspace)
    empty = dict.fromkeys(outbox.STATUSES, 0)
    rows = [{**d.document(), "messages": counted.get(d.id, empty)} for d in found]
    if as_json:
        echo_json({"destinations": rows})
        return
    table = Table("id", "name", "kind", "purpose", "active", "paused until", *outbox.STATUSES)
    for row in rows:
        table.add_row(
            row["id"],
            row["name"],
            row["kind"],
            row["purpose"],
            "yes" if row["active"] else "no",
            _when(row["paused_until"]),
            *(str(row["messages"][s]) for s in outbox.STATUSES),
        )
    console.print(table)


def _messages_table(found: list[outbox.OutboxMessage]) -> Table:
    table = Table("id", "destination", "status", "attempts", "origin", "updated", "last error")
    for m in found:
        table.add_row(
            m.id,
            m.destination_id,
            m.status,
            str(m.attempts),
            m.origin,
            _when(m.updated_at.isoformat()),
            m.last_error or "",
        )
    return table


@delivery_app.command("outbox")
def show_outbox(
    workspace: WorkspaceOpt,
    status: Annotated[
        str | None,
        typer.Option("--status", help="List messages of this status (queued, sent, ...)."),
    ] = None,
    destination: DestinationOpt = None,
    limit: LimitOpt = 50,
    as_json: JsonOpt = False,
    database_url: DatabaseOpt = None,
) -> None:
    """Counts of messages per status; with --status or --destination, the messages (never
    their recipient or content)."""
    from consentry.cli import console

    with workspace_store(database_url, workspace) as (_, db), db.read() as session:
        counted = outbox.counts(session=session, workspace_id=workspace)
        total, found = 0, list[outbox.OutboxMessage]()
        if status is not None or destination is not None:
            total, found = outbox.list_messages(
                session=session,
                workspace_id=workspace,
                status=status,
                destination_id=destination,
                limit=limit,
            )
    totals = outbox.status_totals(counted)
    if as_json:
        echo_json({"totals": totals, "total": total, "messages": [m.document() for m in found]})
        return
    console.print("  ".join(f"{name}: [bold]{n}[/]" for name, n in totals.items()))
    if found:
        console.print(_messages_table(found))
        if total > len(found):
            console.print(f"{len(found)} of {total} shown (--limit)")


@delivery_app.command("dead")
def dead(
    workspace: WorkspaceOpt,
    destination: DestinationOpt = None,
    limit: LimitOpt = 50,
    as_json: JsonOpt = False,
    database_url: DatabaseOpt = None,
) -> None:
    """The dead-letter list: messages given up on, newest first, with why."""
    from consentry.cli import console

    with workspace_store(database_url, workspace) as (_, db), db.read() as session:
        total, found = outbox.dead_letters(
            session=session, workspace_id=workspace, destination_id=destination, limit=limit
        )
    if as_json:
        echo_json({"total": total, "messages": [m.document() for m in found]})
        return
    if not found:
        console.print("no dead letters")
        return
    console.print(_messages_table(found))
    console.print(f"{total} dead; retry with: consentry delivery retry --workspace ... ID")


@delivery_app.command("retry")
def retry(
    workspace: WorkspaceOpt,
    message_ids: Annotated[
        list[str] | None, typer.Argument(help="Dead messages to retry (or --all).")
    ] = None,
    retry_all: Annotated[
        bool, typer.Option("--all", help="Every dead letter (of --destination).")
    ] = False,
    destination: DestinationOpt = None,
    database_url: DatabaseOpt = None,
) -> None:
    """Put dead letters back in the queue with fresh attempts; the next delivery round (the
    server's, or `consentry delivery run`) sends them."""
    from consentry.cli import console, fail

    if not message_ids and not retry_all:
        raise fail("name the messages to retry, or pass --all")
    if message_ids and retry_all:
        raise fail("either message ids or --all, not both")
    with workspace_store(database_url, workspace) as (_, db), db.write() as session:
        if retry_all:
            count = outbox.retry_all_dead(
                session=session, workspace_id=workspace, actor=ACTOR, destination_id=destination
            )
        else:
            for message_id in message_ids or []:
                outbox.retry_dead(
                    session=session, workspace_id=workspace, message_id=message_id, actor=ACTOR
                )
            count = len(message_ids or [])
    console.print(f"{count} message(s) queued again")


@delivery_app.command("suppress")
def suppress(
    workspace: WorkspaceOpt,
    address: Annotated[str, typer.Argument(help="The email address or phone number.")],
    channel: Annotated[str, typer.Option("--channel", help="email or sms.")] = "email",
    reason: Annotated[
        str, typer.Option("--reason", help="manual, bounce, complaint or unsubscribe.")
    ] = "manual",
    database_url: DatabaseOpt = None,
) -> None:
    """Put an address on the suppression list: nothing is sent to it over the channel
    (only a keyed hash of the normalised address is stored)."""
    from consentry.cli import console

    with workspace_store(database_url, workspace) as (settings, db), db.write() as session:
        entry, new = suppressions.add(
            session=session,
            workspace_id=workspace,
            channel=channel,
            address=address,
            reason=reason,
            actor=ACTOR,
            default_region=settings.default_phone_region,
        )
    said = "suppressed" if new else "already suppressed"
    console.print(f"{said}: {entry.id} ({entry.channel}, {entry.reason})")


@delivery_app.command("unsuppress")
def unsuppress(
    workspace: WorkspaceOpt,
    suppression_id: Annotated[str, typer.Argument(help="The entry's id (see suppressions).")],
    database_url: DatabaseOpt = None,
) -> None:
    """Take an entry off the suppression list."""
    from consentry.cli import console

    with workspace_store(database_url, workspace) as (_, db), db.write() as session:
        suppressions.remove(
            session=session, workspace_id=workspace, suppression_id=suppression_id, actor=ACTOR
        )
    console.print(f"removed {suppression_id}")


@delivery_app.command("suppressions")
def list_suppressions(
    workspace: WorkspaceOpt,
    channel: Annotated[str | None, typer.Option("--channel", help="email or sms.")] = None,
    limit: LimitOpt = 100,
    as_json: JsonOpt = False,
    database_url: DatabaseOpt = None,
) -> None:
    """The suppression list, newest first (ids, channels, reasons; never an address)."""
    from consentry.cli import console

    with workspace_store(database_url, workspace) as (_, db), db.read() as session:
        total, found = suppressions.list_suppressions(
            session=session, workspace_id=workspace, channel=channel, limit=limit
        )
    if as_json:
        echo_json({"total": total, "suppressions": [s.document() for s in found]})
        return
    table = Table("id", "channel", "reason", "since", "by")
    for s in found:
        table.add_row(s.id, s.channel, s.reason, _when(s.created_at.isoformat()), s.created_by)
    console.print(table)
    console.print(f"{total} suppressed")


@delivery_app.command("run")
def run(
    workspace: Annotated[
        str | None, typer.Option("--workspace", help="Only this workspace (default: all).")
    ] = None,
    as_json: JsonOpt = False,
    database_url: DatabaseOpt = None,
) -> None:
    """Deliver what is due now: one round of the outbox over SMTP and webhooks, with the
    configured retries, caps and circuits (the server does this every
    delivery.interval_seconds; run it from cron where no server runs)."""
    from consentry.cli import console
    from consentry.delivery.smtp import SmtpMailer
    from consentry.delivery.webhook import send

    with workspace_store(database_url, workspace) as (settings, db):
        report = outbox.deliver_configured(
            db, settings, mailer=SmtpMailer(settings.smtp), post=send, workspace_id=workspace
        )
    if as_json:
        echo_json(report.document())
        return
    console.print(
        f"{report.sent} sent, {report.retrying} to retry, {report.dead} dead, "
        f"{report.cancelled} cancelled, {report.released} handed back"
    )
    for destination_id in report.paused:
        console.print(f"[yellow]paused:[/] destination {destination_id} (failing)")
    for line in report.errors:
        console.print(f"  {line}")

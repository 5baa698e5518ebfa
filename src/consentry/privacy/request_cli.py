"""``consentry privacy requests list|remind``: the queue of data-subject requests, and the job
that expires unverified requests and reminds each workspace's privacy contact of due ones.

``remind`` is meant for cron (say hourly): it is idempotent, each reminder step of a request is
mailed once. It also deletes the public intake's counted attempts that are older than the
longest window of its limits (``request_limits.prune``). The contact of a workspace is, in
order: ``CONSENTRY_PRIVACY__CONTACTS`` (a JSON mapping of workspace id to address),
``CONSENTRY_PRIVACY__CONTACT_EMAIL``, the support email of the workspace's consent branding
(``PUT /v1/consent/branding``).

Exit codes: 0 done; 1 the workspace does not exist, a workspace with due reminders has no
contact, or the SMTP server did not take a reminder (it is tried again on the next run).
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from consentry.cli_options import DatabaseOpt
from consentry.platform import audit, tenancy
from consentry.platform.db import utcnow
from consentry.privacy import request_limits as limits
from consentry.privacy import request_service as service
from consentry.privacy import requests as rq

requests_app = typer.Typer(
    help="Data-subject requests: the queue, reminders and expiry.", no_args_is_help=True
)
ACTOR = "cli:privacy-requests"
QUEUE_PATH = "/app/privacy/requests"


@requests_app.command("list")
def list_requests(
    workspace: Annotated[str, typer.Option("--workspace", help="The workspace.")],
    status: Annotated[
        str, typer.Option("--status", help="open (default), all, or one status.")
    ] = "open",
    request_type: Annotated[str | None, typer.Option("--type", help=", ".join(rq.TYPES))] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    database_url: DatabaseOpt = None,
) -> None:
    """The queue: overdue first, then by due date, with the days left (no personal data)."""
    from consentry.cli import console, unit_of_work  # cli.py registers this app

    now = utcnow()
    with unit_of_work(database_url) as session:
        tenancy.get_workspace(session=session, workspace_id=workspace)
        total, found = service.list_requests(
            session=session,
            workspace_id=workspace,
            status=status,
            request_type=request_type,
            limit=service.MAX_PAGE,
            now=now,
        )
        audit.record_many(
            session=session,
            workspace_id=workspace,
            actor=ACTOR,
            action="dsr.list",
            target_type=service.TARGET,
            target_ids=[r.id for r in found],
            reason=audit.UNSPECIFIED,
            details={"lookup": "queue", "via": "cli"},
        )
    if as_json:
        typer.echo(json.dumps([rq.request_json(r, now) for r in found], indent=2))
        return
    table = Table("id", "type", "status", "law", "received", "due", "days left", "extended")
    for r in found:
        left = r.days_left(now)
        shown = Text(str(left) if r.open else "-")
        if r.overdue(now):
            shown = Text(f"{left} overdue", style="bold red")
        elif r.open and left <= 2:
            shown.stylize("yellow")
        table.add_row(
            r.id,
            r.type,
            r.status,
            r.jurisdiction,
            r.received_at.date().isoformat(),
            r.due_at.date().isoformat(),
            shown,
            "yes" if r.extended else "",
        )
    console.print(table)
    console.print(f"{len(found)} of {total} requests")


@requests_app.command("remind")
def remind(
    workspace: Annotated[
        str | None, typer.Option("--workspace", help="One workspace (default: every one).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be done; change and send nothing.")
    ] = False,
    database_url: DatabaseOpt = None,
) -> None:
    """Expire unverified requests past their time to verify, and mail each workspace's privacy
    contact the requests whose reminder is due (one mail per workspace; each step once); delete
    the public intake's counted attempts past the longest window of its limits."""
    from consentry.cli import console, err_console, fail, settings_for, unit_of_work
    from consentry.delivery.smtp import SmtpMailer

    settings = settings_for(database_url)
    rules = rq.rules_from(settings.privacy)
    mailer = SmtpMailer(settings.smtp)
    now = utcnow()
    with unit_of_work(database_url, write=False) as session:
        if workspace is not None:
            tenancy.get_workspace(session=session, workspace_id=workspace)
            targets = [workspace]
        else:
            targets = [w.id for w in tenancy.list_workspaces(session=session)]
    if not dry_run:
        with unit_of_work(database_url) as session:
            pruned = limits.prune(session=session, limits=rules.limits, now=now)
        if pruned:
            console.print(f"{pruned} old attempts of the public intake deleted")
    problems = 0
    for ws in targets:
        if dry_run:
            with unit_of_work(database_url, write=False) as session:
                due = service.due_reminders(session=session, workspace_id=ws, rules=rules, now=now)
            console.print(f"{ws}: {len(due)} reminders due (dry run: nothing sent)")
            continue
        with unit_of_work(database_url) as session:
            expired = service.expire_unverified(
                session=session, workspace_id=ws, actor=ACTOR, now=now
            )
        with unit_of_work(database_url, write=False) as session:
            due = service.due_reminders(session=session, workspace_id=ws, rules=rules, now=now)
            contact = service.contact_of(
                session=session,
                workspace_id=ws,
                contacts=settings.privacy.contacts,
                fallback=settings.privacy.contact_email,
            )
            brand = tenancy.get_workspace(session=session, workspace_id=ws).name
        line = f"{ws}: {len(expired)} expired, {len(due)} reminders due"
        if not due:
            console.print(line)
            continue
        if not contact:
            problems += 1
            err_console.print(
                f"{line}; no privacy contact: set CONSENTRY_PRIVACY__CONTACTS, "
                "CONSENTRY_PRIVACY__CONTACT_EMAIL or the workspace's support email"
            )
            continue
        mail = rq.reminder_mail(
            brand=brand,
            workspace_id=ws,
            due=[(r.request, r.step) for r in due],
            now=now,
            url=f"{settings.public_url.rstrip('/')}{QUEUE_PATH}",
        )
        delivery = service.send(
            mailer=mailer,
            to=contact,
            mail=mail,
            from_address=settings.smtp.from_address,
            from_name=settings.smtp.from_name,
        )
        if delivery.error is not None:
            problems += 1
            err_console.print(f"{line}; not sent: {delivery.error.message}")
            continue
        with unit_of_work(database_url) as session:
            service.mark_reminded(
                session=session, workspace_id=ws, reminders=due, actor=ACTOR, now=now
            )
        console.print(f"{line}; {len(due)} reminded")
    if problems:
        raise fail(f"{problems} workspace(s) could not be reminded")

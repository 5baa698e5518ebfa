"""``consentry privacy erase``, ``privacy erasure``, ``privacy notify`` and ``privacy unsuppress``:
erasure from the command line (docs/erasure.md).

Exit codes: 0 done; 1 no such person, workspace or erasure, a reason that cannot be recorded,
or the erasure was not confirmed; 2 some notifications failed for good (``notify``).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from consentry.cli_options import DatabaseOpt, JsonOpt, WorkspaceOpt, echo_json, workspace_store
from consentry.platform import tenancy
from consentry.privacy import erasure_service, notification_service
from consentry.privacy.cli import privacy_app

ReasonOpt = Annotated[
    str, typer.Option("--reason", help="Why (recorded; no personal data), e.g. 'DSR 2026-114'.")
]
ACTOR = "cli:privacy"


def _show(found: dict[str, Any], as_json: bool) -> None:
    from consentry.cli import console

    if as_json:
        echo_json(found)
        return
    certificate = found["certificate"]
    console.print(f"erasure [bold]{found['id']}[/] of profile {found['profile_id']}")
    console.print(f"  completed {found['completed_at']} by {found['erased_by']}")
    erased = ", ".join(f"{k} {v}" for k, v in certificate["erased"].items() if v)
    console.print(f"  erased: {erased or 'nothing left to erase'}")
    console.print(f"  keys destroyed: {certificate['keys_destroyed']}")
    for item in certificate["kept"]:
        count = f" ({item['count']})" if "count" in item else ""
        console.print(f"  kept: {item['what']}{count}: {item['why']}")
    for note in found["notifications"]:
        console.print(
            f"  processor {note['processor']}: {note['status']} ({note['attempts']} tries)"
        )
    console.print(f"  certificate SHA-256 {found['certificate_sha256']}")


@privacy_app.command("erase")
def erase(
    workspace: WorkspaceOpt,
    reason: ReasonOpt,
    profile_id: Annotated[str | None, typer.Option("--profile-id", help="The person.")] = None,
    email: Annotated[str | None, typer.Option("--email", help="...or their email.")] = None,
    user_id: Annotated[str | None, typer.Option("--user-id", help="...or their user id.")] = None,
    request_id: Annotated[
        str | None, typer.Option("--request-id", help="Request fulfilled.")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    as_json: JsonOpt = False,
    database_url: DatabaseOpt = None,
) -> None:
    """Erase a person everywhere (every merged identity, events, carts, consent proofs),
    destroy their keys, keep invoices pseudonymised under the legal hold, notify processors,
    and print the erasure certificate. It cannot be undone."""
    from consentry.cli import err_console, fail
    from consentry.consent import service as consent

    with workspace_store(database_url, workspace) as (settings, db):
        with db.read() as session:
            subject = consent.resolve_subject(
                session=session,
                workspace_id=workspace,
                profile_id=profile_id,
                email=email,
                user_id=user_id,
            )
        if not yes and not typer.confirm(f"Erase profile {subject} for good?"):
            raise fail("not erased")
        with db.write() as session:
            done = erasure_service.erase(
                session=session,
                workspace_id=workspace,
                profile_id=subject,
                actor=ACTOR,
                reason=reason,
                request_id=request_id,
                order_hold=settings.erasure.order_hold,
            )
        db.purge_deleted()
        if done.notifications:
            report = notification_service.deliver_due(db=db, server_secret=settings.secret_key)
            err_console.print(
                f"notifications: {report.delivered} delivered, {report.retrying} to retry "
                "(consentry privacy notify, or the server, tries again)"
            )
            with db.read() as session:
                done = erasure_service.get_erasure(
                    session=session, workspace_id=workspace, erasure_id=done.id
                )
    _show(done.document(), as_json)


@privacy_app.command("erasure")
def show_erasure(
    workspace: WorkspaceOpt,
    erasure_id: Annotated[str, typer.Argument(help="The erasure's id.")],
    as_json: JsonOpt = False,
    database_url: DatabaseOpt = None,
) -> None:
    """Show an erasure's certificate and where its processor notifications stand."""
    from consentry.cli import unit_of_work

    with unit_of_work(database_url, write=False) as session:
        found = erasure_service.get_erasure(
            session=session, workspace_id=workspace, erasure_id=erasure_id
        )
    _show(found.document(), as_json)


@privacy_app.command("notify")
def notify(database_url: DatabaseOpt = None) -> None:
    """Send the erasure notifications that are due to processors' webhooks (the server does
    this every 30 seconds; run it from cron where no server runs)."""
    from consentry.cli import console, open_store, settings_for

    settings = settings_for(database_url)
    db = open_store(settings)
    try:
        report = notification_service.deliver_due(db=db, server_secret=settings.secret_key)
    finally:
        db.dispose()
    console.print(
        f"{report.delivered} delivered, {report.retrying} to retry, {report.failed} failed"
    )
    for error in report.errors:
        console.print(f"  {error}")
    if report.failed:
        raise typer.Exit(2)


@privacy_app.command("unsuppress")
def unsuppress(
    workspace: WorkspaceOpt,
    reason: ReasonOpt,
    email: Annotated[str | None, typer.Option("--email")] = None,
    phone: Annotated[str | None, typer.Option("--phone")] = None,
    user_id: Annotated[str | None, typer.Option("--user-id")] = None,
    anonymous_id: Annotated[str | None, typer.Option("--anonymous-id")] = None,
    database_url: DatabaseOpt = None,
) -> None:
    """Let an erased person's identifiers be used again: they came back by a new, explicit
    action the shop verified (recorded in the audit trail)."""
    from consentry.cli import console, unit_of_work

    named = {"email": email, "phone": phone, "user_id": user_id, "anonymous_id": anonymous_id}
    with unit_of_work(database_url) as session:
        tenancy.get_workspace(session=session, workspace_id=workspace)
        lifted = erasure_service.lift_suppression(
            session=session, workspace_id=workspace, identifiers=named, actor=ACTOR, reason=reason
        )
    console.print(f"{lifted} identifier(s) lifted")

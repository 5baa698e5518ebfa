"""``consentry consent verify|receipt``: check a workspace's hash chain, print a receipt.

Exit codes: 0 the chain is intact (or the receipt was printed); 1 the chain is broken, or the
workspace or record does not exist.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from consentry.cli_options import DatabaseOpt, WorkspaceOpt
from consentry.consent import service
from consentry.platform import tenancy

consent_app = typer.Typer(
    help="Consent: verify the ledger's hash chain, print consent receipts.", no_args_is_help=True
)


@consent_app.command("verify")
def verify(workspace: WorkspaceOpt, database_url: DatabaseOpt = None) -> None:
    """Walk the workspace's ledger; name the first edited, deleted or reordered record."""
    from consentry.cli import console, fail, unit_of_work  # cli.py registers this app

    with unit_of_work(database_url, write=False) as session:
        tenancy.get_workspace(session=session, workspace_id=workspace)
        report = service.verify(session=session, workspace_id=workspace)
    if report.problem is not None:
        p = report.problem
        where = f"record {p.record_id} at seq {p.seq}" if p.record_id else f"seq {p.seq}"
        raise fail(f"the consent ledger of {workspace} is broken: {p.kind} {where}: {p.detail}")
    console.print(f"OK: {report.checked} consent records, hash chain intact")


@consent_app.command("receipt")
def receipt(
    record_id: Annotated[str, typer.Argument(help="Id of a consent record.")],
    workspace: WorkspaceOpt,
    database_url: DatabaseOpt = None,
) -> None:
    """Print the consent receipt of one record as JSON."""
    from consentry.cli import unit_of_work

    with unit_of_work(database_url, write=False) as session:
        found = service.receipt(session=session, workspace_id=workspace, record_id=record_id)
    typer.echo(json.dumps(found, indent=2, ensure_ascii=False))

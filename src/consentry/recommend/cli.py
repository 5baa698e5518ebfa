"""``consentry recommend``: train the recommendation model, list and activate its versions, show
a customer's recommendations (docs/recommend.md).

Exit codes: 0 done; 1 a bad argument, an unknown workspace, profile or version, or nothing to
train on (the message names what is wrong).
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from consentry.cli_options import (
    DatabaseOpt,
    JsonOpt,
    WorkspaceOpt,
    echo_json,
    step_bar,
    workspace_store,
)
from consentry.recommend import service

recommend_app = typer.Typer(
    help="Product recommendations: train, versions, a customer's list.", no_args_is_help=True
)
LABELS = {
    "read": "evaluating on each customer's last order",
    "evaluate": "fitting the models",
    "fit": "storing the new version",
    "store": "done",
}


@recommend_app.command("train")
def train(
    workspace: WorkspaceOpt, as_json: JsonOpt = False, database_url: DatabaseOpt = None
) -> None:
    """Train on the workspace's orders, product views and cart adds, store the model as a new
    version and serve it from now on (older versions are kept for rollback)."""
    from consentry.cli import console

    with (
        workspace_store(database_url, workspace) as (settings, db),
        step_bar("reading orders and browsing", LABELS) as step,
    ):
        report = service.train(db, workspace, settings.recommend, progress=step)
    if as_json:
        echo_json(report.document())
        return
    c = report.counts
    console.print(
        f"trained version [bold]{report.version}[/] on {c['customers']} customers, "
        f"{c['order_lines']} order lines, {c['views']} views, {c['cart_adds']} cart adds, "
        f"{c['products']} products in {sum(report.seconds.values()):.1f} s"
    )
    m = report.metrics
    if "recall@10" in m:
        console.print(
            f"  last-order recall@10 {m['recall@10']:.3f} ndcg@10 {m['ndcg@10']:.3f} "
            f"(most popular: {m.get('popular_recall@10', 0):.3f} / "
            f"{m.get('popular_ndcg@10', 0):.3f})"
        )
    if report.removed_versions:
        console.print(f"  removed old versions {report.removed_versions}")


@recommend_app.command("models")
def models(
    workspace: WorkspaceOpt, as_json: JsonOpt = False, database_url: DatabaseOpt = None
) -> None:
    """The stored versions, newest first, and which one is served."""
    from consentry.cli import console

    with workspace_store(database_url, workspace) as (_, db), db.read() as session:
        found = service.models(session=session, workspace_id=workspace)
    if as_json:
        echo_json(found)
        return
    table = Table("version", "active", "trained at", "customers", "products", "recall@10", "MB")
    for m in found:
        table.add_row(
            str(m["version"]),
            "yes" if m["active"] else "",
            f"{m['trained_at']:%Y-%m-%d %H:%M}",
            str(m["counts"].get("customers", "")),
            str(m["counts"].get("products", "")),
            f"{m['metrics']['recall@10']:.3f}" if "recall@10" in m["metrics"] else "",
            f"{m['bytes'] / 1e6:.2f}",
        )
    console.print(table)


@recommend_app.command("activate")
def activate(
    version: Annotated[int, typer.Argument(help="The version to serve (see `models`).")],
    workspace: WorkspaceOpt,
    database_url: DatabaseOpt = None,
) -> None:
    """Serve another stored version (a rollback, or forward again)."""
    from consentry.cli import console

    with workspace_store(database_url, workspace) as (_, db), db.write() as session:
        service.activate(session=session, workspace_id=workspace, version=version)
    console.print(f"version {version} is served now")


@recommend_app.command("show")
def show(
    profile: Annotated[str, typer.Argument(help="A profile id.")],
    workspace: WorkspaceOpt,
    count: Annotated[int, typer.Option("--count", help="How many products (1 to 100).")] = 10,
    context: Annotated[
        str, typer.Option("--context", help="Where they are shown: the consent channel.")
    ] = "web",
    as_json: JsonOpt = False,
    database_url: DatabaseOpt = None,
) -> None:
    """A customer's recommendations as the API serves them: personalised only where consent
    allows, with the reason."""
    from consentry.cli import console

    with workspace_store(database_url, workspace) as (settings, db), db.read() as session:
        found = service.for_profile(
            session=session,
            workspace_id=workspace,
            profile_id=profile,
            settings=settings.recommend,
            count=count,
            context=context,
        )
    if as_json:
        echo_json(found)
        return
    console.print(
        f"[bold]{found['kind']}[/] ({found['reason']}; consent: {found['consent']['reason']}), "
        f"model version {found['model']['version']}"
    )
    table = Table("#", "product", "name", "category", "score")
    for item in found["items"]:
        table.add_row(
            str(item["rank"]),
            item["product_id"],
            item["name"] or "",
            item["category"] or "",
            f"{item['score']:.4f}",
        )
    console.print(table)

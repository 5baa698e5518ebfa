"""``consentry analytics``: run the customer models, read KPIs, cohorts, segments and the churn
list, and enter marketing spend (docs/analytics.md).

Exit codes: 0 done; 1 a bad argument, an unknown workspace or a file that cannot be read (the
message names what is wrong).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, cast

import typer
from rich.table import Table

from consentry.analytics import service, spend, spend_service
from consentry.analytics.periods import Interval, Range
from consentry.cli_options import (
    DatabaseOpt,
    JsonOpt,
    WorkspaceOpt,
    echo_json,
    refused,
    step_bar,
    workspace_store,
)
from consentry.errors import ConsentryError

analytics_app = typer.Typer(
    help="Customer analytics: RFM, lifetime value, churn risk, cohorts, KPIs.",
    no_args_is_help=True,
)
EngineOpt = Annotated[
    str | None, typer.Option("--engine", help="duckdb or spark (default: the setting).")
]
SinceOpt = Annotated[
    datetime | None, typer.Option("--since", help="Start of the range (default: a year ago).")
]
UntilOpt = Annotated[
    datetime | None, typer.Option("--until", help="End of the range, excluded (default: now).")
]
# what a run does after each of its steps
NEXT_STEP = {"read": "scoring", "rfm": "fitting models", "models": "storing", "write": "done"}


@analytics_app.command("run")
def run(
    workspace: WorkspaceOpt,
    as_of: Annotated[
        datetime | None, typer.Option("--as-of", help="Score as of this moment (default: now).")
    ] = None,
    engine: EngineOpt = None,
    as_json: JsonOpt = False,
    database_url: DatabaseOpt = None,
) -> None:
    """Score every customer: RFM segment, P(alive), expected orders, CLV and churn risk, stored
    on their unified profile (replacing the previous run's)."""
    from consentry.cli import console, err_console, fail

    with workspace_store(database_url, workspace) as (settings, db):
        try:
            with step_bar("reading orders", NEXT_STEP) as step:
                report = service.run(
                    db,
                    workspace,
                    settings.analytics,
                    as_of=as_of.replace(tzinfo=as_of.tzinfo or UTC) if as_of else None,
                    engine=engine,
                    progress=step,
                )
        except ValueError as exc:  # an unknown --engine
            raise fail(str(exc)) from None
    found = report.document()
    if as_json:
        echo_json(found)
        return
    console.print(
        f"scored [bold]{report.customers}[/] customers from {report.orders} orders "
        f"on {report.engine} in {sum(report.seconds.values()):.1f} s"
    )
    models = found["models"]
    if models.get("fitted"):
        b, g = models["bgnbd"], models["gamma_gamma"]
        console.print(
            f"  BG/NBD r={b['r']:.3f} alpha={b['alpha']:.2f} a={b['a']:.3f} b={b['b']:.3f} (days)"
        )
        if g.get("fitted", True):
            console.print(f"  Gamma-Gamma p={g['p']:.2f} q={g['q']:.2f} v={g['v']:.2f}")
    for warning in report.warnings:
        err_console.print(f"[yellow]warning:[/] {warning}")
    table = Table("segment", "customers")
    for name, count in sorted(report.segments.items(), key=lambda kv: -kv[1]):
        table.add_row(name, str(count))
    console.print(table)


@analytics_app.command("kpis")
def kpis(
    workspace: WorkspaceOpt,
    since: SinceOpt = None,
    until: UntilOpt = None,
    interval: Annotated[str, typer.Option("--interval", help="day, week or month.")] = "month",
    channel: Annotated[str | None, typer.Option("--channel", help="One sales channel.")] = None,
    as_json: JsonOpt = False,
    database_url: DatabaseOpt = None,
) -> None:
    """KPIs per period: orders, revenue, AOV, new and returning customers, retention,
    conversion, cart abandonment, acquisition cost, consent rate."""
    from consentry.cli import console, fail

    if interval not in ("day", "week", "month"):
        raise fail("--interval must be day, week or month")
    with workspace_store(database_url, workspace) as (settings, db):
        window = Range.default(since, until, cast(Interval, interval))
        from consentry.analytics import kpi_service  # the engine: loaded on first use

        found = kpi_service.kpis(db, workspace, settings.analytics, window, channel=channel)
    if as_json:
        echo_json(found)
        return
    table = Table(
        "period",
        "orders",
        "revenue",
        "AOV",
        "customers",
        "new",
        "retention",
        "conversion",
        "abandonment",
        "CAC",
        "consent",
        title=f"KPIs ({found['currency']})",
    )

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value:.1%}"

    def money(value: float | None) -> str:
        return "-" if value is None else f"{value:,.2f}"

    for p in found["periods"]:
        table.add_row(
            p["period"], str(p["orders"]), money(p["revenue"]), money(p["average_order_value"]),
            str(p["customers"]), str(p["new_customers"]), pct(p["retention_rate"]),
            pct(p["conversion_rate"]), pct(p["cart_abandonment_rate"]),
            money(p["customer_acquisition_cost"]), pct(p["consent_rate"]),
        )  # fmt: skip
    console.print(table)
    t = found["totals"]
    console.print(
        f"range: {t['orders']} orders, revenue {money(t['revenue'])}, {t['customers']} customers "
        f"({t['new_customers']} new), repeat purchase rate {pct(t['repeat_purchase_rate'])}"
    )


@analytics_app.command("cohorts")
def cohorts(
    workspace: WorkspaceOpt,
    since: SinceOpt = None,
    until: UntilOpt = None,
    as_json: JsonOpt = False,
    database_url: DatabaseOpt = None,
) -> None:
    """Retention by first-order month (share of each cohort buying in each month since)."""
    from consentry.cli import console

    with workspace_store(database_url, workspace) as (settings, db):
        from consentry.analytics import kpi_service  # the engine: loaded on first use

        found = kpi_service.cohorts(
            db, workspace, settings.analytics, Range.default(since, until, "month")
        )
    if as_json:
        echo_json(found)
        return
    span = max((len(c["retention"]) for c in found["cohorts"]), default=1)
    table = Table("cohort", "customers", *[f"+{i}" for i in range(1, span)])
    for c in found["cohorts"]:
        table.add_row(c["cohort"], str(c["customers"]), *[f"{v:.0%}" for v in c["retention"][1:]])
    console.print(table)


@analytics_app.command("churn")
def churn(
    workspace: WorkspaceOpt,
    min_risk: Annotated[float, typer.Option("--min-risk", min=0, max=1)] = 0.5,
    limit: Annotated[int, typer.Option("--limit", min=1, max=500)] = 20,
    as_json: JsonOpt = False,
    database_url: DatabaseOpt = None,
) -> None:
    """Customers at risk of churning, most value at stake first, with the reason."""
    from consentry.cli import console

    with workspace_store(database_url, workspace) as (_, db), db.read() as session:
        found = service.churn_list(
            session=session, workspace_id=workspace, min_risk=min_risk, limit=limit
        )
    if as_json:
        echo_json(found)
        return
    table = Table("profile", "segment", "CLV", "risk", "why")
    for c in found:
        table.add_row(
            c["profile_id"],
            c["rfm"]["segment"],
            "-" if c["clv"] is None else f"{c['clv']:,.2f}",
            f"{c['churn_risk']:.2f}",
            c["churn_reason"] or "",
        )
    console.print(table)


@analytics_app.command("spend")
def spend_import(
    workspace: WorkspaceOpt,
    file: Annotated[Path, typer.Argument(help="CSV with month,channel,amount.")],
    database_url: DatabaseOpt = None,
) -> None:
    """Enter marketing spend from a CSV (month as YYYY-MM, channel, amount); all or nothing."""
    from consentry.cli import console, fail

    try:
        entries = spend.parse_csv(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(f"cannot read {file}: {exc}") from None
    except ConsentryError as exc:
        raise refused(exc) from None
    with workspace_store(database_url, workspace) as (_, db), db.write() as session:
        count = spend_service.record(
            session=session, workspace_id=workspace, entries=entries, actor="cli:analytics"
        )
    console.print(f"recorded {count} spend entries")

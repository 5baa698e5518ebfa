"""The analytics dashboard: KPI tiles with their trend, the consent-rate chart, the cohort
heat map, the RFM grid, the CLV distribution and the churn-risk list.

Every number comes from the same service calls the ``/v1/analytics`` API answers with, so the
page and the API agree (the browser test compares them). Charts are server-rendered SVG
(``web/charts.py``); no script is needed. Reading needs ``analytics:read``; the churn list names
customers, so showing it is recorded in the audit trail. "Run now" needs ``analytics:write``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from consentry.analytics import service
from consentry.analytics.periods import (
    INTERVALS,
    Interval,
    Range,
    day_of,
    period_of_day,
    period_start,
)
from consentry.deps import AnalyticsRead, AnalyticsWrite, DbDep, ReadAudit, SettingsDep
from consentry.errors import FieldError, Invalid
from consentry.web.charts import bar_chart, heat, rate_chart, sparkline
from consentry.web.routes import CsrfChecked, PageRoute, redirect, render, summaries

router = APIRouter(prefix="/app", route_class=PageRoute, include_in_schema=False)
CHURN_ROWS = 20
CLV_BINS = 20
MIN_RISK = 0.5


@dataclass(frozen=True, slots=True)
class Tile:
    """One KPI: its value over the range, the change of the last period against the one
    before, and the per-period trend line."""

    key: str
    label: str
    value: str
    change: str | None
    rising_is_good: bool
    rising: bool | None
    trend: str


def _money(value: float | None, currency: str) -> str:
    return "—" if value is None else f"{value:,.2f} {currency}"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def _count(value: float | None) -> str:
    return "—" if value is None else f"{int(value):,}"


# key in the KPI document, label, how to show it, whether a rise is good news
TILES: tuple[tuple[str, str, str, bool], ...] = (
    ("revenue", "revenue", "money", True),
    ("orders", "orders", "count", True),
    ("average_order_value", "average order value", "money", True),
    ("customers", "customers", "count", True),
    ("new_customers", "new customers", "count", True),
    ("repeat_purchase_rate", "repeat purchase rate", "pct", True),
    ("conversion_rate", "conversion rate", "pct", True),
    ("cart_abandonment_rate", "cart abandonment", "pct", False),
    ("customer_acquisition_cost", "acquisition cost", "money", False),
    ("consent_rate", "consent rate", "pct", True),
)


def show(kind: str, value: float | None, currency: str) -> str:
    """A KPI value as the page prints it."""
    if kind == "money":
        return _money(value, currency)
    if kind == "pct":
        return _pct(value)
    return _count(value)


def _change(now: float | None, before: float | None, kind: str) -> tuple[str | None, bool | None]:
    if now is None or before is None:
        return None, None
    if kind == "pct":  # rates change by points
        delta = (now - before) * 100
        return f"{delta:+.1f} pts", delta > 0 if delta else None
    if not before:
        return None, None
    ratio = now / before - 1
    return f"{ratio * 100:+.1f}%", ratio > 0 if ratio else None


def ends_mid_period(window: Range) -> bool:
    """Whether the range stops inside its last period (the default range ends now): that
    period is then incomplete and the tiles compare the two periods before it instead."""
    until = window.until
    day = day_of(until)
    start = period_start(period_of_day(day, window.interval), window.interval)
    return until != datetime(start.year, start.month, start.day, tzinfo=UTC)


def tiles(kpis: dict[str, Any], *, partial_last: bool = False) -> list[Tile]:
    """The KPI tiles of a KPI document (``kpi_service.kpis``): the value over the range and the
    change of the last complete period against the one before."""
    currency, totals, periods = kpis["currency"], kpis["totals"], kpis["periods"]
    found = []
    for key, label, kind, good in TILES:
        per_period = [p.get(key) for p in periods]
        complete = per_period[:-1] if partial_last else per_period
        last = complete[-1] if complete else None
        before = complete[-2] if len(complete) > 1 else None
        change, rising = _change(last, before, kind)
        found.append(
            Tile(
                key=key,
                label=label,
                value=show(kind, totals.get(key), currency),
                change=change,
                rising_is_good=good,
                rising=rising,
                trend=sparkline(per_period),
            )
        )
    return found


def _when(value: str | None, field: str) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise Invalid(
            f"{field} is not a date (YYYY-MM-DD)", [FieldError(field, "a date, YYYY-MM-DD")]
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@router.get("/analytics")
def analytics_page(
    request: Request,
    principal: AnalyticsRead,
    db: DbDep,
    settings: SettingsDep,
    reads: ReadAudit,
    since: str = "",
    until: str = "",
    interval: str = "month",
    channel: str = "",
) -> Response:
    """KPIs and cohorts over the range asked for; RFM, CLV and churn from the latest run."""
    if interval not in INTERVALS:
        raise Invalid(
            "interval must be day, week or month", [FieldError("interval", ", ".join(INTERVALS))]
        )
    step: Interval = next(i for i in INTERVALS if i == interval)
    window = Range.default(_when(since, "since"), _when(until, "until"), step)
    sales_channel = channel.strip() or None
    if sales_channel is not None and len(sales_channel) > 50:
        raise Invalid("channel is too long", [FieldError("channel", "at most 50 characters")])
    workspace, options = principal.workspace_id, settings.analytics
    from consentry.analytics import kpi_service  # the engine: loaded on first use

    kpis, cohorts = kpi_service.dashboard(db, workspace, options, window, channel=sales_channel)
    with db.read() as session:
        run = service.latest_run(session=session, workspace_id=workspace)
        grid = service.segment_grid(session=session, workspace_id=workspace)
        clv = service.clv_distribution(session=session, workspace_id=workspace, bins=CLV_BINS)
    with reads.reading(principal, "analytics.churn", via="dashboard") as note:
        with db.read() as session:
            churn = service.churn_list(
                session=session,
                workspace_id=workspace,
                min_risk=MIN_RISK,
                limit=CHURN_ROWS,
                offset=0,
            )
            people = summaries(session, workspace, [c["profile_id"] for c in churn])
        note.found(c["profile_id"] for c in churn)
    periods = [p["period"] for p in kpis["periods"]]
    consent = {"consent rate": {p["period"]: p["consent_rate"] for p in kpis["periods"]}}
    most = max((max(row) for row in grid["grid"]), default=0) or 1
    query = {"since": window.since.date().isoformat(), "until": window.until.date().isoformat()}
    return render(
        request,
        "analytics.html",
        principal=principal,
        kpis=kpis,
        tiles=tiles(kpis, partial_last=ends_mid_period(window)),
        consent_chart=rate_chart(periods, consent),
        cohorts=cohorts["cohorts"],
        offsets=max((len(c["retention"]) for c in cohorts["cohorts"]), default=0),
        run=run,
        grid=grid,
        grid_heat=[[heat(n / most) for n in row] for row in grid["grid"]],
        clv=clv,
        clv_chart=bar_chart(
            [f"{b['low']:,.0f}" for b in clv["bins"]], [b["customers"] for b in clv["bins"]]
        ),
        churn=list(zip(churn, people, strict=True)),
        heat=heat,
        interval=step,
        intervals=INTERVALS,
        channel=sales_channel or "",
        since=query["since"],
        until=query["until"],
        csv_query=urlencode(query),
        money=lambda v: _money(v, kpis["currency"]),
        pct=_pct,
    )


@router.post("/analytics/run", dependencies=[CsrfChecked])
def run_now(principal: AnalyticsWrite, db: DbDep, settings: SettingsDep) -> Response:
    """Run the analytics now, then show the page with the new results."""
    service.run(db, principal.workspace_id, settings.analytics)
    return redirect("/app/analytics")

"""Analytics routes: runs, KPIs, cohorts, RFM grid, CLV distribution, churn list, spend.

Reading needs ``analytics:read``; running and entering spend need ``analytics:write``.
Date ranges are ``[since, until)``; the default range is the last twelve months.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from consentry.analytics import periods, service, spend, spend_service
from consentry.deps import AnalyticsRead, AnalyticsWrite, DbDep, SettingsDep
from consentry.errors import FieldError, Invalid, NotFound
from consentry.platform.db import Database

router = APIRouter(prefix="/v1/analytics", tags=["analytics"])

Since = Annotated[datetime | None, Query(description="Start of the range (default: a year ago).")]
Until = Annotated[datetime | None, Query(description="End of the range, excluded (default: now).")]
Channel = Annotated[str | None, Query(max_length=50, description="Only this sales channel.")]
MAX_CSV_BYTES = 1_000_000


class RunIn(BaseModel):
    """A run as of a moment (default now) on an engine (default the setting)."""

    model_config = ConfigDict(extra="forbid")

    as_of: datetime | None = None
    engine: Literal["duckdb", "spark"] | None = None


@router.post("/runs")
def run(
    principal: AnalyticsWrite, db: DbDep, settings: SettingsDep, body: RunIn | None = None
) -> dict[str, Any]:
    """Compute RFM, CLV, P(alive) and churn risk for every customer now and store them."""
    body = body or RunIn()
    report = service.run(
        db, principal.workspace_id, settings.analytics, as_of=body.as_of, engine=body.engine
    )
    return report.document()


@router.get("/runs/latest")
def latest(principal: AnalyticsRead, db: DbDep) -> dict[str, Any]:
    """The latest run's report (404 before the first run)."""
    with db.read() as session:
        found = service.latest_run(session=session, workspace_id=principal.workspace_id)
    if found is None:
        raise NotFound("no analytics run yet; POST /v1/analytics/runs")
    return found


@router.get("/kpis")
def kpis(
    principal: AnalyticsRead,
    db: DbDep,
    settings: SettingsDep,
    since: Since = None,
    until: Until = None,
    interval: Literal["day", "week", "month"] = "month",
    channel: Channel = None,
) -> dict[str, Any]:
    """Orders, revenue, AOV, customers (new, returning), retention and churn rate, repeat
    purchase rate, conversion rate, cart abandonment, acquisition cost and consent rate, per
    period and over the range."""
    from consentry.analytics import kpi_service  # the engine: loaded on first use

    return kpi_service.kpis(
        db,
        principal.workspace_id,
        settings.analytics,
        periods.Range.default(since, until, interval),
        channel=channel,
    )


@router.get("/cohorts")
def cohorts(
    principal: AnalyticsRead,
    db: DbDep,
    settings: SettingsDep,
    since: Since = None,
    until: Until = None,
    channel: Channel = None,
) -> dict[str, Any]:
    """Retention by first-order month for the cohorts that started in the range."""
    from consentry.analytics import kpi_service  # the engine: loaded on first use

    return kpi_service.cohorts(
        db,
        principal.workspace_id,
        settings.analytics,
        periods.Range.default(since, until, "month"),
        channel=channel,
    )


@router.get("/rfm")
def rfm_grid(principal: AnalyticsRead, db: DbDep) -> dict[str, Any]:
    """Customers per recency and frequency/monetary score, and per named segment."""
    with db.read() as session:
        return service.segment_grid(session=session, workspace_id=principal.workspace_id)


@router.get("/clv")
def clv(
    principal: AnalyticsRead, db: DbDep, bins: Annotated[int, Query(ge=2, le=100)] = 20
) -> dict[str, Any]:
    """The distribution of customer lifetime value (latest run)."""
    with db.read() as session:
        return service.clv_distribution(
            session=session, workspace_id=principal.workspace_id, bins=bins
        )


@router.get("/churn")
def churn(
    principal: AnalyticsRead,
    db: DbDep,
    min_risk: Annotated[float, Query(ge=0, le=1)] = 0.5,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    """Customers at risk, the most value at stake first, each with the reason."""
    with db.read() as session:
        found = service.churn_list(
            session=session,
            workspace_id=principal.workspace_id,
            min_risk=min_risk,
            limit=limit,
            offset=offset,
        )
    return {"min_risk": min_risk, "customers": found}


@router.get("/customers/{profile_id}")
def customer(profile_id: str, principal: AnalyticsRead, db: DbDep) -> dict[str, Any]:
    """One unified profile's computed traits (404 when it has none)."""
    with db.read() as session:
        return service.scores_of(
            session=session, workspace_id=principal.workspace_id, profile_id=profile_id
        )


class SpendIn(BaseModel):
    """Spend entries, each ``{"month": "2026-03", "channel": "ads", "amount": "12.50"}``."""

    model_config = ConfigDict(extra="forbid")

    entries: list[dict[str, Any]] = Field(..., min_length=1, max_length=spend.MAX_ENTRIES)


@router.get("/spend")
def spend_list(principal: AnalyticsRead, db: DbDep) -> dict[str, Any]:
    """Every marketing spend entry, by month then channel."""
    with db.read() as session:
        return {
            "entries": spend_service.listing(session=session, workspace_id=principal.workspace_id)
        }


@router.put("/spend")
def spend_set(body: SpendIn, principal: AnalyticsWrite, db: DbDep) -> dict[str, Any]:
    """Set spend entries (all or nothing; each bad one is named)."""
    return _record(db, principal.workspace_id, principal.actor, spend.check(body.entries))


@router.post("/spend.csv")
async def spend_csv(request: Request, principal: AnalyticsWrite, db: DbDep) -> dict[str, Any]:
    """Set spend from CSV (``month,channel,amount``); bad lines are named by number."""
    body = await request.body()
    if len(body) > MAX_CSV_BYTES:
        raise Invalid("the CSV is too large", [FieldError("body", "at most 1 MB")])
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Invalid("the CSV is not UTF-8", [FieldError("body", "not UTF-8")]) from None
    entries = spend.parse_csv(text)
    return await run_in_threadpool(_record, db, principal.workspace_id, principal.actor, entries)


def _record(
    db: Database, workspace_id: str, actor: str, entries: list[spend.Spend]
) -> dict[str, Any]:
    with db.write() as session:
        count = spend_service.record(
            session=session, workspace_id=workspace_id, entries=entries, actor=actor
        )
    return {"recorded": count}

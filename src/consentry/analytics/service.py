"""Analytics runs: RFM, lifetime value, P(alive) and churn risk for every customer, stored as
computed traits on the unified profile (``customer_scores``), one run per call.

A run reads every order once (``analytics.extract``, columnar), computes the customer summary,
RFM scores and the cohort retention of the whole history on the engine (``analytics.metrics``),
fits BG/NBD and Gamma-Gamma on the summary (on a fixed random sample of ``fit_sample``
customers when there are more) and replaces the workspace's scores in one bulk write in one
transaction, so readers see the previous run or this one, never a mix. Scores depend on the
day they are computed for (recency grows every day), so a run recomputes everyone. The run's
report keeps the cohort table; KPIs and cohorts over other ranges or channels are computed on
request (``analytics.kpi_service``).

With too little history to fit the models (fewer customers than ``min_customers``, nobody who
bought twice, a fit that does not converge) the run stores RFM only and says why in its report.
When only the spend model cannot be fitted, CLV takes each customer's own mean order value.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import numpy as np
from sqlalchemy import Select, Table, delete, func, select
from sqlalchemy.orm import Session

from consentry.analytics import rfm
from consentry.analytics.tables import AnalyticsRunRow, CustomerScoreRow
from consentry.config import AnalyticsSettings
from consentry.errors import NotFound
from consentry.platform.db import Database, row_batches
from consentry.platform.timing import StepProgress

Progress = StepProgress
SCORES = cast(Table, CustomerScoreRow.__table__)
HORIZON_DAYS = 90


@dataclass(slots=True)
class RunReport:
    """What a run did: sizes, timings per step, the models' parameters or why they were not
    fitted, the segment counts, the cohort retention table of the whole history, and the
    orders left out (by currency)."""

    run_id: str
    workspace_id: str
    engine: str
    as_of: datetime
    customers: int
    orders: int
    seconds: dict[str, float] = field(default_factory=dict)
    models: dict[str, Any] = field(default_factory=dict)
    segments: dict[str, int] = field(default_factory=dict)
    cohorts: list[dict[str, Any]] = field(default_factory=list)
    skipped_orders: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def document(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        return {
            "run_id": self.run_id,
            "engine": self.engine,
            "as_of": self.as_of.isoformat(),
            "customers": self.customers,
            "orders": self.orders,
            "seconds": self.seconds,
            "models": self.models,
            "segments": self.segments,
            "cohorts": self.cohorts,
            "skipped_orders": self.skipped_orders,
            "warnings": self.warnings,
        }


def run(
    db: Database,
    workspace_id: str,
    settings: AnalyticsSettings,
    *,
    as_of: datetime | None = None,
    engine: str | None = None,
    progress: Progress | None = None,
) -> RunReport:
    """Compute and store every customer's scores as of ``as_of`` (default: now).

    The computation (``analytics.runner``: the engine, numpy, pyarrow, scipy) is imported on the
    first run, so the server and the CLI do not load it to start."""
    from consentry.analytics import runner

    return runner.run(db, workspace_id, settings, as_of=as_of, engine=engine, progress=progress)


def latest_run(*, session: Session, workspace_id: str) -> dict[str, Any] | None:
    """The report of the workspace's latest run, or None before the first."""
    row = session.scalars(
        select(AnalyticsRunRow)
        .where(AnalyticsRunRow.workspace_id == workspace_id)
        .order_by(AnalyticsRunRow.started_at.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    return {**row.report, "started_at": row.started_at, "finished_at": row.finished_at}


def scores_of(*, session: Session, workspace_id: str, profile_id: str) -> dict[str, Any]:
    """A unified profile's computed traits from the latest run."""
    found = find_scores(session=session, workspace_id=workspace_id, profile_id=profile_id)
    if found is None:
        raise NotFound(f"no computed traits for profile {profile_id}")
    return found


def find_scores(*, session: Session, workspace_id: str, profile_id: str) -> dict[str, Any] | None:
    """A unified profile's computed traits, or None when no run has scored it (no order yet)."""
    row = session.get(CustomerScoreRow, (workspace_id, profile_id))
    return None if row is None else score_document(row)


def score_document(row: CustomerScoreRow) -> dict[str, Any]:
    """One customer's computed traits as JSON-ready data (money in currency units)."""
    return {
        "profile_id": row.profile_id,
        "orders": row.orders,
        "total_spent": row.total_cents / 100,
        "first_order_at": row.first_order_at,
        "last_order_at": row.last_order_at,
        "recency_days": row.recency_days,
        "rfm": {"r": row.r, "f": row.f, "m": row.m, "segment": row.rfm_segment},
        "p_alive": row.p_alive,
        "expected_orders_90d": row.expected_orders_90d,
        "clv": None if row.clv_cents is None else row.clv_cents / 100,
        "churn_risk": row.churn_risk,
        "churn_reason": row.churn_reason,
        "computed_at": row.computed_at,
    }


def segment_grid(*, session: Session, workspace_id: str) -> dict[str, Any]:
    """Customers per R and FM score (the RFM grid) and per named segment."""
    cells = session.execute(
        select(CustomerScoreRow.r, CustomerScoreRow.f, CustomerScoreRow.m, func.count())
        .where(CustomerScoreRow.workspace_id == workspace_id)
        .group_by(CustomerScoreRow.r, CustomerScoreRow.f, CustomerScoreRow.m)
    ).all()
    grid = [[0] * 5 for _ in range(5)]
    by_segment: dict[str, int] = dict.fromkeys(rfm.NAMES, 0)
    for r, f, m, count in cells:
        grid[5 - r][rfm.fm_of(f, m) - 1] += count
        by_segment[rfm.segment_of(r, f, m)] += count
    return {
        "rows": "R 5..1",
        "columns": "FM 1..5",
        "grid": grid,
        "segments": [
            {
                "name": name,
                "customers": by_segment[name],
                "meaning": rfm.SEGMENTS[name].meaning,
                "action": rfm.SEGMENTS[name].action,
            }
            for name in rfm.NAMES
        ],
    }


def clv_distribution(*, session: Session, workspace_id: str, bins: int = 20) -> dict[str, Any]:
    """How lifetime value is spread: equal-width bins up to the 99th percentile (the rest in
    the last bin), with the mean, median, 90th percentile and total, in currency units."""
    values = np.array(
        session.scalars(
            select(CustomerScoreRow.clv_cents).where(
                CustomerScoreRow.workspace_id == workspace_id,
                CustomerScoreRow.clv_cents.is_not(None),
            )
        ).all(),
        dtype=np.float64,
    )
    if values.size == 0:
        return {"customers": 0, "bins": [], "mean": None, "median": None, "p90": None, "total": 0}
    values /= 100
    top = float(np.quantile(values, 0.99)) or float(values.max()) or 1.0
    edges = np.linspace(0.0, top, bins + 1)
    counts, _ = np.histogram(np.clip(values, 0.0, top), bins=edges)
    return {
        "customers": int(values.size),
        "bins": [
            {"low": round(float(lo), 2), "high": round(float(hi), 2), "customers": int(c)}
            for lo, hi, c in zip(edges[:-1], edges[1:], counts, strict=True)
        ],
        "mean": round(float(values.mean()), 2),
        "median": round(float(np.median(values)), 2),
        "p90": round(float(np.quantile(values, 0.9)), 2),
        "total": round(float(values.sum()), 2),
    }


def churn_list(
    *, session: Session, workspace_id: str, min_risk: float = 0.5, limit: int = 50, offset: int = 0
) -> list[dict[str, Any]]:
    """Customers at risk of churning, the most valuable at-risk first (CLV x risk), each with
    the one-line reason."""
    s = CustomerScoreRow
    at_stake = func.coalesce(s.clv_cents, 0) * s.churn_risk
    rows = session.scalars(
        select(s)
        .where(s.workspace_id == workspace_id, s.churn_risk >= min_risk)
        .order_by(at_stake.desc(), s.profile_id)
        .limit(limit)
        .offset(offset)
    )
    return [score_document(r) for r in rows]


def erase_scores(*, session: Session, workspace_id: str, profile_ids: Sequence[str]) -> int:
    """Delete the computed traits of these profiles (an erasure); how many rows went."""
    result = session.execute(
        delete(CustomerScoreRow).where(
            CustomerScoreRow.workspace_id == workspace_id,
            CustomerScoreRow.profile_id.in_(list(profile_ids)),
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)


def segment_rows(
    *, session: Session, workspace_id: str, batch: int = 100_000
) -> Iterator[list[tuple[str, str]]]:
    """``(profile id, RFM segment)`` of every scored customer (latest run), in batches: what
    recommendations use for their popular-in-segment fallback."""
    stmt = select(CustomerScoreRow.profile_id, CustomerScoreRow.rfm_segment).where(
        CustomerScoreRow.workspace_id == workspace_id
    )
    yield from row_batches(session, stmt, batch)


def score_select(
    workspace_id: str,
) -> Select[str, str, int | None, float | None, float | None]:
    """``(unified profile id, rfm_segment, clv_cents, churn_risk, p_alive)`` of every customer
    scored by the latest run: a selectable the segment compiler builds on."""
    s = CustomerScoreRow
    return select(
        s.profile_id.label("profile_id"),
        s.rfm_segment.label("rfm_segment"),
        s.clv_cents.label("clv_cents"),
        s.churn_risk.label("churn_risk"),
        s.p_alive.label("p_alive"),
    ).where(s.workspace_id == workspace_id)

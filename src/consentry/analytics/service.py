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

import math
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Select, Table, delete, func, select
from sqlalchemy.orm import Session

from consentry.analytics import clv, extract, metrics, rfm
from consentry.analytics.cohorts import cohort_rows, month_of_day
from consentry.analytics.engine import open_engine
from consentry.analytics.tables import AnalyticsRunRow, CustomerScoreRow
from consentry.config import AnalyticsSettings
from consentry.errors import NotFound
from consentry.platform import columnar
from consentry.platform.db import Database, lock_workspace, row_batches, utcnow
from consentry.platform.timing import StepClock, StepProgress

Progress = StepProgress
SCORES = cast(Table, CustomerScoreRow.__table__)
HORIZON_DAYS = 90


def day_of(moment: datetime) -> int:
    """The UTC day number (days since 1970-01-01) of a moment."""
    return math.floor(moment.timestamp() / 86_400)


@dataclass(slots=True)
class Scores:
    """Per-customer results of a run, as columns."""

    customers: npt.NDArray[np.object_]
    columns: dict[str, npt.NDArray[Any]]
    reasons: pa.Array  # strings, null where no model was fitted


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
    """Compute and store every customer's scores as of ``as_of`` (default: now)."""
    as_of = (as_of or utcnow()).astimezone(UTC)
    started = utcnow()
    report = RunReport(
        run_id=str(uuid.uuid4()),
        workspace_id=workspace_id,
        engine=engine or settings.engine,
        as_of=as_of,
        customers=0,
        orders=0,
    )
    clock = StepClock(report.seconds, progress)
    with db.read() as session:
        merged = extract.unified(session, workspace_id)
    found = extract.orders(
        db, workspace_id, currency=settings.currency, fx_rates=settings.fx_rates, merged=merged
    )
    report.skipped_orders = found.skipped
    if found.skipped:
        report.warnings.append(
            f"{sum(found.skipped.values())} orders left out: no exchange rate for "
            + ", ".join(sorted(found.skipped))
            + f" into {settings.currency} (setting analytics.fx_rates)"
        )
    clock.step("read")
    as_of_day = day_of(as_of)
    with open_engine(report.engine, memory_limit=settings.memory_limit) as eng:
        eng.load("orders", found.table)
        table = eng.run(
            lambda t: metrics.rfm_scores(
                metrics.customer_summary(t["orders"], as_of_day), as_of_day
            )
        )
        clock.step("rfm")
        active = eng.run(lambda t: metrics.cohorts(t["orders"], as_of_day))
    report.cohorts = cohort_rows(active, 0, month_of_day(as_of_day))
    clock.step("cohorts")
    report.customers = table.num_rows
    report.orders = int(pc.sum(table["orders"]).as_py() or 0)
    scores = _score(table, settings, report)
    clock.step("models")
    with db.write() as session:
        lock_workspace(session, workspace_id)
        _store(session, workspace_id, report, scores, as_of)
        clock.step("write")
        session.add(
            AnalyticsRunRow(
                id=report.run_id,
                workspace_id=workspace_id,
                started_at=started,
                finished_at=utcnow(),
                as_of=as_of,
                engine=report.engine,
                customers=report.customers,
                orders=report.orders,
                report=report.document(),
            )
        )
    return report


def _score(table: pa.Table, settings: AnalyticsSettings, report: RunReport) -> Scores:
    """RFM segments for everyone; the CLV models where the history allows."""
    r = table["r"].to_numpy()
    f = table["f"].to_numpy()
    m = table["m"].to_numpy()
    names = rfm.segments(r, f, m)
    report.segments = {
        str(name): int(count)
        for name, count in zip(*np.unique(names, return_counts=True), strict=True)
    }
    n = table.num_rows
    columns: dict[str, npt.NDArray[Any]] = {
        "orders": table["orders"].to_numpy(),
        "total_cents": table["total"].to_numpy(),
        "first_day": table["first_day"].to_numpy(),
        "last_day": table["last_day"].to_numpy(),
        "recency_days": table["recency_days"].to_numpy(),
        "r": r,
        "f": f,
        "m": m,
        "rfm_segment": names,
        "p_alive": np.full(n, np.nan),
        "expected_orders_90d": np.full(n, np.nan),
        "clv": np.full(n, np.nan),
        "churn_risk": np.full(n, np.nan),
    }
    reasons = pa.nulls(n, pa.string())
    customers = table["customer"].to_numpy(zero_copy_only=False)
    try:
        fitted = _models(table, settings, report)
    except clv.ModelFitError as exc:
        report.models = {"fitted": False, "reason": exc.message}
        report.warnings.append(f"RFM only: {exc.message}")
        return Scores(customers=customers, columns=columns, reasons=reasons)
    columns.update(fitted[0])
    return Scores(customers=customers, columns=columns, reasons=fitted[1])


def _fit_rows(n: int, sample: int) -> slice | npt.NDArray[np.intp]:
    """Which customers the parameters are fitted on: all, or a fixed random sample of ``sample``
    of them (population parameters; a quarter of a million customers pins them down)."""
    if n <= sample:
        return slice(None)
    return np.sort(np.random.default_rng(0).choice(n, size=sample, replace=False))


def _models(
    table: pa.Table, settings: AnalyticsSettings, report: RunReport
) -> tuple[dict[str, npt.NDArray[Any]], pa.Array]:
    """BG/NBD for purchases and P(alive), Gamma-Gamma for spend, CLV and churn risk, in days."""
    n = table.num_rows
    if n < settings.min_customers:
        raise clv.InsufficientHistory(
            f"{n} customers; the models need at least {settings.min_customers} "
            "(setting analytics.min_customers)"
        )
    x = table["frequency"].to_numpy().astype(np.float64)
    tx = table["recency"].to_numpy().astype(np.float64)
    age = table["age"].to_numpy().astype(np.float64)
    spend = table["repeat_value"].to_numpy().astype(np.float64) / 100
    fit = _fit_rows(n, settings.fit_sample)
    purchases = clv.fit_bgnbd(x[fit], tx[fit], age[fit], min_customers=settings.min_customers)
    alive = purchases.p_alive(x, tx, age)
    expected = purchases.expected_purchases(HORIZON_DAYS, x, tx, age)
    try:
        value = clv.fit_gamma_gamma(x[fit], spend[fit])
    except clv.ModelFitError as exc:
        # spend without the shrinkage: each customer's own mean order value
        report.warnings.append(f"CLV from observed order values: {exc.message}")
        per_order = table["total"].to_numpy() / table["orders"].to_numpy() / 100
        spend_model: dict[str, Any] = {"fitted": False, "reason": exc.message}
    else:
        per_order = value.expected_spend(x, spend)
        spend_model = {
            **_parameters(value, ("p", "q", "v"), settings.currency),
            "excluded_customers": value.excluded,
        }
    lifetime = clv.customer_lifetime_value(
        purchases,
        x,
        tx,
        age,
        per_order,
        months=settings.clv_months,
        monthly_discount_rate=settings.monthly_discount,
        unit="days",
    )
    risk = clv.churn_risk(alive, x, tx, age, unit="days")
    report.models = {
        "fitted": True,
        "fitted_on": min(n, settings.fit_sample),
        "bgnbd": _parameters(purchases, ("r", "alpha", "a", "b"), "days"),
        "gamma_gamma": spend_model,
        "clv_months": settings.clv_months,
        "monthly_discount": settings.monthly_discount,
        "currency": settings.currency,
    }
    return (
        {
            "p_alive": alive,
            "expected_orders_90d": expected,
            "clv": lifetime,
            "churn_risk": risk.risk,
        },
        risk.explanations(),
    )


def _parameters(model: Any, names: tuple[str, ...], unit: str) -> dict[str, Any]:
    info = model.info
    return {
        **{name: getattr(model, name) for name in names},
        "unit": unit,
        "log_likelihood": None if info is None else info.log_likelihood,
        "std_errors": None if info is None else info.std_errors,
        "fit_seconds": None if info is None else info.seconds,
    }


def _score_table(
    dialect: str, workspace_id: str, report: RunReport, scores: Scores, computed_at: datetime
) -> pa.Table:
    """The scores as the ``customer_scores`` columns, ready for the store (built column-wise)."""
    c = scores.columns
    n = len(scores.customers)

    def nullable(values: npt.NDArray[np.float64]) -> pa.Array:
        return pa.array(values, pa.float64(), mask=np.isnan(values))

    clv_cents = np.round(c["clv"] * 100)
    return pa.table(
        {
            "workspace_id": pa.array([workspace_id] * n, pa.string()),
            "profile_id": pa.array(scores.customers, pa.string()),
            "orders": pa.array(c["orders"], pa.int64()),
            "total_cents": pa.array(c["total_cents"], pa.int64()),
            "first_order_at": columnar.day_timestamps(dialect, c["first_day"]),
            "last_order_at": columnar.day_timestamps(dialect, c["last_day"]),
            "recency_days": pa.array(c["recency_days"], pa.int64()),
            "r": pa.array(c["r"], pa.int64()),
            "f": pa.array(c["f"], pa.int64()),
            "m": pa.array(c["m"], pa.int64()),
            "rfm_segment": pa.array(c["rfm_segment"], pa.string()),
            "p_alive": nullable(c["p_alive"]),
            "expected_orders_90d": nullable(c["expected_orders_90d"]),
            "clv_cents": pa.array(
                np.nan_to_num(clv_cents).astype(np.int64), pa.int64(), mask=np.isnan(clv_cents)
            ),
            "churn_risk": nullable(c["churn_risk"]),
            "churn_reason": scores.reasons,
            "run_id": pa.array([report.run_id] * n, pa.string()),
            "computed_at": pa.array([columnar.moment_text(dialect, computed_at)] * n, pa.string()),
        }
    )


def _store(
    session: Session, workspace_id: str, report: RunReport, scores: Scores, as_of: datetime
) -> None:
    """Replace the workspace's scores by this run's, in bulk (COPY on PostgreSQL)."""
    session.execute(delete(CustomerScoreRow).where(CustomerScoreRow.workspace_id == workspace_id))
    dialect = session.get_bind().dialect.name
    columnar.copy_table(session, SCORES, _score_table(dialect, workspace_id, report, scores, as_of))


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

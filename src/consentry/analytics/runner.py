"""The computation of an analytics run (see ``analytics.service``, which imports this module on
a run's first call): the customer summary on the engine, RFM, the CLV models, the bulk write."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import delete
from sqlalchemy.orm import Session

from consentry.analytics import clv, extract, metrics, rfm
from consentry.analytics.cohorts import cohort_rows, month_of_day
from consentry.analytics.engine import open_engine
from consentry.analytics.periods import day_of
from consentry.analytics.service import (
    HORIZON_DAYS,
    SCORES,
    Progress,
    RunReport,
)
from consentry.analytics.tables import AnalyticsRunRow, CustomerScoreRow
from consentry.config import AnalyticsSettings
from consentry.platform import columnar
from consentry.platform.db import Database, lock_workspace, utcnow
from consentry.platform.timing import StepClock


@dataclass(slots=True)
class Scores:
    """Per-customer results of a run, as columns."""

    customers: npt.NDArray[np.object_]
    columns: dict[str, npt.NDArray[Any]]
    reasons: pa.Array  # strings, null where no model was fitted


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

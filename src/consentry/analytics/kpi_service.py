"""KPIs and cohorts over a date range, computed on request on the analytics engine.

Definitions (docs/analytics.md has them with examples); periods are UTC days, Monday weeks or
calendar months, named by their first day:

- orders, revenue (net of refunds, reporting currency), average order value = revenue / orders;
- customers: unified profiles with a purchase in the period; new: their first purchase ever was
  in it; returning = customers - new;
- retention rate: of the previous period's customers, the share who bought again in this one;
  churn rate = 1 - retention rate;
- repeat purchase rate (range): of the range's customers, the share who have bought more than
  once (ever, up to the end of the range);
- conversion rate: sessions with an order / sessions (a session: one visitor's events with no
  gap over 30 minutes, counted in the period it started);
- cart abandonment rate: carts created in the period that were not converted and have been left
  untouched for ``abandoned_cart_minutes`` / carts created;
- customer acquisition cost (months only): marketing spend of the month / new customers;
- consent rate: granted / (granted + denied) over the choices made in the period.

A ``channel`` filter keeps the orders of one sales channel (new then means new to the channel).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from ibis import _
from sqlalchemy import select
from sqlalchemy.orm import Session

from consentry.analytics import extract, metrics
from consentry.analytics.cohorts import cohort_rows, month_key
from consentry.analytics.engine import Engine, open_engine
from consentry.analytics.periods import Interval, Range, period_of_day, period_start
from consentry.analytics.tables import MarketingSpendRow
from consentry.config import AnalyticsSettings
from consentry.consent import service as consent
from consentry.platform.db import Database


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def _by_period(table: pa.Table) -> dict[int, dict[str, Any]]:
    return {row["period"]: row for row in table.to_pylist()}


@dataclass(frozen=True, slots=True)
class _History:
    """What every KPI and cohort reads first: the merged-profile map and the orders under it."""

    merged: pa.Table
    orders: extract.Orders


def _history(
    db: Database, workspace_id: str, settings: AnalyticsSettings, channel: str | None
) -> _History:
    """Every order in the reporting currency, of one sales channel when ``channel`` is given."""
    with db.read() as session:
        merged = extract.unified(session, workspace_id)
    found = extract.orders(
        db, workspace_id, currency=settings.currency, fx_rates=settings.fx_rates, merged=merged
    )
    if channel is not None:
        kept = found.table.filter(pc.equal(found.table["channel"], channel))
        found = extract.Orders(table=kept, skipped=found.skipped)
    return _History(merged, found)


@contextmanager
def _engine(settings: AnalyticsSettings, engine: str | None, history: _History) -> Iterator[Engine]:
    """The engine asked for (default: the setting) with the orders loaded, closed on leaving."""
    with open_engine(engine or settings.engine, memory_limit=settings.memory_limit) as eng:
        eng.load("orders", history.orders.table)
        yield eng


def kpis(
    db: Database,
    workspace_id: str,
    settings: AnalyticsSettings,
    window: Range,
    *,
    channel: str | None = None,
    engine: str | None = None,
) -> dict[str, Any]:
    """Every KPI per period of ``window`` and over the whole range."""
    history = _history(db, workspace_id, settings, channel)
    with _engine(settings, engine, history) as eng:
        return _kpis(db, workspace_id, settings, window, channel, history, eng)


def cohorts(
    db: Database,
    workspace_id: str,
    settings: AnalyticsSettings,
    window: Range,
    *,
    channel: str | None = None,
    engine: str | None = None,
) -> dict[str, Any]:
    """Retention by first-order month: for each cohort that started in the range, its size and
    the share of it that bought in each month since (month 0 is 100 %)."""
    history = _history(db, workspace_id, settings, channel)
    with _engine(settings, engine, history) as eng:
        return _cohorts(window, channel, eng)


def dashboard(
    db: Database,
    workspace_id: str,
    settings: AnalyticsSettings,
    window: Range,
    *,
    channel: str | None = None,
    engine: str | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``kpis`` and ``cohorts`` over the same range (cohorts by month whatever ``window``'s
    interval), from one read of the orders loaded once into one engine: what the dashboard
    shows."""
    history = _history(db, workspace_id, settings, channel)
    with _engine(settings, engine, history) as eng:
        found = _kpis(db, workspace_id, settings, window, channel, history, eng)
        return found, _cohorts(window, channel, eng)


def _kpis(
    db: Database,
    workspace_id: str,
    settings: AnalyticsSettings,
    window: Range,
    channel: str | None,
    history: _History,
    eng: Engine,
) -> dict[str, Any]:
    interval = window.interval
    with db.read() as session:
        events = extract.events(
            session, workspace_id, window.since, window.until, merged=history.merged
        )
        carts = extract.carts(session, workspace_id, window.since, window.until)
        spend = _spend(session, workspace_id)
        consent_rates = consent.opt_in_by_period(
            session=session,
            workspace_id=workspace_id,
            since=window.since,
            until=window.until,
            interval=interval,
        )
    abandoned_before = int(window.until.timestamp()) - settings.abandoned_cart_minutes * 60
    last, first = window.last_day, window.first_day
    eng.load("events", events)
    eng.load("carts", carts)
    sales = _by_period(eng.run(lambda t: metrics.order_kpis(t["orders"], interval, last)))
    visits = _by_period(eng.run(lambda t: metrics.session_kpis(t["events"], interval)))
    baskets = _by_period(
        eng.run(lambda t: metrics.cart_kpis(t["carts"], interval, abandoned_before))
    )
    people = eng.run(
        lambda t: metrics.customer_summary(t["orders"], last).filter(_.last_day >= first)
    )
    rows = [
        _period_row(p, interval, sales, visits, baskets, spend, consent_rates)
        for p in window.periods()
    ]
    return {
        "interval": interval,
        "since": window.since,
        "until": window.until,
        "currency": settings.currency,
        "channel": channel,
        "periods": rows,
        "totals": _totals(rows, people, first, interval),
        "skipped_orders": history.orders.skipped,
    }


def _spend(session: Session, workspace_id: str) -> dict[str, int]:
    spent: dict[str, int] = {}
    for month, cents in session.execute(
        select(MarketingSpendRow.month, MarketingSpendRow.cents).where(
            MarketingSpendRow.workspace_id == workspace_id
        )
    ):
        spent[month] = spent.get(month, 0) + cents
    return spent


def _period_row(
    period: int,
    interval: Interval,
    sales: Mapping[int, Mapping[str, Any]],
    visits: Mapping[int, Mapping[str, Any]],
    baskets: Mapping[int, Mapping[str, Any]],
    spend: Mapping[str, int],
    consent_rates: Mapping[str, Any],
) -> dict[str, Any]:
    s = sales.get(period, {})
    before = sales.get(period - 1, {})
    v = visits.get(period, {})
    b = baskets.get(period, {})
    orders, revenue = s.get("orders", 0), s.get("revenue", 0)
    customers, new = s.get("customers", 0), s.get("new_customers", 0)
    retention = _ratio(s.get("retained", 0), before.get("customers", 0))
    sessions = v.get("sessions", 0)
    carts = b.get("carts", 0)
    start = period_start(period, interval)
    spent = spend.get(month_key(period)) if interval == "month" else None
    tally = consent_rates.get(start.isoformat())
    return {
        "period": start.isoformat(),
        "orders": orders,
        "revenue": revenue / 100,
        "average_order_value": None if not orders else round(revenue / orders) / 100,
        "guest_orders": s.get("guest_orders", 0),
        "customers": customers,
        "new_customers": new,
        "returning_customers": customers - new,
        "retention_rate": retention,
        "churn_rate": None if retention is None else 1 - retention,
        "sessions": sessions,
        "converted_sessions": v.get("converted", 0),
        "conversion_rate": _ratio(v.get("converted", 0), sessions),
        "carts": carts,
        "abandoned_carts": b.get("abandoned", 0),
        "cart_abandonment_rate": _ratio(b.get("abandoned", 0), carts),
        "marketing_spend": None if spent is None else spent / 100,
        "customer_acquisition_cost": None if spent is None or not new else round(spent / new) / 100,
        "consent_rate": None if tally is None else tally.opt_in_rate,
        "consent_choices": 0 if tally is None else tally.granted + tally.denied,
    }


def _sum(rows: list[dict[str, Any]], key: str) -> float:
    return sum(r[key] or 0 for r in rows)


def _totals(
    rows: list[dict[str, Any]], people: pa.Table, first_day: int, interval: Interval
) -> dict[str, Any]:
    orders, revenue = int(_sum(rows, "orders")), _sum(rows, "revenue")
    customers = people.num_rows
    repeat = sum(1 for n in people["purchase_days"].to_pylist() if n > 1)
    new = sum(1 for d in people["first_day"].to_pylist() if d >= first_day)
    sessions, carts = _sum(rows, "sessions"), _sum(rows, "carts")
    spent = _sum(rows, "marketing_spend") if interval == "month" else None
    granted_or_denied = _sum(rows, "consent_choices")
    granted = sum((r["consent_rate"] or 0) * r["consent_choices"] for r in rows)
    return {
        "orders": orders,
        "revenue": round(revenue, 2),
        "average_order_value": None if not orders else round(revenue / orders, 2),
        "customers": customers,
        "new_customers": new,
        "returning_customers": customers - new,
        "repeat_purchase_rate": _ratio(repeat, customers),
        "sessions": int(sessions),
        "conversion_rate": _ratio(_sum(rows, "converted_sessions"), sessions),
        "carts": int(carts),
        "cart_abandonment_rate": _ratio(_sum(rows, "abandoned_carts"), carts),
        "marketing_spend": spent,
        "customer_acquisition_cost": None if not spent or not new else round(spent / new, 2),
        "consent_rate": _ratio(round(granted), granted_or_denied),
    }


def _cohorts(window: Range, channel: str | None, eng: Engine) -> dict[str, Any]:
    last = window.last_day
    table = eng.run(lambda t: metrics.cohorts(t["orders"], last))
    first_month = period_of_day(window.first_day, "month")
    result = cohort_rows(table, first_month, period_of_day(last, "month"))
    return {"since": window.since, "until": window.until, "channel": channel, "cohorts": result}

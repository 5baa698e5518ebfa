"""The customer metrics as backend-neutral Ibis expressions, written once.

Each function takes Ibis tables and plain numbers and returns an Ibis table; an engine
(``analytics.engine``) runs it on DuckDB or Spark. Only operations both backends execute the same
way are used: integer day numbers from epoch seconds instead of date arithmetic, ``rank`` (ties
share a rank) instead of ``ntile`` (which breaks ties arbitrarily, so two engines would disagree).

Input tables (built by ``analytics.extract``):

- ``orders``: ``customer`` (the unified profile; null for guest orders), ``order_id``,
  ``placed_at`` (UTC timestamp), ``cents`` (net of refunds, in cents of the reporting
  currency), ``channel``. Only orders with a positive amount count as purchases: cancelled and
  fully refunded orders arrive with 0 and are ignored by every metric. Money is summed in integer
  cents, so every engine adds up to exactly the same totals (and ranks ties the same way).
- ``events``: ``visitor`` (profile, else anonymous id), ``ts``, ``ordered`` (1 for an order
  event, else 0): the stuff sessions are made of.
- ``carts``: ``created_at``, ``updated_at``, ``converted`` (1 or 0).

Days are UTC days numbered from 1970-01-01; months are numbered ``year * 12 + month - 1``;
weeks start on Monday.
"""

from __future__ import annotations

import ibis
from ibis import _
from ibis.expr.types import IntegerColumn, Table, TimestampColumn

from consentry.analytics.periods import Interval

SESSION_GAP_SECONDS = 30 * 60
SECONDS_PER_DAY = 86_400


def day_number(ts: TimestampColumn) -> IntegerColumn:
    """UTC day number of a timestamp (days since 1970-01-01)."""
    return (ts.epoch_seconds() // SECONDS_PER_DAY).cast("int64")


def month_number(ts: TimestampColumn) -> IntegerColumn:
    """Month number of a timestamp: ``year * 12 + month - 1``."""
    return ts.year().cast("int64") * 12 + ts.month().cast("int64") - 1


def period_number(ts: TimestampColumn, interval: Interval) -> IntegerColumn:
    """The period a timestamp falls in: its day, its Monday-based week or its month."""
    if interval == "month":
        return month_number(ts)
    day = day_number(ts)
    if interval == "week":
        return (day + 3) // 7  # day 4 (1970-01-05) is the first Monday: week 1
    return day


def purchases(orders: Table, through_day: int) -> Table:
    """Orders that count as purchases by a customer, placed on or before ``through_day``."""
    return orders.filter(
        orders.customer.notnull(),
        orders.cents > 0,
        day_number(orders.placed_at) <= through_day,
    )


def customer_summary(orders: Table, as_of_day: int) -> Table:
    """One row per customer as of a day, with what the models need.

    - ``first_day``, ``last_day``: days of the first and the last purchase;
    - ``orders``: purchases; ``purchase_days``: distinct days with a purchase;
    - ``total``: cents spent; ``repeat_value``: mean spend (cents) of the repeat purchase
      *days* (a day's orders count as one purchase, the first day excluded, as the BG/NBD and
      Gamma-Gamma models define it; 0 without repeats);
    - ``frequency`` (repeat purchase days), ``recency`` (days from first to last purchase) and
      ``age`` (days from first purchase to ``as_of_day``, the models' T).
    """
    valid = purchases(orders, as_of_day)
    daily = (
        valid.mutate(day=day_number(valid.placed_at))
        .group_by(["customer", "day"])
        .aggregate(value=_.cents.sum(), n=_.count())
    )
    per = daily.group_by("customer").aggregate(
        first_day=_.day.min(),
        last_day=_.day.max(),
        purchase_days=_.count(),
        orders=_.n.sum(),
        total=_.value.sum(),
    )
    firsts = daily.join(per, [daily.customer == per.customer, daily.day == per.first_day]).select(
        customer=daily.customer, first_value=daily.value
    )
    joined = per.join(firsts, "customer")
    repeats = joined.purchase_days - 1
    return joined.select(
        "customer",
        "first_day",
        "last_day",
        "purchase_days",
        orders=joined.orders.cast("int64"),
        total=joined.total,
        frequency=repeats.cast("int64"),
        recency=(joined.last_day - joined.first_day).cast("int64"),
        age=(ibis.literal(as_of_day) - joined.first_day).cast("int64"),
        repeat_value=ibis.ifelse(
            repeats > 0, (joined.total - joined.first_value) / repeats.cast("float64"), 0.0
        ),
    )


def _score(rank: IntegerColumn, count: IntegerColumn) -> IntegerColumn:
    """Quintile score 1..5 from a 0-based rank among ``count``; ties share the lower score."""
    return ((rank * 5) // count + 1).cast("int64")


def rfm_scores(summary: Table, as_of_day: int) -> Table:
    """The summary with ``recency_days`` (days since the last purchase) and the recency,
    frequency and monetary scores ``r``, ``f``, ``m`` (1-5, 5 best) of every customer.

    Scores are quintiles by rank: a customer's score is ``floor(5 * rank / n) + 1`` where rank
    counts the customers strictly worse. Equal values share a score, so the quintiles are as
    even as the ties allow (many one-time buyers all get F = 1)."""
    every = ibis.window()
    with_recency = summary.mutate(recency_days=ibis.literal(as_of_day) - summary.last_day)
    n = with_recency.customer.count().over(every)
    return with_recency.mutate(
        r=_score(ibis.rank().over(order_by=ibis.desc(with_recency.recency_days)), n),
        f=_score(ibis.rank().over(order_by=with_recency.orders), n),
        m=_score(ibis.rank().over(order_by=with_recency.total), n),
    )


def cohorts(orders: Table, through_day: int) -> Table:
    """Customers active per first-order month (``cohort``) and months since (``offset``)."""
    valid = purchases(orders, through_day)
    active = valid.select("customer", month=month_number(valid.placed_at)).distinct()
    first = active.group_by("customer").aggregate(cohort=_.month.min())
    joined = active.join(first, "customer")
    return (
        joined.mutate(offset=joined.month - joined.cohort)
        .group_by(["cohort", "offset"])
        .aggregate(customers=_.customer.count())
    )


def order_kpis(orders: Table, interval: Interval, through_day: int) -> Table:
    """Per period: orders, revenue (net cents), guest orders, customers, new customers (first
    purchase in the period) and retained customers (bought in this period and the one before)."""
    valid = orders.filter(orders.cents > 0, day_number(orders.placed_at) <= through_day)
    valid = valid.mutate(period=period_number(valid.placed_at, interval))
    sales = valid.group_by("period").aggregate(
        orders=_.count(),
        revenue=_.cents.sum(),
        guest_orders=_.customer.isnull().cast("int64").sum(),
    )
    active = valid.filter(valid.customer.notnull()).select("customer", "period").distinct()
    first = active.group_by("customer").aggregate(first=_.period.min())
    people = (
        active.join(first, "customer")
        .mutate(is_new=(_.period == _.first).cast("int64"))
        .group_by("period")
        .aggregate(customers=_.count(), new_customers=_.is_new.sum())
    )
    before = active.select("customer", period=active.period + 1)
    retained = (
        active.join(before, ["customer", "period"]).group_by("period").aggregate(retained=_.count())
    )
    return (
        sales.left_join(people, "period")
        .select(sales, people.customers, people.new_customers)
        .left_join(retained, "period")
        .select(
            "period",
            "orders",
            "revenue",
            "guest_orders",
            customers=_.customers.fill_null(0),
            new_customers=_.new_customers.fill_null(0),
            retained=_.retained.fill_null(0),
        )
    )


def session_kpis(events: Table, interval: Interval) -> Table:
    """Per period: sessions and sessions with an order. A session is a visitor's run of events
    with no gap longer than 30 minutes; it belongs to the period it started in."""
    sec = events.ts.epoch_seconds()
    by_visitor = ibis.window(group_by=events.visitor, order_by=[events.ts])
    marked = events.mutate(sec=sec, prev=sec.lag().over(by_visitor))
    marked = marked.mutate(
        starts=ibis.ifelse(
            marked.prev.isnull() | (marked.sec - marked.prev > SESSION_GAP_SECONDS), 1, 0
        )
    )
    running = ibis.cumulative_window(group_by=marked.visitor, order_by=[marked.ts, marked.sec])
    numbered = marked.mutate(session=marked.starts.sum().over(running))
    sessions = numbered.group_by(["visitor", "session"]).aggregate(
        started=_.ts.min(), ordered=_.ordered.max()
    )
    return (
        sessions.mutate(period=period_number(sessions.started, interval))
        .group_by("period")
        .aggregate(sessions=_.count(), converted=_.ordered.sum())
    )


def cart_kpis(carts: Table, interval: Interval, abandoned_before: int) -> Table:
    """Per period of creation: carts, converted carts, and abandoned carts (not converted and
    untouched since before ``abandoned_before``, in epoch seconds)."""
    stale = carts.updated_at.epoch_seconds() < abandoned_before
    return (
        carts.mutate(
            period=period_number(carts.created_at, interval),
            abandoned=((carts.converted == 0) & stale).cast("int64"),
        )
        .group_by("period")
        .aggregate(carts=_.count(), converted=_.converted.sum(), abandoned=_.abandoned.sum())
    )

"""Customer lifetime value: purchase models, spend model, discounted value and churn risk.

The public face of the CLV models; the pieces live in ``clv_summary`` (transactions to
per-customer summaries), ``clv_bgnbd`` and ``clv_pareto`` (how many purchases, and whether the
customer is still there), ``clv_spend`` (how much per purchase) and ``clv_base`` (errors and the
shared fitting machinery). Pure numpy/scipy: no SQL, no HTTP. A typical use::

    s = summary(customer_ids, order_times, order_values, unit="weeks")
    purchases = fit_bgnbd(s.frequency, s.recency, s.T)
    spend = fit_gamma_gamma(s.frequency, s.monetary_value)
    value = customer_lifetime_value(
        purchases, s.frequency, s.recency, s.T,
        spend.expected_spend(s.frequency, s.monetary_value), months=12, unit="weeks",
    )
    risk = churn_risk(purchases.p_alive(s.frequency, s.recency, s.T), s.frequency, s.recency,
                      s.T, unit="weeks")

Fits raise ``InsufficientHistory`` or ``ConvergenceFailure`` (both ``ModelFitError``, a
``Conflict``) instead of returning parameters the data do not support.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from consentry.analytics.clv_base import (
    DAYS_PER_UNIT,
    ConvergenceFailure,
    FitInfo,
    FloatArray,
    InsufficientHistory,
    ModelFitError,
    TimeUnit,
    as_float,
    check_rfm,
)
from consentry.analytics.clv_bgnbd import BgNbd, fit_bgnbd, simulate_bgnbd
from consentry.analytics.clv_pareto import ParetoNbd, fit_pareto_nbd, simulate_pareto_nbd
from consentry.analytics.clv_spend import GammaGamma, fit_gamma_gamma, simulate_gamma_gamma
from consentry.analytics.clv_summary import (
    Backtest,
    CustomerSummary,
    calibration_holdout,
    summary,
)

__all__ = [
    "DAYS_PER_MONTH",
    "Backtest",
    "BgNbd",
    "ChurnRisk",
    "ConvergenceFailure",
    "CustomerSummary",
    "FitInfo",
    "GammaGamma",
    "InsufficientHistory",
    "ModelFitError",
    "ParetoNbd",
    "PurchaseModel",
    "TimeUnit",
    "calibration_holdout",
    "churn_risk",
    "customer_lifetime_value",
    "fit_bgnbd",
    "fit_gamma_gamma",
    "fit_pareto_nbd",
    "simulate_bgnbd",
    "simulate_gamma_gamma",
    "simulate_pareto_nbd",
    "summary",
]

DAYS_PER_MONTH = 365.25 / 12


class PurchaseModel(Protocol):
    """What ``customer_lifetime_value`` needs of a purchase model (BG/NBD and Pareto/NBD)."""

    def expected_purchases(
        self,
        t: npt.ArrayLike,
        frequency: npt.ArrayLike,
        recency: npt.ArrayLike,
        T: npt.ArrayLike,
    ) -> FloatArray: ...

    def p_alive(
        self, frequency: npt.ArrayLike, recency: npt.ArrayLike, T: npt.ArrayLike
    ) -> FloatArray: ...


def customer_lifetime_value(
    model: PurchaseModel,
    frequency: npt.ArrayLike,
    recency: npt.ArrayLike,
    T: npt.ArrayLike,
    expected_spend: npt.ArrayLike,
    *,
    months: int = 12,
    monthly_discount_rate: float = 0.01,
    unit: TimeUnit = "weeks",
    days_per_month: float = DAYS_PER_MONTH,
) -> FloatArray:
    """Discounted value of each customer's purchases over the next ``months`` months.

    sum over i = 1..months of E[purchases in month i] * expected_spend / (1 + d)^i, where the
    purchases in month i are the model's conditional expectation up to i months minus up to i-1
    months (the discounted-cash-flow form ``lifetimes`` uses). ``unit`` is the time unit the
    model was fitted in; a month is ``days_per_month`` days (365.25 / 12 by default; lifetimes
    uses 30 days or 4.345 weeks). One model call covers every month and customer.
    """
    x, tx, age = check_rfm(frequency, recency, T)
    spend = as_float("expected_spend", expected_spend)
    if months < 0:
        raise ValueError("months must be non-negative")
    if monthly_discount_rate <= -1:
        raise ValueError("the monthly discount rate must be above -100%")
    if months == 0:
        return np.zeros(len(x))
    month = days_per_month / DAYS_PER_UNIT[unit]
    horizons = (np.arange(months + 1, dtype=np.float64) * month)[:, None]
    cumulative = model.expected_purchases(horizons, x, tx, age)
    per_month = np.diff(cumulative, axis=0)
    discount = (1 + monthly_discount_rate) ** -np.arange(1, months + 1, dtype=np.float64)
    return np.asarray((discount @ per_month) * spend, dtype=np.float64)


@dataclass(frozen=True, slots=True)
class ChurnRisk:
    """Churn risk per customer, with what it was made of.

    ``risk = 1 - p_alive * 2^-max(0, overdue - 1)``: the model's probability that the customer
    has left, raised by how far they are past their usual gap between purchases (``overdue`` is
    days since the last purchase / usual gap in days; each usual gap beyond the first halves the
    chance they are still active). The usual gap is the customer's own mean gap
    (recency / frequency) or, for customers without a repeat purchase, the median of the repeat
    buyers' gaps (``own_gap`` False); NaN when nobody has bought twice (then ``overdue`` is 0).
    """

    risk: FloatArray
    p_alive: FloatArray
    days_since_last: FloatArray
    usual_gap_days: FloatArray
    own_gap: npt.NDArray[np.bool_]
    overdue: FloatArray

    def __len__(self) -> int:
        return len(self.risk)

    def explain(self, i: int) -> str:
        """One line for a person, e.g. "last order 212 days ago, usually every 45 days;
        P(alive) 0.18"."""
        return str(self.explanations(slice(i, i + 1))[0])

    def explanations(self, part: slice | None = None) -> pa.Array:
        """``explain`` for every customer (or a slice of them) as an Arrow string array, built
        column-wise (a million lines in a fraction of a second). Numbers are rounded half to
        even, as Python's format does."""
        where = part if part is not None else slice(None)
        days = np.round(self.days_since_last[where]).astype(np.int64)
        gap = self.usual_gap_days[where]
        known = np.isfinite(gap)
        gaps = pa.array(np.round(np.where(known, gap, 0)).astype(np.int64)).cast(pa.string())
        hundredths = np.round(self.p_alive[where] * 100).astype(np.int64)
        alive = pc.binary_join_element_wise(
            pa.array(hundredths // 100).cast(pa.string()),
            pc.utf8_lpad(pa.array(hundredths % 100).cast(pa.string()), 2, "0"),
            ".",
        )
        ago = pa.array(days).cast(pa.string())

        def line(*parts: pa.Array | str) -> pa.Array:
            return pc.binary_join_element_wise(*parts, "")

        own = line("last order ", ago, " days ago, usually every ", gaps, " days; P(alive) ", alive)
        others = line(
            "only order ", ago, " days ago, repeat buyers reorder every ", gaps,
            " days or so; P(alive) ", alive,
        )  # fmt: skip
        alone = line(
            "only order ", ago, " days ago, no repeat buyers to compare with; P(alive) ", alive
        )
        first_only = pc.if_else(pa.array(known), others, alone)
        return pc.if_else(pa.array(self.own_gap[where]), own, first_only)


def churn_risk(
    p_alive: npt.ArrayLike,
    frequency: npt.ArrayLike,
    recency: npt.ArrayLike,
    T: npt.ArrayLike,
    *,
    unit: TimeUnit = "weeks",
    fallback_gap_days: float | None = None,
) -> ChurnRisk:
    """Churn risk in [0, 1] for every customer from P(alive) and how overdue they are.

    ``fallback_gap_days`` is the usual gap for customers without a repeat purchase; by default
    the median gap of the repeat buyers among these customers. See ``ChurnRisk`` for the formula.
    """
    alive = as_float("p_alive", p_alive)
    x, tx, age = check_rfm(frequency, recency, T)
    if len(alive) != len(x):
        raise ValueError(f"p_alive has {len(alive)} values for {len(x)} customers")
    if np.any((alive < 0) | (alive > 1)):
        raise ValueError("p_alive must lie in [0, 1]")
    days = DAYS_PER_UNIT[unit]
    repeat = x > 0
    own = np.divide(tx * days, x, out=np.full(len(x), np.nan), where=repeat)
    if fallback_gap_days is None:
        fallback_gap_days = float(np.median(own[repeat])) if np.any(repeat) else float("nan")
    gap = np.where(repeat, own, fallback_gap_days)
    since = (age - tx) * days
    overdue = np.divide(since, gap, out=np.zeros(len(x)), where=np.isfinite(gap) & (gap > 0))
    active = alive * np.exp2(-np.maximum(overdue - 1, 0.0))
    return ChurnRisk(
        risk=np.clip(1 - active, 0.0, 1.0),
        p_alive=alive,
        days_since_last=since,
        usual_gap_days=gap,
        own_gap=repeat,
        overdue=overdue,
    )

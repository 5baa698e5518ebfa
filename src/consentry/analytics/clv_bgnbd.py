"""The BG/NBD purchase model (Fader, Hardie & Lee 2005, "Counting your customers the easy way").

While alive a customer buys at Poisson rate lambda ~ Gamma(r, alpha); after every repeat purchase
they leave for good with probability p ~ Beta(a, b). A customer's history is summarised by
``x`` (repeat purchases), ``t_x`` (time of the last one, from the first purchase) and ``T``
(time from the first purchase to the end of observation), all in one time unit; ``alpha`` is in
that unit too.

The log-likelihood of one customer, with A = ln G(r+x) - ln G(r) + r ln alpha
+ ln B(a, b+x) - ln B(a, b):

    ln L = A + ln[ (alpha+T)^-(r+x) + [x>0] a/(b+x-1) (alpha+t_x)^-(r+x) ]

computed with ``logaddexp``; its gradient is analytic (the weight ``w`` of the second branch
appears in every partial derivative). Fitting minimises the weighted mean over distinct rows in
ln-parameters with that gradient (L-BFGS-B).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy.special import digamma, expit, gammaln, hyp2f1

from consentry.analytics.clv_base import (
    FitInfo,
    FloatArray,
    Grouped,
    Repeats,
    as_float,
    check_horizon,
    check_rfm,
    fitted_info,
    hessian_from_gradient,
    mean_objective,
    minimise,
    timer,
)

NAMES = ("r", "alpha", "a", "b")
MIN_CUSTOMERS = 50
MIN_REPEAT_BUYERS = 10


@dataclass(frozen=True, slots=True)
class BgNbd:
    """Fitted (or given) BG/NBD parameters; ``alpha`` is in the time unit of the data."""

    r: float
    alpha: float
    a: float
    b: float
    info: FitInfo | None = field(default=None, compare=False, repr=False)

    def as_array(self) -> FloatArray:
        return np.array([self.r, self.alpha, self.a, self.b], dtype=np.float64)

    def log_likelihood(
        self, frequency: npt.ArrayLike, recency: npt.ArrayLike, T: npt.ArrayLike
    ) -> FloatArray:
        """Each customer's log-likelihood (the density of their purchase times)."""
        x, tx, age = check_rfm(frequency, recency, T)
        return log_likelihood_terms(self.as_array(), x, tx, age)[0]

    def p_alive(
        self, frequency: npt.ArrayLike, recency: npt.ArrayLike, T: npt.ArrayLike
    ) -> FloatArray:
        """P(still a customer at T | history). Exactly 1 for customers with no repeat purchase:
        in this model a customer can only leave right after a repeat purchase."""
        x, tx, age = check_rfm(frequency, recency, T)
        return _p_alive(self, x, tx, age)

    def expected_purchases(
        self,
        t: npt.ArrayLike,
        frequency: npt.ArrayLike,
        recency: npt.ArrayLike,
        T: npt.ArrayLike,
    ) -> FloatArray:
        """E[purchases in (T, T+t] | x, t_x, T] (FHL 2005 eq. 10); ``t`` broadcasts against
        the customers (pass shape (k, 1) for k horizons)."""
        x, tx, age = check_rfm(frequency, recency, T)
        return _future(self, check_horizon(t), x, age) * _p_alive(self, x, tx, age)

    def expected_purchases_new(self, t: npt.ArrayLike) -> FloatArray:
        """E[repeat purchases in (0, t]] for a customer who has just made a first purchase."""
        zero = np.zeros(1)
        return np.asarray(_future(self, check_horizon(t), zero, zero), dtype=np.float64)


def _p_alive(params: BgNbd, x: FloatArray, tx: FloatArray, age: FloatArray) -> FloatArray:
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    pos = x > 0
    bx1 = np.where(pos, b + x - 1, 1.0)
    log_odds_dead = np.log(a) - np.log(bx1) + (r + x) * (np.log(alpha + age) - np.log(alpha + tx))
    return np.where(pos, expit(-log_odds_dead), 1.0)


SHARED_AT = 20_000  # customers from which _future evaluates each distinct (x, T) once


def _future(params: BgNbd, t: FloatArray, x: FloatArray, age: FloatArray) -> FloatArray:
    """E[purchases in (T, T+t]] for a customer known to be alive at T (see ``_future_of``).

    It depends on the customer through (x, T) only, and a large shop has far fewer distinct
    pairs than customers (purchase counts by days of age): the hypergeometric function, the
    costly part, is then evaluated once per distinct pair and spread to the customers."""
    whole = x.size >= SHARED_AT and bool(np.all(age == np.floor(age)))  # ages in days
    if whole:
        span = int(age.max()) + 1
        keys, index = np.unique(
            x.astype(np.int64) * span + age.astype(np.int64), return_inverse=True
        )
        if keys.size * 2 <= x.size:
            ux, uage = np.divmod(keys, span)
            found = _future_of(params, t, ux.astype(np.float64), uage.astype(np.float64))
            return np.asarray(found[..., index.reshape(-1)], dtype=np.float64)
    return _future_of(params, t, x, age)


def _future_of(params: BgNbd, t: FloatArray, x: FloatArray, age: FloatArray) -> FloatArray:
    """E[purchases in (T, T+t]] for a customer known to be alive at T.

    (a+b+x-1)/(a-1) * [1 - ((alpha+T)/(alpha+T+t))^(r+x) 2F1(r+x, b+x; a+b+x-1; z)] with
    z = t/(alpha+T+t), evaluated through Euler's transformation as
    1 - (1-z)^(a-1) 2F1(a+b-1-r, a-1; a+b+x-1; z), which stays bounded as z -> 1 (long
    horizons); a within 1e-6 of 1 (a removable singularity) is evaluated at 1 + 1e-6.
    """
    r, alpha, b = params.r, params.alpha, params.b
    a = params.a if abs(params.a - 1) > 1e-6 else 1 + 1e-6
    one_minus_z = (alpha + age) / (alpha + age + t)
    z = 1 - one_minus_z
    g = one_minus_z ** (a - 1) * hyp2f1(a + b - 1 - r, a - 1, a + b + x - 1, z)
    return np.asarray((a + b + x - 1) / (a - 1) * (1 - g), dtype=np.float64)


def log_likelihood_terms(
    params: FloatArray,
    x: FloatArray,
    tx: FloatArray,
    age: FloatArray,
    repeats: Repeats | None = None,
) -> tuple[FloatArray, FloatArray]:
    """Per-customer log-likelihood and its gradient (shape (4, n)) in (r, alpha, a, b).

    The special functions depend on the purchase count alone, so they are evaluated once per
    distinct count (``repeats``, computed here when not given) and spread to the customers."""
    r, alpha, a, b = (float(v) for v in params)
    by_x = repeats or Repeats.of(x)
    ux = by_x.values
    head_x = gammaln(r + ux) + gammaln(b + ux) - gammaln(a + b + ux)
    dr_x = digamma(r + ux)
    dab_x = digamma(a + b) - digamma(a + b + ux)
    db_x = digamma(b + ux)
    head, dr, dab, db = (by_x.spread(v) for v in (head_x, dr_x, dab_x, db_x))
    rx = r + x
    pos = x > 0
    bx1 = np.where(pos, b + x - 1, 1.0)
    ln_at = np.log(alpha + age)
    ln_atx = np.log(alpha + tx)
    head = head - gammaln(r) + r * np.log(alpha) + gammaln(a + b) - gammaln(b)
    stay = -rx * ln_at
    with np.errstate(divide="ignore"):
        leave = np.where(pos, np.log(a) - np.log(bx1) - rx * ln_atx, -np.inf)
    tail = np.logaddexp(stay, leave)
    ll = head + tail
    w = np.exp(leave - tail)  # posterior weight of "left after the last purchase"; 0 when x=0
    grad = np.stack(
        [
            dr - digamma(r) + np.log(alpha) - (1 - w) * ln_at - w * ln_atx,
            r / alpha - (1 - w) * rx / (alpha + age) - w * rx / (alpha + tx),
            dab + w / a,
            dab + db - digamma(b) - w / bx1,
        ]
    )
    return np.asarray(ll, dtype=np.float64), np.asarray(grad, dtype=np.float64)


def objective(
    log_params: FloatArray,
    x: FloatArray,
    tx: FloatArray,
    age: FloatArray,
    weights: FloatArray,
    repeats: Repeats | None = None,
) -> tuple[float, FloatArray]:
    """Weighted mean negative log-likelihood and its analytic gradient in ln(r, alpha, a, b)."""
    return mean_objective(
        lambda params: log_likelihood_terms(params, x, tx, age, repeats), log_params, weights
    )


def fit_bgnbd(
    frequency: npt.ArrayLike,
    recency: npt.ArrayLike,
    T: npt.ArrayLike,
    *,
    weights: npt.ArrayLike | None = None,
    min_customers: int = MIN_CUSTOMERS,
    min_repeat_buyers: int = MIN_REPEAT_BUYERS,
) -> BgNbd:
    """Maximum-likelihood BG/NBD parameters for these customers.

    ``weights`` (optional) says how many customers each row stands for. Raises
    ``InsufficientHistory`` below ``min_customers`` customers or ``min_repeat_buyers`` customers
    with a repeat purchase (with none, purchase rate and dropout cannot be told apart), and
    ``ConvergenceFailure`` when no proper maximum is found.
    """
    clock = timer()
    g = Grouped.of(
        "BG/NBD",
        frequency,
        recency,
        T,
        weights,
        min_customers=min_customers,
        min_repeat_buyers=min_repeat_buyers,
    )
    gx, gtx, gage, gw = g.x, g.tx, g.age, g.weights
    sx, stx, sage = g.scaled()
    repeats = Repeats.of(gx)

    def f(theta: FloatArray) -> tuple[float, FloatArray]:
        return objective(theta, sx, stx, sage, gw, repeats)

    theta, iterations = minimise(f, np.zeros(4), NAMES, model="BG/NBD")
    theta[1] += np.log(g.scale)  # alpha back in the caller's unit
    hess = hessian_from_gradient(lambda th: objective(th, gx, gtx, gage, gw, repeats), theta)
    fitted, info = fitted_info(
        "BG/NBD",
        NAMES,
        theta,
        hess,
        gw,
        lambda params: log_likelihood_terms(params, gx, gtx, gage, repeats)[0],
        iterations=iterations,
        clock=clock,
        gradient="analytic",
    )
    r, alpha, a, b = (float(v) for v in fitted)
    return BgNbd(r=r, alpha=alpha, a=a, b=b, info=info)


def simulate_bgnbd(
    params: BgNbd, T: npt.ArrayLike, rng: np.random.Generator
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(frequency, recency, T) drawn from the BG/NBD process, one customer per value of ``T``.

    Each customer draws lambda and p, the number of repeat purchases they would ever make
    (geometric: they leave after the k-th with probability p), and the Poisson arrivals in
    (0, T]; ``x`` is the smaller of the two counts and ``t_x`` the x-th arrival time (an order
    statistic of uniforms, T * Beta(x, n - x + 1)). For tests and benchmarks.
    """
    age = as_float("T", T)
    n = len(age)
    lam = rng.gamma(params.r, 1 / params.alpha, n)
    p = rng.beta(params.a, params.b, n)
    lifetime_purchases = rng.geometric(p)
    arrivals = rng.poisson(lam * age)
    x = np.minimum(arrivals, lifetime_purchases)
    tx = np.zeros(n)
    some = x > 0
    tx[some] = age[some] * rng.beta(x[some], arrivals[some] - x[some] + 1)
    return x.astype(np.float64), tx, age

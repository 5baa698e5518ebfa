"""The Gamma-Gamma spend model (Fader & Hardie, "The Gamma-Gamma Model of Monetary Value", 2013).

A customer's transactions are Gamma(p, nu) in value, with nu ~ Gamma(q, v) across customers, so
a customer's mean transaction value is p/nu and the population mean is p v / (q - 1). Given x
repeat transactions of mean value m, the density of m is

    f(m | p, q, v, x) = G(px+q) / (G(px) G(q)) * v^q m^(px-1) x^(px) / (v + m x)^(px+q)

and the conditional expectation of the customer's mean value is the credibility-weighted blend
(v + m x) p / (p x + q - 1) of the population mean and their own mean.

Zero and negative amounts: the model is defined for positive values only. The fit uses the
customers with ``frequency > 0`` and ``monetary_value > 0``; customers whose mean repeat value is
<= 0 (refunds, free orders) are left out of it (``SpendFitInfo.excluded`` counts them), and
``expected_spend`` gives them, like customers without a repeat purchase, the population mean.
The model assumes spend is independent of purchase frequency; check that before relying on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy.special import digamma, gammaln

from consentry.analytics.clv_base import (
    ConvergenceFailure,
    FitInfo,
    FloatArray,
    InsufficientHistory,
    Repeats,
    as_float,
    check_weights,
    fitted_info,
    hessian_from_gradient,
    mean_objective,
    minimise,
    timer,
)

NAMES = ("p", "q", "v")
MIN_REPEAT_BUYERS = 20


@dataclass(frozen=True, slots=True)
class GammaGamma:
    """Fitted (or given) Gamma-Gamma parameters; ``v`` is in money units.

    ``excluded`` is how many repeat buyers were left out of the fit for a mean repeat value <= 0.
    """

    p: float
    q: float
    v: float
    info: FitInfo | None = field(default=None, compare=False, repr=False)
    excluded: int = field(default=0, compare=False)

    def as_array(self) -> FloatArray:
        return np.array([self.p, self.q, self.v], dtype=np.float64)

    @property
    def mean_spend(self) -> float:
        """The population mean transaction value p v / (q - 1) (infinite when q <= 1)."""
        return self.p * self.v / (self.q - 1) if self.q > 1 else float("inf")

    def log_likelihood(self, frequency: npt.ArrayLike, monetary_value: npt.ArrayLike) -> FloatArray:
        """Each repeat buyer's log-density of their mean repeat value (x > 0 and m > 0 only)."""
        x = as_float("frequency", frequency)
        m = as_float("monetary_value", monetary_value)
        if np.any(x <= 0) or np.any(m <= 0):
            raise ValueError("the spend likelihood is defined for frequency > 0 and value > 0")
        return log_likelihood_terms(np.array([self.p, self.q, self.v]), x, m)[0]

    def expected_spend(self, frequency: npt.ArrayLike, monetary_value: npt.ArrayLike) -> FloatArray:
        """E[mean transaction value | x, m] per customer: (v + m x) p / (p x + q - 1) for
        repeat buyers with m > 0; the population mean for everyone else."""
        x = as_float("frequency", frequency)
        m = as_float("monetary_value", monetary_value)
        x, m = np.broadcast_arrays(x, m)
        usable = (x > 0) & (m > 0)
        xs = np.where(usable, x, 1.0)
        ms = np.where(usable, m, 0.0)
        conditional = (self.v + ms * xs) * self.p / (self.p * xs + self.q - 1)
        return np.asarray(np.where(usable, conditional, self.mean_spend), dtype=np.float64)


def log_likelihood_terms(
    params: FloatArray, x: FloatArray, m: FloatArray, repeats: Repeats | None = None
) -> tuple[FloatArray, FloatArray]:
    """Per-customer log-density of the mean value and its gradient (shape (3, n)) in (p, q, v).
    Count-only special functions are evaluated once per distinct count (``repeats``)."""
    p, q, v = (float(t) for t in params)
    by_x = repeats or Repeats.of(x)
    upx = p * by_x.values
    head_x = gammaln(upx + q) - gammaln(upx) + upx * np.log(by_x.values)
    dp_x = digamma(upx + q) - digamma(upx) + np.log(by_x.values)
    dq_x = digamma(upx + q)
    head, dp, dq = (by_x.spread(t) for t in (head_x, dp_x, dq_x))
    px = p * x
    ln_vmx = np.log(v + m * x)
    ln_m = np.log(m)
    ll = head - gammaln(q) + q * np.log(v) + (px - 1) * ln_m - (px + q) * ln_vmx
    grad = np.stack(
        [
            x * (dp + ln_m - ln_vmx),
            dq - digamma(q) + np.log(v) - ln_vmx,
            q / v - (px + q) / (v + m * x),
        ]
    )
    return np.asarray(ll, dtype=np.float64), np.asarray(grad, dtype=np.float64)


def objective(
    log_params: FloatArray,
    x: FloatArray,
    m: FloatArray,
    weights: FloatArray,
    repeats: Repeats | None = None,
) -> tuple[float, FloatArray]:
    """Weighted mean negative log-likelihood and its analytic gradient in ln(p, q, v)."""
    return mean_objective(
        lambda params: log_likelihood_terms(params, x, m, repeats), log_params, weights
    )


def fit_gamma_gamma(
    frequency: npt.ArrayLike,
    monetary_value: npt.ArrayLike,
    *,
    weights: npt.ArrayLike | None = None,
    min_repeat_buyers: int = MIN_REPEAT_BUYERS,
) -> GammaGamma:
    """Maximum-likelihood Gamma-Gamma parameters from every customer's summary.

    Pass all customers: those without a repeat purchase and those whose mean repeat value is <= 0
    are left out of the fit (see the module docstring). Raises ``InsufficientHistory`` when
    fewer than ``min_repeat_buyers`` remain, and ``ConvergenceFailure`` when no maximum is found
    or when q <= 1 (values so heavy-tailed that the mean spend is infinite).
    """
    clock = timer()
    x = as_float("frequency", frequency)
    m = as_float("monetary_value", monetary_value)
    if len(x) != len(m):
        raise ValueError(f"frequency has {len(x)} values, monetary_value {len(m)}")
    w = check_weights(weights, len(x))
    ww = np.ones(len(x)) if w is None else w
    repeat = (x > 0) & (ww > 0)
    usable = repeat & (m > 0)
    excluded = int(round(float(np.sum(ww[repeat & ~usable]))))
    count = float(np.sum(ww[usable]))
    if count < min_repeat_buyers:
        detail = f" ({excluded} more had a mean repeat value <= 0)" if excluded else ""
        raise InsufficientHistory(
            f"the spend model needs at least {min_repeat_buyers} repeat buyers with a positive "
            f"mean repeat value, got {count:g}{detail}"
        )
    ux, um, uw = x[usable], m[usable], ww[usable]
    scale = float(np.average(um, weights=uw))  # money rescaled to mean 1 for the optimiser
    sm = um / scale

    repeats = Repeats.of(ux)

    def f(theta: FloatArray) -> tuple[float, FloatArray]:
        return objective(theta, ux, sm, uw, repeats)

    theta, iterations = minimise(f, np.zeros(3), NAMES, model="Gamma-Gamma")
    theta[2] += np.log(scale)
    q = float(np.exp(theta[1]))
    if q <= 1:
        raise ConvergenceFailure(
            f"Gamma-Gamma: q = {q:.3g} <= 1, so the spend distribution has no finite "
            "mean; the values are too heavy-tailed for this model"
        )
    hess = hessian_from_gradient(lambda th: objective(th, ux, um, uw, repeats), theta)
    fitted, info = fitted_info(
        "Gamma-Gamma",
        NAMES,
        theta,
        hess,
        uw,
        lambda params: log_likelihood_terms(params, ux, um, repeats)[0],
        iterations=iterations,
        clock=clock,
        gradient="analytic",
    )
    p, q, v = (float(t) for t in fitted)
    return GammaGamma(p=p, q=q, v=v, info=info, excluded=excluded)


def simulate_gamma_gamma(
    params: GammaGamma, frequency: npt.ArrayLike, rng: np.random.Generator
) -> FloatArray:
    """Mean repeat values drawn from the model for customers with these (positive) frequencies:
    nu ~ Gamma(q, rate v), and the mean of x Gamma(p, rate nu) values ~ Gamma(p x, rate nu x)."""
    x = as_float("frequency", frequency)
    nu = rng.gamma(params.q, 1 / params.v, len(x))
    return np.asarray(rng.gamma(params.p * x, 1 / (nu * x)), dtype=np.float64)

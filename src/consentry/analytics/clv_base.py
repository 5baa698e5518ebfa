"""What the customer-lifetime-value models share: errors, array checks, grouping, the optimiser.

Every model is fitted the same way: identical ``(frequency, recency, T)`` rows are grouped and
weighted, times are rescaled so the observation windows average 1 (the optimiser then sees
parameters of order one whatever the unit), and the negative mean log-likelihood is minimised by
L-BFGS-B over the logarithms of the parameters (all of them are positive). A fit that stops
without a small gradient, or whose parameters run to the edge of the search box, raises
``ConvergenceFailure`` rather than handing back numbers that mean nothing. Standard errors come
from the observed information (the Hessian of the log-likelihood at the optimum).

Pure: numpy and scipy only, no I/O.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize

from consentry.errors import Conflict

FloatArray = npt.NDArray[np.float64]
TimeUnit = Literal["days", "weeks"]

DAYS_PER_UNIT: dict[str, float] = {"days": 1.0, "weeks": 7.0}

# ln(parameter) is searched in [-LOG_BOUND, LOG_BOUND] after time and money are rescaled to
# order one (real data land within about e^+-6): a parameter that reaches the edge is not
# identified by the data (e.g. a dropout nobody exhibits, or no difference between customers).
LOG_BOUND = 10.0
# What the optimiser is told where the likelihood is not finite.
REFUSED = 1e100
# The largest |d mean-log-likelihood / d ln(parameter)| accepted as "at the optimum".
GRADIENT_TOLERANCE = 1e-4

Objective = Callable[[FloatArray], tuple[float, FloatArray]]


class ModelFitError(Conflict):
    """A lifetime-value model cannot be fitted on this data (a 409: the data, not the request)."""

    code = "model_fit_error"


class InsufficientHistory(ModelFitError):
    """Too little purchase history to fit the model; ``reason`` says what is missing."""

    code = "insufficient_history"

    def __init__(self, reason: str) -> None:
        super().__init__(f"insufficient purchase history: {reason}")
        self.reason = reason


class ConvergenceFailure(ModelFitError):
    """The optimiser found no proper maximum of the likelihood; ``reason`` says how it failed."""

    code = "convergence_failure"

    def __init__(self, reason: str) -> None:
        super().__init__(f"the model did not converge: {reason}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class FitInfo:
    """How a fit went.

    ``log_likelihood`` is the total over customers in the caller's time unit; ``std_errors`` maps
    each parameter to its asymptotic standard error (from the inverse observed information; a
    fit whose information matrix is not positive definite raises ``ConvergenceFailure``; a
    standard error as large as its parameter means the data pin it down poorly, though the
    predictions may still be sound); ``gradient`` says whether the optimiser had the analytic
    gradient or central differences.
    """

    log_likelihood: float
    n_customers: int
    n_rows: int
    iterations: int
    seconds: float
    std_errors: dict[str, float]
    gradient: Literal["analytic", "numerical"]

    @classmethod
    def of(
        cls,
        terms: FloatArray,
        weights: FloatArray,
        *,
        iterations: int,
        seconds: float,
        std_errors: dict[str, float],
        gradient: Literal["analytic", "numerical"],
    ) -> FitInfo:
        """The info of a fit from its per-row log-likelihood terms and the rows' weights."""
        return cls(
            log_likelihood=float(np.dot(weights, terms)),
            n_customers=int(round(float(np.sum(weights)))),
            n_rows=len(terms),
            iterations=iterations,
            seconds=seconds,
            std_errors=std_errors,
            gradient=gradient,
        )


@dataclass(frozen=True, slots=True)
class Grouped:
    """Checked purchase histories, identical rows grouped with their weights, and the time
    scale the optimiser works in (``T`` divided by ``scale`` is of order 1)."""

    x: FloatArray
    tx: FloatArray
    age: FloatArray
    weights: FloatArray
    scale: float

    @classmethod
    def of(
        cls,
        model: str,
        frequency: npt.ArrayLike,
        recency: npt.ArrayLike,
        T: npt.ArrayLike,
        weights: npt.ArrayLike | None,
        *,
        min_customers: int,
        min_repeat_buyers: int,
    ) -> Grouped:
        """Check the histories (``check_rfm``, ``check_history``) and group them."""
        x, tx, age = check_rfm(frequency, recency, T)
        w = check_weights(weights, len(x))
        check_history(model, x, w, min_customers=min_customers, min_repeat_buyers=min_repeat_buyers)
        (gx, gtx, gage), gw = group_rows((x, tx, age), w)
        return cls(gx, gtx, gage, gw, time_scale(gage, gw))

    def scaled(self) -> tuple[FloatArray, FloatArray, FloatArray]:
        """``(x, t_x, T)`` with the times divided by ``scale``: what the optimiser sees."""
        return self.x, self.tx / self.scale, self.age / self.scale


@dataclass(frozen=True, slots=True)
class Repeats:
    """The distinct purchase counts of a set of customers and, per customer, which one is
    theirs: a likelihood evaluates its count-only special functions once per distinct count
    (tens of values) rather than once per customer (millions)."""

    values: FloatArray
    index: npt.NDArray[np.intp]

    @classmethod
    def of(cls, x: FloatArray) -> Repeats:
        values, index = np.unique(x, return_inverse=True)
        return cls(np.asarray(values, dtype=np.float64), index.reshape(-1))

    def spread(self, per_value: FloatArray) -> FloatArray:
        """A per-count array as a per-customer one."""
        return np.asarray(per_value[self.index], dtype=np.float64)


def as_float(name: str, values: npt.ArrayLike) -> FloatArray:
    """``values`` as a 1-d float64 array, refusing NaN and infinities."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 0:
        array = array.reshape(1)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} holds NaN or infinite values")
    return array


def check_rfm(
    frequency: npt.ArrayLike, recency: npt.ArrayLike, T: npt.ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Validated float arrays of repeat purchases, recency and age (same length, 0 <= t_x <= T)."""
    x = as_float("frequency", frequency)
    tx = as_float("recency", recency)
    age = as_float("T", T)
    x, tx, age = np.broadcast_arrays(x, tx, age)
    if np.any(x < 0) or np.any(x != np.round(x)):
        raise ValueError("frequency must hold non-negative whole numbers")
    if np.any(tx < 0):
        raise ValueError("recency must be non-negative")
    if np.any(tx > age * (1 + 1e-12) + 1e-12):
        raise ValueError("recency cannot exceed T (the last purchase is before the end)")
    if np.any((x == 0) & (tx != 0)):
        raise ValueError("a customer with no repeat purchase has recency 0")
    return x.astype(np.float64), tx.astype(np.float64), np.maximum(age, tx).astype(np.float64)


def group_rows(
    columns: tuple[FloatArray, ...], weights: FloatArray | None
) -> tuple[tuple[FloatArray, ...], FloatArray]:
    """The distinct rows of ``columns`` and the summed weight of each (identical customers)."""
    stacked = np.column_stack(columns)
    unique, inverse = np.unique(stacked, axis=0, return_inverse=True)
    w = np.ones(len(stacked)) if weights is None else weights
    counts = np.bincount(inverse.reshape(-1), weights=w, minlength=len(unique)).astype(np.float64)
    keep = counts > 0
    unique = unique[keep]
    return tuple(np.ascontiguousarray(unique[:, i]) for i in range(unique.shape[1])), counts[keep]


def check_horizon(t: npt.ArrayLike) -> FloatArray:
    """The horizon(s) ``t`` of a prediction as floats, refusing negative ones."""
    horizon = np.asarray(t, dtype=np.float64)
    if np.any(horizon < 0):
        raise ValueError("the horizon t must be non-negative")
    return horizon


def check_weights(weights: npt.ArrayLike | None, n: int) -> FloatArray | None:
    """Non-negative weights of length ``n`` (how many customers each row stands for), or None."""
    if weights is None:
        return None
    w = as_float("weights", weights)
    if len(w) != n:
        raise ValueError(f"weights has {len(w)} values for {n} rows")
    if np.any(w < 0):
        raise ValueError("weights must be non-negative")
    return w


def check_history(
    model: str,
    x: FloatArray,
    weights: FloatArray | None,
    *,
    min_customers: int,
    min_repeat_buyers: int,
) -> None:
    """Raise ``InsufficientHistory`` unless there are enough customers and repeat buyers."""
    w = np.ones(len(x)) if weights is None else weights
    customers = float(np.sum(w))
    repeaters = float(np.sum(w[x > 0]))
    if customers < min_customers:
        raise InsufficientHistory(
            f"{model} needs at least {min_customers} customers, got {customers:g}"
        )
    if repeaters == 0:
        raise InsufficientHistory(
            f"no customer has a repeat purchase yet: {model} cannot tell how often customers "
            "buy from how soon they leave"
        )
    if repeaters < min_repeat_buyers:
        raise InsufficientHistory(
            f"{model} needs at least {min_repeat_buyers} customers with a repeat purchase, "
            f"got {repeaters:g}"
        )


def time_scale(T: FloatArray, weights: FloatArray) -> float:
    """The factor that brings the mean observation window to 1 (1 if every window is empty)."""
    mean = float(np.sum(T * weights) / np.sum(weights))
    return mean if mean > 0 else 1.0


def negative_mean(ll: FloatArray, weights: FloatArray) -> float:
    """The weighted mean of the negated per-row log-likelihood terms ``ll``."""
    return -float(np.dot(weights, ll)) / float(np.sum(weights))


def mean_objective(
    terms: Callable[[FloatArray], tuple[FloatArray, FloatArray]],
    log_params: FloatArray,
    weights: FloatArray,
) -> tuple[float, FloatArray]:
    """The weighted mean negative log-likelihood and its analytic gradient in ln-parameters.

    ``terms`` maps the parameters to the per-row log-likelihood and its gradient in the
    parameters (shape (k, n)); the chain rule (d/d ln p = p d/dp) carries it to ln-space.
    """
    params = np.exp(np.asarray(log_params, dtype=np.float64))
    ll, grad = terms(params)
    total = float(np.sum(weights))
    gradient = -(grad @ weights) * params / total
    return negative_mean(ll, weights), np.asarray(gradient, dtype=np.float64)


def central_gradient(
    f: Callable[[FloatArray], float], theta: FloatArray, step: float = 1e-5
) -> FloatArray:
    """The gradient of ``f`` at ``theta`` by central differences (steps relative to ln-space)."""
    grad = np.empty_like(theta)
    for i in range(len(theta)):
        up = theta.copy()
        down = theta.copy()
        up[i] += step
        down[i] -= step
        grad[i] = (f(up) - f(down)) / (2 * step)
    return grad


def hessian_from_gradient(
    objective: Objective, theta: FloatArray, step: float = 1e-4
) -> FloatArray:
    """The symmetrised Jacobian of the objective's gradient (central differences)."""
    k = len(theta)
    hess = np.empty((k, k))
    with np.errstate(all="ignore"):
        for i in range(k):
            up = theta.copy()
            down = theta.copy()
            up[i] += step
            down[i] -= step
            hess[:, i] = (objective(up)[1] - objective(down)[1]) / (2 * step)
    return (hess + hess.T) / 2


def hessian_from_values(
    f: Callable[[FloatArray], float], theta: FloatArray, step: float = 1e-3
) -> FloatArray:
    """The Hessian of ``f`` by central differences of its values (1 + 2k^2 evaluations)."""
    k = len(theta)
    hess = np.empty((k, k))
    with np.errstate(all="ignore"):
        return _hessian_from_values(f, theta, step, hess)


def _hessian_from_values(
    f: Callable[[FloatArray], float], theta: FloatArray, step: float, hess: FloatArray
) -> FloatArray:
    k = len(theta)
    centre = f(theta)
    eye = np.eye(k) * step
    for i in range(k):
        up, down = f(theta + eye[i]), f(theta - eye[i])
        hess[i, i] = (up - 2 * centre + down) / step**2
        for j in range(i):
            hess[i, j] = hess[j, i] = (
                f(theta + eye[i] + eye[j])
                - f(theta + eye[i] - eye[j])
                - f(theta - eye[i] + eye[j])
                + f(theta - eye[i] - eye[j])
            ) / (4 * step**2)
    return hess


def std_errors(
    names: tuple[str, ...], theta: FloatArray, hessian_of_mean: FloatArray, total_weight: float
) -> dict[str, float]:
    """Standard errors of the natural parameters from the Hessian of the mean negative log-lik.

    The covariance of ln(params) is the inverse of the total observed information; the delta
    method carries it to the parameters themselves (se(p) = p * se(ln p)).
    """
    info = hessian_of_mean * total_weight
    if not np.all(np.isfinite(info)):
        return {name: float("nan") for name in names}
    try:
        np.linalg.cholesky(info)
        cov = np.linalg.inv(info)
    except np.linalg.LinAlgError:
        return {name: float("nan") for name in names}
    se_log = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    return {name: float(np.exp(t) * s) for name, t, s in zip(names, theta, se_log, strict=True)}


def minimise(
    objective: Objective,
    theta0: FloatArray,
    names: tuple[str, ...],
    *,
    model: str,
    numerical: bool = False,
) -> tuple[FloatArray, int]:
    """Minimise ``objective`` (value and gradient in ln-parameters) with L-BFGS-B.

    Two attempts: the second restarts from where the first stopped (L-BFGS-B sometimes ends its
    line search early near the optimum). Points where the likelihood is not finite are refused
    to the optimiser (a huge value), so it backs off them. Raises ``ConvergenceFailure`` when
    neither attempt reaches a small gradient, when the value is not finite, or when a parameter
    sits on the edge of the box.
    """
    tolerance = GRADIENT_TOLERANCE * (10 if numerical else 1)

    def guarded(theta: FloatArray) -> tuple[float, FloatArray]:
        with np.errstate(all="ignore"):
            value, grad = objective(theta)
        if not (np.isfinite(value) and np.all(np.isfinite(grad))):
            return REFUSED, np.zeros_like(theta)
        return value, grad

    bounds = [(-LOG_BOUND, LOG_BOUND)] * len(theta0)
    theta = theta0
    iterations = 0
    value, grad = guarded(theta)
    for _ in range(2):
        result = minimize(
            guarded,
            theta,
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options={"maxiter": 2000, "ftol": 1e-15, "gtol": 1e-9, "maxls": 50},
        )
        theta = np.asarray(result.x, dtype=np.float64)
        iterations += int(result.nit)
        value, grad = guarded(theta)
        if value < REFUSED and np.max(np.abs(grad)) < tolerance:
            break
    if not value < REFUSED:
        raise ConvergenceFailure(f"{model}: the log-likelihood is not finite at the last point")
    at_edge = [n for n, t in zip(names, theta, strict=True) if abs(t) >= LOG_BOUND - 1e-3]
    if at_edge:
        raise ConvergenceFailure(
            f"{model}: {', '.join(at_edge)} ran to the edge of the search range; the data do "
            "not identify the model (no sign of customers leaving, or of customers differing?)"
        )
    if not np.max(np.abs(grad)) < tolerance:
        raise ConvergenceFailure(
            f"{model}: stopped after {iterations} iterations with gradient "
            f"{np.max(np.abs(grad)):.2g}, not at a maximum: the likelihood still rises towards a "
            "limit the model only approaches (e.g. no variation between customers)"
        )
    return theta, iterations


def require_identified(model: str, errors: dict[str, float]) -> None:
    """Raise ``ConvergenceFailure`` unless the information matrix was positive definite.

    A flat or saddle-shaped likelihood at the end point means the data cannot pin the parameters
    down (typically a limit the model only approaches, such as no heterogeneity at all).
    """
    flat = [name for name, se in errors.items() if not np.isfinite(se)]
    if flat:
        raise ConvergenceFailure(
            f"{model}: the likelihood is flat at the end point (in {', '.join(flat)}): the data "
            "do not identify the parameters"
        )


def fitted_info(
    model: str,
    names: tuple[str, ...],
    theta: FloatArray,
    hessian: FloatArray,
    weights: FloatArray,
    log_likelihood: Callable[[FloatArray], FloatArray],
    *,
    iterations: int,
    clock: Callable[[], float],
    gradient: Literal["analytic", "numerical"],
) -> tuple[FloatArray, FitInfo]:
    """The fitted parameters (``exp(theta)``, ``theta`` in the caller's units) and the fit's info.

    The standard errors come from ``hessian`` (of the mean negative log-likelihood in
    ln-parameters); ``require_identified`` refuses a fit they show is not pinned down.
    ``log_likelihood`` gives the per-row terms at the fitted parameters; ``clock`` the seconds.
    """
    errors = std_errors(names, theta, hessian, float(np.sum(weights)))
    require_identified(model, errors)
    fitted = np.exp(theta)
    info = FitInfo.of(
        log_likelihood(fitted),
        weights,
        iterations=iterations,
        seconds=clock(),
        std_errors=errors,
        gradient=gradient,
    )
    return fitted, info


def timer() -> Callable[[], float]:
    """A stopwatch: call the returned function for the seconds since this call."""
    start = time.perf_counter()
    return lambda: time.perf_counter() - start

"""BG/NBD, Pareto/NBD, Gamma-Gamma, CLV and churn risk, on data simulated from the models.

Recovery tolerances: every fit reports asymptotic standard errors (inverse observed
information); an estimate within 4 standard errors of the truth fails by chance with probability
about 6e-5 per parameter, and the seeds are fixed, so the tests are deterministic anyway. The
standard errors themselves are checked to be small enough that the test means something.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.optimize import check_grad

from consentry.analytics import clv_bgnbd, clv_pareto, clv_spend
from consentry.analytics.clv import (
    BgNbd,
    ConvergenceFailure,
    GammaGamma,
    InsufficientHistory,
    ModelFitError,
    ParetoNbd,
    churn_risk,
    customer_lifetime_value,
    fit_bgnbd,
    fit_gamma_gamma,
    fit_pareto_nbd,
    simulate_bgnbd,
    simulate_gamma_gamma,
    simulate_pareto_nbd,
)
from consentry.errors import Conflict, ConsentryError

N = 5000
BG_TRUE = BgNbd(r=0.5, alpha=6.0, a=0.8, b=2.5)
PARETO_TRUE = ParetoNbd(r=0.6, alpha=8.0, s=0.7, beta=10.0)
GG_TRUE = GammaGamma(p=6.0, q=4.0, v=15.0)
# The published CDNOW fit (Fader, Hardie & Lee 2005) and the paper's worked customer:
# x=2, t_x=30.43, T=38.86 weeks expects 1.226 purchases in the next 39 weeks.
CDNOW_BG = BgNbd(r=0.2425929, alpha=4.4135316, a=0.7928861, b=2.4257535)
CDNOW_PARETO = ParetoNbd(r=0.5532755, alpha=10.577612, s=0.6062136, beta=11.667911)


def cohorts(rng: np.random.Generator, n: int = N) -> np.ndarray:
    """Customers acquired over 13 weeks, observed for 39 more: T in whole days, in weeks."""
    return (273 + rng.integers(0, 91, n)) / 7.0


@pytest.fixture(scope="module")
def bg_data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(20050101)
    return simulate_bgnbd(BG_TRUE, cohorts(rng), rng)


@pytest.fixture(scope="module")
def pareto_data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(19870101)
    return simulate_pareto_nbd(PARETO_TRUE, cohorts(rng), rng)


@pytest.fixture(scope="module")
def bg_fit(bg_data: tuple[np.ndarray, np.ndarray, np.ndarray]) -> BgNbd:
    return fit_bgnbd(*bg_data)


@pytest.fixture(scope="module")
def pareto_fit(pareto_data: tuple[np.ndarray, np.ndarray, np.ndarray]) -> ParetoNbd:
    return fit_pareto_nbd(*pareto_data)


def assert_recovered(fitted: Any, truth: Any, names: tuple[str, ...]) -> None:
    info = fitted.info
    assert info is not None
    for name in names:
        est, true, se = getattr(fitted, name), getattr(truth, name), info.std_errors[name]
        assert np.isfinite(se) and 0 < se < 0.5 * true, (name, se)
        assert abs(est - true) < 4 * se, (name, est, true, se)


# --- BG/NBD ----------------------------------------------------------------------------------


def test_bgnbd_recovers_simulated_parameters(bg_fit: BgNbd) -> None:
    assert_recovered(bg_fit, BG_TRUE, ("r", "alpha", "a", "b"))
    assert bg_fit.info is not None
    assert bg_fit.info.gradient == "analytic"
    assert bg_fit.info.n_customers == N
    assert bg_fit.info.n_rows < N  # identical rows (one-time buyers of a cohort) were grouped


def test_bgnbd_analytic_gradient_equals_finite_differences(
    bg_data: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    x, tx, age = (a[:800] for a in bg_data)
    weights = np.random.default_rng(1).integers(1, 4, len(x)).astype(float)
    rng = np.random.default_rng(7)
    for _ in range(5):
        theta = rng.uniform(-1.5, 1.5, 4)
        err = check_grad(
            lambda th: clv_bgnbd.objective(th, x, tx, age, weights)[0],
            lambda th: clv_bgnbd.objective(th, x, tx, age, weights)[1],
            theta,
            epsilon=1e-7,
        )
        scale = np.linalg.norm(clv_bgnbd.objective(theta, x, tx, age, weights)[1])
        assert err < 1e-5 * max(1.0, scale), (theta, err)


def test_bgnbd_weights_equal_repeated_rows(
    bg_data: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    x, tx, age = (a[:1500] for a in bg_data)
    weights = np.random.default_rng(2).integers(0, 4, len(x)).astype(float)
    repeated = [np.repeat(a, weights.astype(int)) for a in (x, tx, age)]
    assert BG_TRUE.log_likelihood(*repeated).sum() == pytest.approx(
        np.dot(weights, BG_TRUE.log_likelihood(x, tx, age))
    )
    one = fit_bgnbd(x, tx, age, weights=weights)
    other = fit_bgnbd(*repeated)
    assert one.info is not None and other.info is not None
    assert one.info.n_customers == other.info.n_customers == weights.sum()
    np.testing.assert_allclose(one.as_array(), other.as_array(), rtol=1e-4)


def test_bgnbd_reproduces_the_published_worked_example() -> None:
    assert CDNOW_BG.expected_purchases(39, 2, 30.43, 38.86)[0] == pytest.approx(1.2259, abs=1e-4)
    assert CDNOW_BG.p_alive(2, 30.43, 38.86)[0] == pytest.approx(0.7266, abs=1e-4)


def test_bgnbd_p_alive_is_one_without_repeat_purchases_and_falls_with_silence() -> None:
    m = CDNOW_BG
    assert np.all(m.p_alive(np.zeros(3), np.zeros(3), [1.0, 20.0, 300.0]) == 1.0)
    alive = m.p_alive(np.full(4, 3.0), [5.0, 10.0, 20.0, 30.0], np.full(4, 30.0))
    assert np.all(np.diff(alive) > 0)  # a more recent last purchase: more likely alive
    assert np.all((alive > 0) & (alive < 1))


def test_bgnbd_expected_purchases_grow_with_the_horizon_and_start_at_zero() -> None:
    t = np.linspace(0, 400, 81)[:, None]
    x, tx, age = np.array([0.0, 1, 5, 12]), np.array([0.0, 3, 30, 37]), np.full(4, 38.86)
    for model in (CDNOW_BG, BG_TRUE, BgNbd(r=0.3, alpha=2.0, a=1.5, b=0.9)):
        e = model.expected_purchases(t, x, tx, age)
        assert e.shape == (81, 4)
        assert np.all(e[0] == 0)
        assert np.all(np.diff(e, axis=0) > 0)
        new = model.expected_purchases_new(t[:, 0])
        np.testing.assert_allclose(new, model.expected_purchases(t[:, 0], 0, 0, 0), rtol=1e-12)


def test_bgnbd_a_equal_to_one_is_continuous() -> None:
    near = [
        BgNbd(r=0.5, alpha=5.0, a=a, b=2.0).expected_purchases(30, 2, 10, 20)[0]
        for a in (
            1 - 1e-4,
            1.0,
            1 + 1e-4,
        )
    ]
    assert near[1] == pytest.approx((near[0] + near[2]) / 2, rel=1e-3)


def test_bgnbd_new_customer_expectation_matches_simulation() -> None:
    rng = np.random.default_rng(3)
    x, _, _ = simulate_bgnbd(BG_TRUE, np.full(200_000, 20.0), rng)
    expected = BG_TRUE.expected_purchases_new(20.0)[0]
    assert x.mean() == pytest.approx(expected, abs=4 * x.std() / np.sqrt(len(x)))


# --- Pareto/NBD ------------------------------------------------------------------------------


def test_pareto_recovers_simulated_parameters(pareto_fit: ParetoNbd) -> None:
    assert_recovered(pareto_fit, PARETO_TRUE, ("r", "alpha", "s", "beta"))
    assert pareto_fit.info is not None and pareto_fit.info.gradient == "numerical"


@pytest.mark.parametrize("params", [(0.55, 10.6, 0.61, 11.7), (0.9, 3.0, 1.4, 25.0)])
def test_pareto_likelihood_equals_the_integral_it_closes(params: tuple[float, ...]) -> None:
    """L = G(r+x) a^r b^s / G(r) [(a+T)^-(r+x) (b+T)^-s + s int_tx^T (a+u)^-(r+x) (b+u)^-(s+1)]
    for alpha >= beta and alpha < beta alike (the 2F1 closed form takes different branches)."""
    from scipy.special import gammaln

    r, alpha, s, beta = params
    model = ParetoNbd(r=r, alpha=alpha, s=s, beta=beta)
    for x, tx, age in [(0, 0.0, 38.86), (2, 30.43, 38.86), (14, 5.0, 52.0), (40, 70.0, 70.0)]:
        integral = quad(lambda u, x=x: (alpha + u) ** -(r + x) * (beta + u) ** -(s + 1), tx, age)
        direct = np.log((alpha + age) ** -(r + x) * (beta + age) ** -s + s * integral[0]) + (
            gammaln(r + x) - gammaln(r) + r * np.log(alpha) + s * np.log(beta)
        )
        assert model.log_likelihood(x, tx, age)[0] == pytest.approx(direct, rel=1e-8, abs=1e-8)


def test_pareto_reproduces_reference_values() -> None:
    # CDNOW parameters (Fader & Hardie); values from the lifetimes 0.11.3 reference in the bench
    assert CDNOW_PARETO.expected_purchases(39, 2, 30.43, 38.86)[0] == pytest.approx(
        1.4551, abs=1e-4
    )
    assert CDNOW_PARETO.p_alive(2, 30.43, 38.86)[0] == pytest.approx(0.8691, abs=1e-4)


def test_pareto_numerical_gradient_is_accurate(
    pareto_data: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    x, tx, age = (a[:500] for a in pareto_data)
    w = np.ones(len(x))
    theta = np.log(PARETO_TRUE.as_array()) + 0.3
    grad = clv_pareto.objective(theta, x, tx, age, w)[1]
    f = [
        clv_pareto.negative_mean_log_likelihood(theta + h * np.eye(4)[i], x, tx, age, w)
        for i in range(4)
        for h in (1e-3, -1e-3)
    ]
    coarse = np.array([(f[2 * i] - f[2 * i + 1]) / 2e-3 for i in range(4)])
    np.testing.assert_allclose(grad, coarse, rtol=1e-4, atol=1e-7)


def test_pareto_predictions_properties() -> None:
    m = CDNOW_PARETO
    t = np.linspace(0, 300, 61)[:, None]
    x, tx, age = np.array([0.0, 1, 6]), np.array([0.0, 10, 38]), np.full(3, 38.86)
    e = m.expected_purchases(t, x, tx, age)
    assert np.all(e[0] == 0) and np.all(np.diff(e, axis=0) > 0)
    alive = m.p_alive(np.zeros(3), np.zeros(3), [1.0, 10.0, 50.0])
    assert np.all(np.diff(alive) < 0) and np.all(alive <= 1)  # silence erodes P(alive) at x=0
    s_one = ParetoNbd(r=0.5, alpha=5.0, s=1.0, beta=8.0).expected_purchases(20, 2, 10, 20)[0]
    around = [
        ParetoNbd(r=0.5, alpha=5.0, s=s, beta=8.0).expected_purchases(20, 2, 10, 20)[0]
        for s in (1 - 1e-6, 1 + 1e-6)
    ]
    assert s_one == pytest.approx(np.mean(around), rel=1e-5)


def test_pareto_new_customer_expectation_matches_simulation() -> None:
    rng = np.random.default_rng(4)
    x, _, _ = simulate_pareto_nbd(PARETO_TRUE, np.full(200_000, 30.0), rng)
    expected = PARETO_TRUE.expected_purchases_new(30.0)[0]
    assert x.mean() == pytest.approx(expected, abs=4 * x.std() / np.sqrt(len(x)))


# --- Gamma-Gamma -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def spend_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(2013)
    x = 1.0 + rng.poisson(2.0, N)
    return x, simulate_gamma_gamma(GG_TRUE, x, rng)


def test_gamma_gamma_recovers_simulated_parameters(
    spend_data: tuple[np.ndarray, np.ndarray],
) -> None:
    fitted = fit_gamma_gamma(*spend_data)
    assert_recovered(fitted, GG_TRUE, ("p", "q", "v"))


def test_gamma_gamma_gradient_equals_finite_differences(
    spend_data: tuple[np.ndarray, np.ndarray],
) -> None:
    x, m = (a[:1000] for a in spend_data)
    w = np.ones(len(x))
    rng = np.random.default_rng(11)
    for _ in range(5):
        theta = rng.uniform(-1, 2.5, 3)
        err = check_grad(
            lambda th: clv_spend.objective(th, x, m / 30, w)[0],
            lambda th: clv_spend.objective(th, x, m / 30, w)[1],
            theta,
            epsilon=1e-7,
        )
        assert err < 1e-5 * max(1.0, np.linalg.norm(clv_spend.objective(theta, x, m / 30, w)[1]))


def test_gamma_gamma_leaves_out_non_positive_values_and_gives_them_the_mean(
    spend_data: tuple[np.ndarray, np.ndarray],
) -> None:
    x, m = spend_data
    x2 = np.r_[x, [3.0, 2.0, 0.0]]
    m2 = np.r_[m, [0.0, -12.0, 0.0]]
    fitted = fit_gamma_gamma(x2, m2)
    assert fitted.excluded == 2
    assert fitted.info is not None and fitted.info.n_customers == N
    np.testing.assert_allclose(fitted.as_array(), fit_gamma_gamma(x, m).as_array(), rtol=1e-6)
    spend = fitted.expected_spend(x2[-3:], m2[-3:])
    np.testing.assert_allclose(spend, fitted.mean_spend)
    one = fitted.expected_spend([1.0, 50.0], [100.0, 100.0])
    assert fitted.mean_spend < one[0] < one[1] < 100.0  # more purchases: more own-mean weight


# --- CLV and churn risk ----------------------------------------------------------------------


def test_clv_is_the_discounted_sum_of_monthly_purchases_times_spend() -> None:
    x, tx, age = np.array([0.0, 2, 7]), np.array([0.0, 30.43, 35.0]), np.full(3, 38.86)
    spend = np.array([35.0, 24.7, 50.0])
    value = customer_lifetime_value(
        CDNOW_BG, x, tx, age, spend, months=6, monthly_discount_rate=0.02, unit="weeks"
    )
    month = 365.25 / 12 / 7
    by_hand = sum(
        (
            CDNOW_BG.expected_purchases(i * month, x, tx, age)
            - CDNOW_BG.expected_purchases((i - 1) * month, x, tx, age)
        )
        * spend
        / 1.02**i
        for i in range(1, 7)
    )
    np.testing.assert_allclose(value, by_hand, rtol=1e-12)


def test_clv_falls_with_the_discount_rate_and_grows_with_the_horizon() -> None:
    x, tx, age = np.array([0.0, 2, 7]), np.array([0.0, 30.43, 35.0]), np.full(3, 38.86)
    spend = np.full(3, 30.0)
    for model in (CDNOW_BG, CDNOW_PARETO):
        rates = [
            customer_lifetime_value(model, x, tx, age, spend, monthly_discount_rate=d)
            for d in (0.0, 0.01, 0.05, 0.2)
        ]
        assert all(np.all(a > b) for a, b in zip(rates, rates[1:], strict=False))
        months = [customer_lifetime_value(model, x, tx, age, spend, months=k) for k in (1, 6, 24)]
        assert all(np.all(a < b) for a, b in zip(months, months[1:], strict=False))
    assert np.all(customer_lifetime_value(CDNOW_BG, x, tx, age, spend, months=0) == 0)
    in_days = customer_lifetime_value(
        BgNbd(r=CDNOW_BG.r, alpha=CDNOW_BG.alpha * 7, a=CDNOW_BG.a, b=CDNOW_BG.b),
        x,
        tx * 7,
        age * 7,
        spend,
        unit="days",
    )
    np.testing.assert_allclose(in_days, customer_lifetime_value(CDNOW_BG, x, tx, age, spend))


def test_churn_risk_combines_p_alive_and_overdue_gap() -> None:
    x = np.array([3.0, 3.0, 0.0, 2.0])
    tx = np.array([9.0, 9.0, 0.0, 40.0]) / 7  # usual gap 3 days for the first two
    age = np.array([12.0, 215.0, 212.0, 41.0]) / 7
    alive = np.array([0.9, 0.18, 1.0, 0.95])
    risk = churn_risk(alive, x, tx, age, unit="weeks")
    assert np.all((risk.risk >= 0) & (risk.risk <= 1))
    assert risk.risk[0] == pytest.approx(0.1)  # 3 days since the last order: not overdue
    assert risk.risk[1] > 0.99  # 206 days, usually every 3
    assert risk.usual_gap_days[2] == pytest.approx(np.median([3.0, 3.0, 20.0]))
    assert not risk.own_gap[2]
    assert risk.explain(1) == "last order 206 days ago, usually every 3 days; P(alive) 0.18"
    assert risk.explain(2).startswith("only order 212 days ago, repeat buyers reorder every 3")
    assert len(risk.explanations()) == 4
    fresh = churn_risk([1.0], [0.0], [0.0], [10.0], unit="days")
    assert (
        fresh.explain(0)
        == "only order 10 days ago, no repeat buyers to compare with; P(alive) 1.00"
    )
    assert fresh.risk[0] == 0.0


def test_churn_risk_rises_with_silence() -> None:
    age = np.linspace(10, 200, 20)
    x, tx = np.full(20, 4.0), np.full(20, 8.0)
    alive = CDNOW_BG.p_alive(x, tx, age)
    risk = churn_risk(alive, x, tx, age).risk
    assert np.all(np.diff(risk) >= 0)


# --- guards ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fit", [fit_bgnbd, fit_pareto_nbd])
def test_too_little_history_is_refused(fit: Any) -> None:
    f = fit
    with pytest.raises(InsufficientHistory, match="at least 50 customers, got 12"):
        f(np.ones(12), np.ones(12), np.full(12, 5.0))
    with pytest.raises(InsufficientHistory, match="no customer has a repeat purchase"):
        f(np.zeros(500), np.zeros(500), np.full(500, 5.0))
    x = np.r_[np.ones(3), np.zeros(497)]
    with pytest.raises(InsufficientHistory, match="at least 10 customers with a repeat"):
        f(x, x, np.full(500, 5.0))


def test_spend_model_refuses_too_few_positive_values() -> None:
    x = np.r_[np.ones(15), np.full(10, 2.0)]
    m = np.r_[np.full(15, 20.0), np.full(10, -5.0)]
    with pytest.raises(InsufficientHistory, match="got 15 .10 more had a mean repeat value <= 0"):
        fit_gamma_gamma(x, m)


def test_degenerate_data_is_a_convergence_failure_not_nonsense() -> None:
    # Every repeat buyer spends exactly 25: no spread to estimate, p and q run off to infinity.
    x = 1.0 + np.arange(100) % 5
    with pytest.raises(ConvergenceFailure, match="Gamma-Gamma"):
        fit_gamma_gamma(x, np.full(100, 25.0))


@pytest.mark.parametrize("fit", [fit_bgnbd, fit_pareto_nbd])
def test_a_shop_where_nobody_leaves_is_a_convergence_failure(fit: Any) -> None:
    # Every repeat buyer bought again on the last day: the likelihood keeps rising towards a
    # model without dropout, which both models only approach with parameters running to infinity.
    rng = np.random.default_rng(5)
    x = rng.poisson(3.0, 500).astype(float)
    with pytest.raises(ConvergenceFailure, match="do not identify"):
        fit(x, np.where(x > 0, 30.0, 0.0), np.full(500, 30.0))


def test_fit_errors_are_consentry_conflicts() -> None:
    err = InsufficientHistory("nobody bought twice")
    assert isinstance(err, ModelFitError) and isinstance(err, Conflict)
    assert isinstance(err, ConsentryError)
    assert err.code == "insufficient_history"
    assert err.reason == "nobody bought twice"
    assert "nobody bought twice" in err.message
    assert ConvergenceFailure("x").code == "convergence_failure"


def test_malformed_summaries_are_value_errors() -> None:
    with pytest.raises(ValueError, match="recency cannot exceed T"):
        CDNOW_BG.p_alive([1.0], [10.0], [5.0])
    with pytest.raises(ValueError, match="whole numbers"):
        CDNOW_BG.p_alive([1.5], [1.0], [5.0])
    with pytest.raises(ValueError, match="NaN"):
        fit_bgnbd([np.nan], [0.0], [1.0])
    with pytest.raises(ValueError, match="p_alive"):
        churn_risk([1.2], [0.0], [0.0], [1.0])


def test_expected_purchases_of_a_large_shop_equal_the_per_customer_formula() -> None:
    """Above SHARED_AT customers the costly part is evaluated once per distinct (x, T) in
    days; the result must be exactly the per-customer evaluation."""
    rng = np.random.default_rng(5)
    n = clv_bgnbd.SHARED_AT + 1_000
    age = rng.integers(0, 1_000, n).astype(np.float64)
    x = np.minimum(rng.poisson(3, n), 60).astype(np.float64)
    model = clv_bgnbd.BgNbd(r=0.4, alpha=25.0, a=0.9, b=2.2)
    horizons = (np.arange(13) * 30.44)[:, None]
    shared = clv_bgnbd._future(model, horizons, x, age)
    direct = clv_bgnbd._future_of(model, horizons, x, age)
    assert shared.shape == (13, n) and np.array_equal(shared, direct)
    weeks = age / 7  # fractional ages: evaluated per customer
    assert np.array_equal(
        clv_bgnbd._future(model, horizons, x, weeks),
        clv_bgnbd._future_of(model, horizons, x, weeks),
    )

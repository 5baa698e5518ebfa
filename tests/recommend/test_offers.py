"""Next best offer: expected value = P(take) x margin, eligibility predicates, calibration."""

from __future__ import annotations

import math

import numpy as np
import pytest

from consentry.recommend import Offer, ScoreCalibration, rank_offers
from consentry.recommend.logistic import LogisticModel

CATEGORIES = np.array([0, 0, 1, 1, 2])
IDENTITY = ScoreCalibration()  # logit transform, a=1, b=0: scores already probabilities


def test_offers_ranked_by_expected_value() -> None:
    items, scores = [0, 2, 4], [0.5, 0.2, 0.1]
    offers = [
        Offer("coffee-10", margin=2.0, product=0, discount=0.1),  # 0.5 * 2 = 1.0
        Offer("tea", margin=10.0, product=2),  # 0.2 * 10 = 2.0
        Offer("unlisted", margin=100.0, product=3),  # not listed: P = 0
    ]
    ranked = rank_offers(7, offers, items, scores, calibration=IDENTITY)
    assert [r.offer.key for r in ranked] == ["tea", "coffee-10", "unlisted"]
    assert ranked[0].p_take == pytest.approx(0.2)
    assert ranked[0].expected_value == pytest.approx(2.0)
    assert ranked[2].expected_value == 0.0


def test_category_and_site_wide_offers_use_the_chance_of_any_listed_item() -> None:
    items, scores = [0, 1, 2], [0.5, 0.5, 0.2]
    category = Offer("cat-0", margin=1.0, category=0)
    site = Offer("site", margin=1.0)
    ranked = {
        r.offer.key: r.p_take
        for r in rank_offers(
            1, [category, site], items, scores, calibration=IDENTITY, categories=CATEGORIES
        )
    }
    assert ranked["cat-0"] == pytest.approx(1 - 0.5 * 0.5)
    assert ranked["site"] == pytest.approx(1 - 0.5 * 0.5 * 0.8)
    with pytest.raises(ValueError):
        rank_offers(1, [category], items, scores, calibration=IDENTITY)


def test_eligibility_predicates_all_must_pass() -> None:
    offers = [Offer("a", 1.0, product=0), Offer("b", 1.0, product=1), Offer("c", 1.0, product=2)]
    seen: list[tuple[int, str]] = []

    def consented(customer: int, offer: Offer) -> bool:
        seen.append((customer, offer.key))
        return offer.key != "a"

    def not_c(customer: int, offer: Offer) -> bool:
        return offer.key != "c"

    ranked = rank_offers(
        3, offers, [0, 1, 2], [0.9, 0.1, 0.8], calibration=IDENTITY, eligibility=[consented, not_c]
    )
    assert [r.offer.key for r in ranked] == ["b"]
    assert (3, "a") in seen


def test_discount_lift_raises_the_odds() -> None:
    plain = Offer("plain", 1.0, product=0)
    discounted = Offer("disc", 1.0, product=0, discount=0.5)
    ranked = rank_offers(
        0, [plain, discounted], [0], [0.2], calibration=IDENTITY, discount_lift=2.0
    )
    by_key = {r.offer.key: r.p_take for r in ranked}
    odds = 0.25 * math.exp(1.0)
    assert by_key["disc"] == pytest.approx(odds / (1 + odds))
    assert by_key["plain"] == pytest.approx(0.2)
    assert ranked[0].offer.key == "disc"


def test_ties_are_broken_by_key_and_limit_applies() -> None:
    offers = [Offer("b", 1.0, product=0), Offer("a", 1.0, product=0)]
    ranked = rank_offers(0, offers, [0], [0.5], calibration=IDENTITY, limit=1)
    assert [r.offer.key for r in ranked] == ["a"]


def test_invalid_offers_are_refused() -> None:
    with pytest.raises(ValueError):
        Offer("x", margin=float("nan"))
    with pytest.raises(ValueError):
        Offer("x", margin=1.0, discount=1.5)


def test_platt_calibration_recovers_known_parameters() -> None:
    rng = np.random.default_rng(0)
    scores = rng.exponential(2.0, 20_000)
    true_p = 1 / (1 + np.exp(-(1.5 * np.log1p(scores) - 2.0)))
    outcomes = rng.random(scores.size) < true_p
    calibration = ScoreCalibration.fit(scores, outcomes, transform="log1p")
    assert calibration.a == pytest.approx(1.5, abs=0.15)
    assert calibration.b == pytest.approx(-2.0, abs=0.15)
    assert calibration.probability(np.array([0.0]))[0] == pytest.approx(
        1 / (1 + math.exp(2.0)), abs=0.02
    )


def test_logistic_regression_separates_a_simple_rule() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2_000, 2))
    y = (x[:, 0] - x[:, 1] > 0).astype(float)
    model = LogisticModel.fit(x, y, l2=0.1)
    accuracy = ((model.probability(x) > 0.5) == (y > 0)).mean()
    assert accuracy > 0.97
    assert model.coef[0] > 0 > model.coef[1]

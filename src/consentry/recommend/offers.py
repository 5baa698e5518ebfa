"""Next best offer: rank the offers a customer may get by expected value.

    expected value = P(take) * margin

- ``margin``: what the shop earns if the customer takes the offer, after its discount (the caller
  computes it from its prices and costs).
- ``P(take)`` comes from the recommender's list for the customer, calibrated into a probability
  by a :class:`~consentry.recommend.logistic.ScoreCalibration` (Platt scaling fitted on held-out
  purchases; the hybrid's scores are already probabilities):
  - a product offer: the calibrated score of that product, ``unlisted`` if it is not listed;
  - a category offer: the chance of buying at least one of the category's listed products,
    1 - prod(1 - p_i) over its ``category_items`` best (independence assumed; unlisted if none);
  - an offer on neither (site-wide): the same over the best items of the whole list.
  A discount can raise the chance: the odds are multiplied by exp(discount_lift * discount).
  The default lift is 0, i.e. no effect is assumed until it has been measured (an A/B test).
- Eligibility is decided by predicates the caller passes, ``(customer, offer) -> bool``; an offer
  is considered only when every predicate allows it (consent, frequency caps, the journeys'
  own rules use the same signature).

Ties in expected value are broken by the offer's key, so the ranking is deterministic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from consentry.recommend._arrays import IntArray
from consentry.recommend.logistic import ScoreCalibration


@dataclass(frozen=True)
class Offer:
    """An offer: on a product, on a category, or neither (site-wide)."""

    key: str
    margin: float
    product: int | None = None
    category: int | None = None
    discount: float = 0.0

    def __post_init__(self) -> None:
        if not np.isfinite(self.margin):
            raise ValueError("margin must be finite")
        if not 0.0 <= self.discount <= 1.0:
            raise ValueError("discount is a fraction of the price, between 0 and 1")


Eligibility = Callable[[int, Offer], bool]


@dataclass(frozen=True)
class RankedOffer:
    offer: Offer
    p_take: float
    expected_value: float


def take_probability(
    offer: Offer,
    items: IntArray,
    probabilities: np.typing.NDArray[np.float64],
    *,
    categories: IntArray | None,
    unlisted: float,
    category_items: int,
    discount_lift: float,
) -> float:
    """P(take) of one offer from the customer's listed items and their probabilities."""
    if offer.product is not None:
        hit = np.nonzero(items == offer.product)[0]
        p = float(probabilities[hit[0]]) if hit.size else unlisted
    else:
        if offer.category is not None:
            if categories is None:
                raise ValueError("category offers need the items' categories")
            mask = categories[items] == offer.category
            chosen = probabilities[mask][:category_items]
        else:
            chosen = probabilities[:category_items]
        p = float(1.0 - np.prod(1.0 - chosen)) if chosen.size else unlisted
    if discount_lift and offer.discount and 0.0 < p < 1.0:
        odds = p / (1.0 - p) * float(np.exp(discount_lift * offer.discount))
        p = odds / (1.0 + odds)
    return float(min(max(p, 0.0), 1.0))


def rank_offers(
    customer: int,
    offers: Iterable[Offer],
    items: ArrayLike,
    scores: ArrayLike,
    *,
    calibration: ScoreCalibration,
    categories: ArrayLike | None = None,
    eligibility: Sequence[Eligibility] = (),
    discount_lift: float = 0.0,
    category_items: int = 3,
    limit: int | None = None,
) -> list[RankedOffer]:
    """The customer's eligible offers, best expected value first.

    ``items`` / ``scores``: the customer's ranked list from a model or an artefact (best first).
    """
    listed = np.asarray(items, dtype=np.int64).reshape(-1)
    raw = np.asarray(scores, dtype=np.float64).reshape(-1)
    if listed.size != raw.size:
        raise ValueError("items and scores must have the same length")
    keep = listed >= 0
    listed, raw = listed[keep], raw[keep]
    probabilities = np.asarray(calibration.probability(raw), dtype=np.float64)
    cats = None if categories is None else np.asarray(categories, dtype=np.int64).reshape(-1)
    ranked: list[RankedOffer] = []
    for offer in offers:
        if not all(rule(customer, offer) for rule in eligibility):
            continue
        p = take_probability(
            offer,
            listed,
            probabilities,
            categories=cats,
            unlisted=calibration.unlisted,
            category_items=category_items,
            discount_lift=discount_lift,
        )
        ranked.append(RankedOffer(offer, p, p * offer.margin))
    ranked.sort(key=lambda r: (-r.expected_value, r.offer.key))
    return ranked if limit is None else ranked[:limit]

"""Recommendations: pure models on numpy / scipy.sparse, business rules, next best offer and the
served artefact. No HTTP, no SQL: the caller reads the interactions from the store and passes
them as arrays of dense indices (see interactions.py).

Models share one calling convention: ``fit(...)`` then ``recommend(user, n, exclude)`` for one
user and ``recommend_batch(users, n, exclude)`` for many (vectorised), returning item indices
best first with their scores; a list never holds an excluded item or a repeat, and at most n.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the names below, for type checkers; at run time each loads on first use
    from consentry.recommend._arrays import Recommendation, TopN
    from consentry.recommend.als import ALS, implicit_available
    from consentry.recommend.artefact import ArtefactError, Manifest, ModelArtefact
    from consentry.recommend.buyagain import BuyAgain
    from consentry.recommend.history import PurchaseHistory
    from consentry.recommend.hybrid import Hybrid
    from consentry.recommend.interactions import (
        EventKind,
        Events,
        InteractionWeights,
        decay,
        interaction_matrix,
        last_order_split,
    )
    from consentry.recommend.itemknn import ItemItem, bm25_columns
    from consentry.recommend.logistic import LogisticModel, ScoreCalibration
    from consentry.recommend.metrics import evaluate, ndcg_at_k, recall_at_k
    from consentry.recommend.offers import Eligibility, Offer, RankedOffer, rank_offers
    from consentry.recommend.popular import MostPopular
    from consentry.recommend.rules import BusinessRules

# The models need numpy and scipy: the server and the CLI import journeys and privacy, which
# reach ``recommend.serving`` and ``recommend.service``, without loading every model to start.
_LAZY: dict[str, str] = {
    "ALS": "consentry.recommend.als",
    "ArtefactError": "consentry.recommend.artefact",
    "BusinessRules": "consentry.recommend.rules",
    "BuyAgain": "consentry.recommend.buyagain",
    "Eligibility": "consentry.recommend.offers",
    "EventKind": "consentry.recommend.interactions",
    "Events": "consentry.recommend.interactions",
    "Hybrid": "consentry.recommend.hybrid",
    "InteractionWeights": "consentry.recommend.interactions",
    "ItemItem": "consentry.recommend.itemknn",
    "LogisticModel": "consentry.recommend.logistic",
    "Manifest": "consentry.recommend.artefact",
    "ModelArtefact": "consentry.recommend.artefact",
    "MostPopular": "consentry.recommend.popular",
    "Offer": "consentry.recommend.offers",
    "PurchaseHistory": "consentry.recommend.history",
    "RankedOffer": "consentry.recommend.offers",
    "Recommendation": "consentry.recommend._arrays",
    "ScoreCalibration": "consentry.recommend.logistic",
    "TopN": "consentry.recommend._arrays",
    "bm25_columns": "consentry.recommend.itemknn",
    "decay": "consentry.recommend.interactions",
    "evaluate": "consentry.recommend.metrics",
    "implicit_available": "consentry.recommend.als",
    "interaction_matrix": "consentry.recommend.interactions",
    "last_order_split": "consentry.recommend.interactions",
    "ndcg_at_k": "consentry.recommend.metrics",
    "rank_offers": "consentry.recommend.offers",
    "recall_at_k": "consentry.recommend.metrics",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "ALS",
    "ArtefactError",
    "BusinessRules",
    "BuyAgain",
    "Eligibility",
    "EventKind",
    "Events",
    "Hybrid",
    "InteractionWeights",
    "ItemItem",
    "LogisticModel",
    "Manifest",
    "ModelArtefact",
    "MostPopular",
    "Offer",
    "PurchaseHistory",
    "RankedOffer",
    "Recommendation",
    "ScoreCalibration",
    "TopN",
    "bm25_columns",
    "decay",
    "evaluate",
    "implicit_available",
    "interaction_matrix",
    "last_order_split",
    "ndcg_at_k",
    "rank_offers",
    "recall_at_k",
]

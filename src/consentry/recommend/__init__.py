"""Recommendations: pure models on numpy / scipy.sparse, business rules, next best offer and the
served artefact. No HTTP, no SQL: the caller reads the interactions from the store and passes
them as arrays of dense indices (see interactions.py).

Models share one calling convention: ``fit(...)`` then ``recommend(user, n, exclude)`` for one
user and ``recommend_batch(users, n, exclude)`` for many (vectorised), returning item indices
best first with their scores; a list never holds an excluded item or a repeat, and at most n.
"""

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

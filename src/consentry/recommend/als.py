"""Matrix factorisation from implicit feedback: alternating least squares (conjugate-gradient
solver) from the ``implicit`` package, an optional dependency imported only when fitting.

Kept evaluable beside the other models, but not part of the hybrid: on the next-basket benchmark
it ranks below buy-again, and as an extra feature of the hybrid it added nothing measurable for
four times the fit time (bench/recommend.py, docs in its docstring).

The confidence matrix is the interactions, BM25-weighted per user row by default (a user is a
document whose terms are items: an item's weight saturates with the count, is normalised by the
user's total and scaled by the item's rarity), which did better than raw counts on the benchmark.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import Any, Self

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike

from consentry.recommend._arrays import (
    CsrMatrix,
    Float32Array,
    Recommendation,
    TopN,
    as_index_array,
    empty_top_n,
    exclusion_matrix,
    top_n_dense,
)
from consentry.recommend.itemknn import bm25_columns


def bm25_rows(matrix: CsrMatrix, k1: float = 100.0, b: float = 0.8) -> CsrMatrix:
    """The user x item matrix with each user row BM25-weighted (items as terms)."""
    return sp.csr_matrix(bm25_columns(sp.csr_matrix(matrix).T, k1, b).T)


def implicit_available() -> bool:
    """Whether the optional ``implicit`` package can be imported."""
    try:
        importlib.import_module("implicit.cpu.als")
    except ImportError:
        return False
    return True


class ALS:
    """Implicit-feedback ALS. Scores are dot products of user and item factors."""

    def __init__(
        self,
        *,
        factors: int = 64,
        regularization: float = 0.1,
        alpha: float = 1.0,
        iterations: int = 15,
        weighting: str = "bm25",
        k1: float = 100.0,
        b: float = 0.8,
        random_state: int = 0,
        batch_size: int = 1024,
    ) -> None:
        if weighting not in ("bm25", "none"):
            raise ValueError("weighting must be 'bm25' or 'none'")
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.weighting = weighting
        self.k1 = k1
        self.b = b
        self.random_state = random_state
        self.batch_size = batch_size
        self.n_items = 0
        self.user_factors: Float32Array = np.zeros((0, factors), dtype=np.float32)
        self.item_factors: Float32Array = np.zeros((0, factors), dtype=np.float32)

    def parameters(self) -> dict[str, object]:
        return {
            "factors": self.factors,
            "regularization": self.regularization,
            "alpha": self.alpha,
            "iterations": self.iterations,
            "weighting": self.weighting,
            "k1": self.k1,
            "b": self.b,
            "random_state": self.random_state,
        }

    def fit(self, interactions: CsrMatrix) -> Self:
        try:
            als_module: Any = importlib.import_module("implicit.cpu.als")
            threadpoolctl: Any = importlib.import_module("threadpoolctl")
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise RuntimeError("ALS needs the optional package 'implicit'") from exc
        matrix = sp.csr_matrix(interactions, dtype=np.float64)
        matrix.eliminate_zeros()
        if self.weighting == "bm25":
            matrix = bm25_rows(matrix, self.k1, self.b)
        self.n_items = matrix.shape[1]
        # implicit's solver is itself parallel: BLAS threads on top only slow it down
        with threadpoolctl.threadpool_limits(1, "blas"):
            model = als_module.AlternatingLeastSquares(
                factors=self.factors,
                regularization=self.regularization,
                alpha=self.alpha,
                iterations=self.iterations,
                random_state=self.random_state,
            )
            model.fit(sp.csr_matrix(matrix, dtype=np.float32), show_progress=False)
        self.user_factors = np.asarray(model.user_factors, dtype=np.float32)
        self.item_factors = np.asarray(model.item_factors, dtype=np.float32)
        return self

    def recommend_batch(
        self,
        users: ArrayLike,
        n: int = 10,
        exclude: Iterable[ArrayLike] | CsrMatrix | None = None,
    ) -> TopN:
        user_ix = as_index_array(users, "users")
        excluded = exclusion_matrix(exclude, user_ix.size, self.n_items)
        known = user_ix < self.user_factors.shape[0]
        parts_items, parts_scores = [], []
        for start in range(0, user_ix.size, self.batch_size):
            stop = start + self.batch_size
            rows = user_ix[start:stop]
            factors = self.user_factors[np.where(known[start:stop], rows, 0)]
            scores = factors @ self.item_factors.T
            # users unknown to the model have no scores
            scores[~known[start:stop]] = -np.inf
            top = top_n_dense(scores, n, None if excluded is None else excluded[start:stop])
            parts_items.append(top.items)
            parts_scores.append(top.scores)
        if not parts_items:
            return empty_top_n(0, n)
        return TopN(np.vstack(parts_items), np.vstack(parts_scores))

    def recommend(self, user: int, n: int = 10, exclude: ArrayLike | None = None) -> Recommendation:
        return self.recommend_batch([user], n, None if exclude is None else [exclude]).row(0)

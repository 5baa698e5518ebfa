"""Offline ranking metrics for next-basket evaluation.

For a user u with recommended list R_u (best first, padding -1 ignored) and test basket T_u (the
distinct items of their held-out order):

    Recall@k(u) = |R_u[:k] & T_u| / |T_u|
    NDCG@k(u)   = DCG@k(u) / IDCG@k(u)
        DCG@k(u)  = sum over ranks r = 1..k of [R_u[r] in T_u] / log2(r + 1)
        IDCG@k(u) = sum over r = 1..min(k, |T_u|) of 1 / log2(r + 1)

Both are averaged over the users whose test basket is non-empty (others are skipped); NaN when
there are none. The recall denominator is |T_u|, not min(k, |T_u|), so a basket larger than k
cannot reach 1.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike

from consentry.recommend._arrays import CsrMatrix, FloatArray, pair_keys


def _hits(recommended: ArrayLike, relevant: CsrMatrix, k: int) -> tuple[FloatArray, FloatArray]:
    rec = np.asarray(recommended, dtype=np.int64)
    if rec.ndim != 2:
        raise ValueError("recommended must be a 2-d array (one row per user)")
    truth = sp.csr_matrix(relevant)
    truth.eliminate_zeros()
    truth.sort_indices()
    if truth.shape[0] != rec.shape[0]:
        raise ValueError("recommended and relevant need one row per user each")
    if k < 1:
        raise ValueError("k must be >= 1")
    rec = rec[:, :k]
    if rec.shape[1] < k:
        rec = np.hstack([rec, np.full((rec.shape[0], k - rec.shape[1]), -1, dtype=np.int64)])
    # an item listed twice counts once (only its first rank)
    rows = np.arange(rec.shape[0])[:, None]
    keys = np.where(rec >= 0, pair_keys(rows, rec, truth.shape[1] + 1), -1)
    first = np.zeros(keys.size, dtype=bool)
    _, at = np.unique(keys.ravel(), return_index=True)
    first[at] = True
    truth_keys = pair_keys(
        np.repeat(np.arange(truth.shape[0]), np.diff(truth.indptr)),
        truth.indices,
        truth.shape[1] + 1,
    )
    hits = (np.isin(keys, truth_keys) & first.reshape(keys.shape)).astype(np.float64)
    sizes = np.diff(truth.indptr).astype(np.float64)
    return hits, sizes


def recall_at_k(recommended: ArrayLike, relevant: CsrMatrix, k: int = 10) -> float:
    """Mean Recall@k over users with a non-empty basket (see the module docstring)."""
    hits, sizes = _hits(recommended, relevant, k)
    users = sizes > 0
    if not users.any():
        return float("nan")
    return float((hits[users].sum(axis=1) / sizes[users]).mean())


def ndcg_at_k(recommended: ArrayLike, relevant: CsrMatrix, k: int = 10) -> float:
    """Mean NDCG@k (binary gains) over users with a non-empty basket."""
    hits, sizes = _hits(recommended, relevant, k)
    users = sizes > 0
    if not users.any():
        return float("nan")
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = hits[users] @ discount
    ideal = np.cumsum(discount)[np.minimum(sizes[users], k).astype(np.int64) - 1]
    return float((dcg / ideal).mean())


def evaluate(recommended: ArrayLike, relevant: CsrMatrix, k: int = 10) -> dict[str, float]:
    """``{"recall@k": ..., "ndcg@k": ...}``."""
    return {
        f"recall@{k}": recall_at_k(recommended, relevant, k),
        f"ndcg@{k}": ndcg_at_k(recommended, relevant, k),
    }


__all__ = ["evaluate", "ndcg_at_k", "recall_at_k"]

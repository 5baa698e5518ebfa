"""Item-to-item: "also bought" / "also viewed" neighbours from co-occurrence, and the
personalised item-kNN that sums the neighbours of a user's history.

Similarity of items i and j over the users who interacted with both:

- ``cosine``: x_i . x_j / (|x_i| |x_j|) on the interaction columns;
- ``bm25``: w_i . w_j where each item column is BM25-weighted: an item is a document whose terms
  are its users; a user's weight in it saturates with the interaction strength (``k1``), is
  normalised by the item's total interaction (``b``), and is scaled by the user's inverse
  document frequency, log(n_items / (1 + items the user touched)), so that a customer who buys
  everything links items less than one with a focused basket.

Only the ``neighbours`` most similar items are kept per item (a sparse n_items x n_items matrix),
computed block by block so memory stays bounded.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, Self

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike

from consentry.recommend._arrays import (
    CsrMatrix,
    FloatArray,
    Recommendation,
    SparseScorer,
    TopN,
    as_index_array,
    csr,
    drop_entries,
    exclusion_matrix,
    top_n_sparse,
)

Similarity = Literal["cosine", "bm25"]


def bm25_columns(matrix: CsrMatrix, k1: float = 1.2, b: float = 0.75) -> CsrMatrix:
    """The user x item matrix with each item column BM25-weighted (see the module docstring)."""
    m = sp.csr_matrix(matrix, dtype=np.float64)
    n_users, n_items = m.shape
    if m.nnz == 0:
        return m
    rows = np.repeat(np.arange(n_users), np.diff(m.indptr))
    cols = m.indices
    item_length = np.bincount(cols, weights=m.data, minlength=n_items)
    mean_length = float(item_length[item_length > 0].mean())
    user_df = np.bincount(rows, minlength=n_users).astype(np.float64)
    idf = np.log(n_items / (1.0 + user_df))
    idf = np.maximum(idf, 0.0)
    norm = k1 * (1.0 - b + b * item_length[cols] / mean_length)
    data = m.data * (k1 + 1.0) / (m.data + norm) * idf[rows]
    return csr(rows, cols, data, m.shape)


def _normalise_columns(matrix: CsrMatrix) -> CsrMatrix:
    m = sp.csr_matrix(matrix, dtype=np.float64)
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=0)).ravel())
    scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return sp.csr_matrix(m @ sp.diags(scale))


class ItemItem(SparseScorer):
    """Item-to-item neighbours, and personalised item-kNN over the fitted interactions.

    ``recommend`` scores item j for a user by sum_i x_ui * sim(i, j) over the user's history,
    plus, with ``include_self``, x_uj * sim(j, j) (an item is its own nearest neighbour: what
    the user already bought counts for its re-purchase); ``similar`` gives an item's neighbours
    and ``for_items`` a basket's, never the items themselves.
    """

    def __init__(
        self,
        *,
        neighbours: int = 100,
        similarity: Similarity = "cosine",
        k1: float = 1.2,
        b: float = 0.75,
        include_self: bool = True,
        block_size: int = 2048,
    ) -> None:
        if neighbours < 1:
            raise ValueError("neighbours must be >= 1")
        if similarity not in ("cosine", "bm25"):
            raise ValueError("similarity must be 'cosine' or 'bm25'")
        self.neighbours = neighbours
        self.similarity_kind: Similarity = similarity
        self.k1 = k1
        self.b = b
        self.include_self = include_self
        self.block_size = block_size
        self.n_items = 0
        self.self_similarity: FloatArray = np.zeros(0)
        self.user_items: CsrMatrix = None
        self.similarity: CsrMatrix = None

    def fit(self, interactions: CsrMatrix) -> Self:
        matrix = sp.csr_matrix(interactions, dtype=np.float64)
        matrix.eliminate_zeros()
        self.user_items = matrix
        self.n_items = matrix.shape[1]
        if self.similarity_kind == "cosine":
            weighted = _normalise_columns(matrix)
        else:
            weighted = bm25_columns(matrix, self.k1, self.b)
        by_item = sp.csr_matrix(weighted.T)
        self.self_similarity = np.asarray(
            weighted.multiply(weighted).sum(axis=0), dtype=np.float64
        ).ravel()
        rows_parts: list[np.typing.NDArray[np.int64]] = []
        cols_parts: list[np.typing.NDArray[np.int64]] = []
        vals_parts: list[FloatArray] = []
        for start in range(0, self.n_items, self.block_size):
            stop = min(start + self.block_size, self.n_items)
            block = sp.csr_matrix(by_item[start:stop] @ weighted)
            # one more than needed, then the item itself (and non-positive scores) dropped
            top = top_n_sparse(block, self.neighbours + 1)
            keep = (
                (top.items >= 0) & (top.items != np.arange(start, stop)[:, None]) & (top.scores > 0)
            )
            keep &= np.cumsum(keep, axis=1) <= self.neighbours
            rows_parts.append(np.nonzero(keep)[0].astype(np.int64) + start)
            cols_parts.append(top.items[keep].astype(np.int64))
            vals_parts.append(top.scores[keep].astype(np.float64))
        self.similarity = csr(
            np.concatenate(rows_parts) if rows_parts else np.zeros(0, dtype=np.int64),
            np.concatenate(cols_parts) if cols_parts else np.zeros(0, dtype=np.int64),
            np.concatenate(vals_parts) if vals_parts else np.zeros(0),
            (self.n_items, self.n_items),
        )
        return self

    def neighbour_table(self) -> TopN:
        """Every item's neighbours as ``(n_items, neighbours)`` arrays (for the artefact)."""
        return top_n_sparse(self.similarity, self.neighbours)

    def scores(self, users: ArrayLike) -> CsrMatrix:
        """Raw item-kNN scores of several users (rows) as a sparse matrix."""
        user_ix = as_index_array(users, "users")
        history = _rows_or_empty(self.user_items, user_ix)
        scores = history @ self.similarity
        if self.include_self:
            scores = scores + history @ sp.diags(self.self_similarity)
        return sp.csr_matrix(scores)

    def similar_batch(
        self,
        items: ArrayLike,
        n: int = 10,
        exclude: Iterable[ArrayLike] | CsrMatrix | None = None,
    ) -> TopN:
        """Each item's ``n`` nearest neighbours (never the item itself)."""
        item_ix = as_index_array(items, "items")
        excluded = exclusion_matrix(exclude, item_ix.size, self.n_items)
        return top_n_sparse(drop_entries(sp.csr_matrix(self.similarity[item_ix]), excluded), n)

    def similar(self, item: int, n: int = 10, exclude: ArrayLike | None = None) -> Recommendation:
        return self.similar_batch([item], n, None if exclude is None else [exclude]).row(0)

    def for_items(
        self,
        items: ArrayLike,
        n: int = 10,
        exclude: ArrayLike | None = None,
        weights: ArrayLike | None = None,
    ) -> Recommendation:
        """Neighbours of a set of items (a cart, a page), summed; the items themselves are
        never returned."""
        item_ix = as_index_array(items, "items")
        w = np.ones(item_ix.size) if weights is None else np.asarray(weights, dtype=np.float64)
        basket = csr(np.zeros(item_ix.size, dtype=np.int64), item_ix, w, (1, self.n_items))
        scores = sp.csr_matrix(basket @ self.similarity)
        skip = np.union1d(item_ix, as_index_array(exclude, "exclude"))
        excluded = exclusion_matrix([skip], 1, self.n_items)
        return top_n_sparse(drop_entries(scores, excluded), n).row(0)


def _rows_or_empty(matrix: CsrMatrix, users: np.typing.NDArray[np.int64]) -> CsrMatrix:
    """Rows of the fitted matrix; users unknown to the model get an empty row."""
    known = users < matrix.shape[0]
    if known.all():
        return sp.csr_matrix(matrix[users])
    rows = np.where(known, users, 0)
    picked = sp.csr_matrix(matrix[rows])
    return sp.csr_matrix(sp.diags(known.astype(np.float64)) @ picked)

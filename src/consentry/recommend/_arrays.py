"""Array helpers shared by the models: ranked lists, sparse top-n, key look-ups (pure numpy).

A ranked list for a batch of rows is a pair of ``(rows, n)`` arrays: item indices (int32, ``-1``
where a row has fewer than ``n`` items) and scores (float32, ``-inf`` in the same places). Ties
in score are broken by the smaller item index, so every ranking is deterministic.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

IntArray = NDArray[np.int64]
Int32Array = NDArray[np.int32]
FloatArray = NDArray[np.float64]
Float32Array = NDArray[np.float32]
BoolArray = NDArray[np.bool_]
# scipy ships no type information: a CSR matrix is typed as this alias of Any.
CsrMatrix = Any

EMPTY = -1
SECONDS_PER_DAY = 86_400.0


class Recommendation(NamedTuple):
    """One ranked list: item indices, best first, and their scores (same length)."""

    items: Int32Array
    scores: Float32Array


class TopN(NamedTuple):
    """Ranked lists for a batch: ``(rows, n)`` items padded with -1, scores padded with -inf."""

    items: Int32Array
    scores: Float32Array

    def row(self, index: int) -> Recommendation:
        """The list of one row of the batch, without its padding."""
        items = self.items[index]
        keep = items >= 0
        return Recommendation(items[keep], self.scores[index][keep])


def as_index_array(values: ArrayLike | None, name: str = "indices") -> IntArray:
    """Values as a 1-d int64 array (empty for None); refuses non-integers and negatives."""
    if values is None:
        return np.zeros(0, dtype=np.int64)
    array = np.asarray(values)
    if array.ndim == 0:
        array = array.reshape(1)
    if array.size == 0:
        return np.zeros(0, dtype=np.int64)
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must be a 1-d array of integers")
    if array.min() < 0:
        raise ValueError(f"{name} must not be negative")
    return array.astype(np.int64, copy=False)


def empty_top_n(rows: int, n: int) -> TopN:
    return TopN(
        np.full((rows, n), EMPTY, dtype=np.int32),
        np.full((rows, n), -np.inf, dtype=np.float32),
    )


def csr(rows: ArrayLike, cols: ArrayLike, values: ArrayLike, shape: tuple[int, int]) -> CsrMatrix:
    """A CSR matrix from coordinates, duplicates summed, indices sorted."""
    import scipy.sparse as sp  # loaded with the first model, not to start

    matrix = sp.csr_matrix(
        (np.asarray(values, dtype=np.float64), (np.asarray(rows), np.asarray(cols))),
        shape=shape,
    )
    matrix.sum_duplicates()
    return matrix


def exclusion_matrix(
    exclude: Iterable[ArrayLike] | CsrMatrix | None, rows: int, n_items: int
) -> Any:
    """Exclusions for a batch as a CSR matrix ``(rows, n_items)``, or None for none.

    Accepts a sparse matrix (any stored entry excludes its item) or one sequence of item indices
    per row.
    """
    import scipy.sparse as sp  # loaded with the first model, not to start

    if exclude is None:
        return None
    if sp.issparse(exclude):
        given: Any = exclude
        matrix = sp.csr_matrix(given)
        if matrix.shape != (rows, n_items):
            raise ValueError(f"exclude must have shape {(rows, n_items)}, not {matrix.shape}")
        return matrix
    lists = [as_index_array(items, "exclude") for items in exclude]
    if len(lists) != rows:
        raise ValueError("exclude needs one list of items per user")
    lengths = np.array([len(items) for items in lists], dtype=np.int64)
    cols = np.concatenate(lists) if lists else np.zeros(0, dtype=np.int64)
    if cols.size and cols.max() >= n_items:
        raise ValueError("exclude holds an item index out of range")
    return csr(np.repeat(np.arange(rows), lengths), cols, np.ones(cols.size), (rows, n_items))


def pair_keys(rows: NDArray[Any], cols: NDArray[Any], width: int) -> IntArray:
    """One int64 key per (row, column) pair: ``row * width + column``."""
    return rows.astype(np.int64) * np.int64(width) + cols.astype(np.int64)


def coo_keys(matrix: CsrMatrix) -> IntArray:
    """The keys of a CSR matrix's stored entries, in storage order (row-major, so sorted when
    the matrix has sorted indices)."""
    rows = np.repeat(np.arange(matrix.shape[0], dtype=np.int64), np.diff(matrix.indptr))
    return pair_keys(rows, np.asarray(matrix.indices), matrix.shape[1])


def drop_entries(scores: CsrMatrix, exclude: CsrMatrix | None) -> CsrMatrix:
    """``scores`` without the entries stored in ``exclude`` (same shape)."""
    import scipy.sparse as sp  # loaded with the first model, not to start

    if exclude is None or exclude.nnz == 0 or scores.nnz == 0:
        return scores
    scores = sp.csr_matrix(scores)
    scores.sort_indices()
    keep = ~np.isin(coo_keys(scores), coo_keys(exclude))
    rows = np.repeat(np.arange(scores.shape[0]), np.diff(scores.indptr))
    return csr(rows[keep], scores.indices[keep], scores.data[keep], scores.shape)


def descending_float_key(values: NDArray[Any]) -> IntArray:
    """A key per value in [0, 2**32) that sorts like the value (as float32), descending."""
    bits = np.asarray(values, dtype=np.float32).view(np.int32).astype(np.int64)
    # IEEE 754: non-negative floats order like their bits; negative ones in reverse
    np.bitwise_xor(bits, 0x7FFFFFFF, out=bits, where=bits < 0)
    return np.subtract(0x7FFFFFFF, bits)


def top_n_sparse(scores: CsrMatrix, n: int) -> TopN:
    """Per row, the ``n`` best stored entries of a sparse score matrix."""
    import scipy.sparse as sp  # loaded with the first model, not to start

    rows_total = scores.shape[0]
    out = empty_top_n(rows_total, n)
    if n <= 0 or scores.nnz == 0:
        return out
    scores = sp.csr_matrix(scores)
    counts = np.diff(scores.indptr)
    rows = np.repeat(np.arange(rows_total, dtype=np.int64), counts)
    cols = np.asarray(scores.indices, dtype=np.int64)
    column_bits = max(int(scores.shape[1]).bit_length(), 1)
    row_bits = max(int(rows_total).bit_length(), 1)
    if row_bits + 32 + column_bits <= 63:
        # one key per entry: row, then score descending, then column (all distinct)
        key = (rows << (32 + column_bits)) | (descending_float_key(scores.data) << column_bits)
        order = np.argsort(key | cols)
    else:
        order = np.lexsort((cols, descending_float_key(scores.data), rows))
    rows = rows[order]
    cols = cols[order]
    data = np.asarray(scores.data, dtype=np.float32)[order]
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rank = np.arange(rows.size, dtype=np.int64) - starts[rows]
    keep = rank < n
    out.items[rows[keep], rank[keep]] = cols[keep]
    out.scores[rows[keep], rank[keep]] = data[keep]
    return out


def top_n_dense(scores: NDArray[Any], n: int, exclude: CsrMatrix | None = None) -> TopN:
    """Per row, the ``n`` best entries of a dense score matrix, skipping excluded entries."""
    values = np.array(scores, dtype=np.float64, copy=True)
    rows_total, width = values.shape
    if exclude is not None and exclude.nnz:
        rows = np.repeat(np.arange(rows_total), np.diff(exclude.indptr))
        values[rows, exclude.indices] = -np.inf
    n_take = min(n, width)
    out = empty_top_n(rows_total, n)
    if n_take <= 0 or rows_total == 0:
        return out
    if n_take < width:
        part = np.argpartition(-values, n_take - 1, axis=1)[:, :n_take]
    else:
        part = np.broadcast_to(np.arange(width), (rows_total, width)).copy()
    picked = np.take_along_axis(values, part, axis=1)
    # sort the picked entries by score, then by item index
    order = np.lexsort((part, -picked), axis=1)
    items = np.take_along_axis(part, order, axis=1)
    values_sorted = np.take_along_axis(picked, order, axis=1)
    valid = np.isfinite(values_sorted)
    out.items[:, :n_take] = np.where(valid, items, EMPTY)
    out.scores[:, :n_take] = np.where(valid, values_sorted, -np.inf)
    return out


def merge_ranked(first: TopN, second: TopN, n: int, n_items: int) -> TopN:
    """``first``'s lists, each filled up to ``n`` with ``second``'s items it does not hold yet.

    The order is positional: every item of ``first`` comes before any of ``second``; scores are
    kept as each list gave them.
    """
    items = np.hstack([first.items, second.items]).astype(np.int64)
    scores = np.hstack([first.scores, second.scores])
    rows_total, width = items.shape
    valid = items >= 0
    if rows_total and width:
        keys = np.where(valid, pair_keys(np.arange(rows_total)[:, None], items, n_items + 1), -1)
        flat = keys.ravel()
        _, first_at = np.unique(flat, return_index=True)
        is_first = np.zeros(flat.size, dtype=bool)
        is_first[first_at] = True
        valid &= is_first.reshape(keys.shape)
    position = np.cumsum(valid, axis=1) - 1
    keep = valid & (position < n)
    out = empty_top_n(rows_total, n)
    rows = np.nonzero(keep)[0]
    out.items[rows, position[keep]] = items[keep]
    out.scores[rows, position[keep]] = scores[keep]
    return out


def lookup(
    sorted_keys: IntArray, values: NDArray[Any], query: IntArray, default: float
) -> FloatArray:
    """The value stored under each query key (``sorted_keys`` ascending), else ``default``."""
    result = np.full(query.size, default, dtype=np.float64)
    if sorted_keys.size == 0 or query.size == 0:
        return result
    at = np.searchsorted(sorted_keys, query)
    at_clipped = np.minimum(at, sorted_keys.size - 1)
    found = sorted_keys[at_clipped] == query
    result[found] = values[at_clipped[found]]
    return result


def gather_rows(indptr: IntArray, rows: IntArray) -> tuple[IntArray, IntArray]:
    """For the CSR rows asked for: (position of each stored entry's row in ``rows``, position of
    the entry in the CSR arrays), vectorised."""
    starts = indptr[rows]
    lengths = indptr[rows + 1] - starts
    owner = np.repeat(np.arange(rows.size, dtype=np.int64), lengths)
    offsets = np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(
        np.cumsum(lengths) - lengths, lengths
    )
    return owner, np.repeat(starts, lengths) + offsets


def topn_from_list(
    items: IntArray, scores: FloatArray, rows: int, n: int, exclude: CsrMatrix | None, n_items: int
) -> TopN:
    """The same ranked list (items best first) for every row, skipping each row's exclusions."""
    out = empty_top_n(rows, n)
    if rows == 0 or n <= 0 or items.size == 0:
        return out
    extra = 0 if exclude is None else int(np.diff(exclude.indptr).max(initial=0))
    take = min(items.size, n + extra)
    cand = np.broadcast_to(items[:take], (rows, take))
    valid = np.ones((rows, take), dtype=bool)
    if exclude is not None and exclude.nnz:
        keys = pair_keys(np.arange(rows)[:, None], cand, n_items)
        valid = ~np.isin(keys, coo_keys(exclude))
    position = np.cumsum(valid, axis=1) - 1
    keep = valid & (position < n)
    row_ix = np.nonzero(keep)[0]
    out.items[row_ix, position[keep]] = cand[keep]
    out.scores[row_ix, position[keep]] = np.broadcast_to(scores[:take], (rows, take))[keep]
    return out


class SparseScorer(ABC):
    """Recommending for models that score users as a sparse matrix: a subclass sets
    ``n_items`` and implements ``scores``; ranking and exclusions are shared."""

    n_items: int

    @abstractmethod
    def scores(self, user_ix: IntArray) -> CsrMatrix:
        """One row of item scores per user index (absent entries are not candidates)."""

    def recommend_batch(
        self,
        users: ArrayLike,
        n: int = 10,
        exclude: Iterable[ArrayLike] | CsrMatrix | None = None,
    ) -> TopN:
        """Top ``n`` items per user, ``exclude`` left out (a list per user, or a CSR matrix)."""
        user_ix = as_index_array(users, "users")
        excluded = exclusion_matrix(exclude, user_ix.size, self.n_items)
        return top_n_sparse(drop_entries(self.scores(user_ix), excluded), n)

    def recommend(self, user: int, n: int = 10, exclude: ArrayLike | None = None) -> Recommendation:
        """Top ``n`` items for one user."""
        return self.recommend_batch([user], n, None if exclude is None else [exclude]).row(0)

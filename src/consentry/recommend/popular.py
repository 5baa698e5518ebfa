"""Most popular items, globally and per segment: the cold-start fallback and the floor every
personalised model must beat."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, Self

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike

from consentry.recommend._arrays import (
    CsrMatrix,
    FloatArray,
    IntArray,
    Recommendation,
    TopN,
    as_index_array,
    drop_entries,
    exclusion_matrix,
    merge_ranked,
    top_n_sparse,
    topn_from_list,
)

NO_SEGMENT = -1


class MostPopular:
    """Items ranked by how many distinct users interacted with them (``count="users"``) or by
    their summed weight (``count="weight"``); per segment too when the caller passes a segment
    per user (any user -> group mapping, ``-1`` for none). A user's list is their segment's
    ranking, filled up from the global one."""

    def __init__(self, *, count: Literal["users", "weight"] = "users") -> None:
        if count not in ("users", "weight"):
            raise ValueError("count must be 'users' or 'weight'")
        self.count = count
        self.n_items = 0
        self.popularity: FloatArray = np.zeros(0)
        self.ranking: IntArray = np.zeros(0, dtype=np.int64)
        self.segments: IntArray = np.zeros(0, dtype=np.int64)
        self.segment_popularity: CsrMatrix = None

    def fit(self, interactions: CsrMatrix, segments: ArrayLike | None = None) -> Self:
        matrix = sp.csr_matrix(interactions)
        matrix.eliminate_zeros()
        n_users, self.n_items = matrix.shape
        values = matrix.copy()
        if self.count == "users":
            values.data = np.ones_like(values.data)
        self.popularity = np.asarray(values.sum(axis=0), dtype=np.float64).ravel()
        self.ranking = np.lexsort((np.arange(self.n_items), -self.popularity))
        self.ranking = self.ranking[self.popularity[self.ranking] > 0]
        if segments is None:
            self.segments = np.full(n_users, NO_SEGMENT, dtype=np.int64)
            self.segment_popularity = sp.csr_matrix((0, self.n_items))
            return self
        seg = np.asarray(segments, dtype=np.int64).reshape(-1)
        if seg.size != n_users:
            raise ValueError("segments needs one value per user")
        if (seg < NO_SEGMENT).any():
            raise ValueError("a segment is -1 (none) or a non-negative index")
        self.segments = seg
        n_segments = int(seg.max()) + 1 if seg.size else 0
        member = seg >= 0
        membership = sp.csr_matrix(
            (np.ones(int(member.sum())), (seg[member], np.nonzero(member)[0])),
            shape=(n_segments, n_users),
        )
        self.segment_popularity = sp.csr_matrix(membership @ values)
        self.segment_popularity.eliminate_zeros()
        return self

    def segment_of(self, users: IntArray) -> IntArray:
        """Each user's segment, -1 for users without one or unknown to the model."""
        known = users < self.segments.size
        result = np.full(users.size, NO_SEGMENT, dtype=np.int64)
        result[known] = self.segments[users[known]]
        return result

    def recommend_batch(
        self,
        users: ArrayLike,
        n: int = 10,
        exclude: Iterable[ArrayLike] | CsrMatrix | None = None,
        *,
        segments: ArrayLike | None = None,
    ) -> TopN:
        """Lists for several users; ``segments`` overrides their segments (e.g. new users)."""
        user_ix = as_index_array(users, "users")
        excluded = exclusion_matrix(exclude, user_ix.size, self.n_items)
        glob = topn_from_list(
            self.ranking,
            self.popularity[self.ranking],
            user_ix.size,
            n,
            excluded,
            self.n_items,
        )
        seg = (
            self.segment_of(user_ix)
            if segments is None
            else np.asarray(segments, dtype=np.int64).reshape(-1)
        )
        if seg.size != user_ix.size:
            raise ValueError("segments needs one value per user")
        n_segments = self.segment_popularity.shape[0]
        has = (seg >= 0) & (seg < n_segments)
        if not has.any():
            return glob
        rows = np.where(has, seg, 0)
        seg_scores = sp.csr_matrix(self.segment_popularity[rows])
        seg_scores = sp.csr_matrix(sp.diags(has.astype(np.float64)) @ seg_scores)
        seg_scores.eliminate_zeros()
        seg_top = top_n_sparse(drop_entries(seg_scores, excluded), n)
        return merge_ranked(seg_top, glob, n, self.n_items)

    def recommend(
        self,
        user: int,
        n: int = 10,
        exclude: ArrayLike | None = None,
        *,
        segment: int | None = None,
    ) -> Recommendation:
        batch = self.recommend_batch(
            [user],
            n,
            None if exclude is None else [exclude],
            segments=None if segment is None else [segment],
        )
        return batch.row(0)

    def top(self, n: int) -> IntArray:
        """The ``n`` most popular items overall."""
        return self.ranking[:n]

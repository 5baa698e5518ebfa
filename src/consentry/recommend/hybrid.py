"""Ours: a learned blend of buy-again, item-to-item and popularity.

For each user the candidates are their own past purchases, the best item-kNN items they have not
bought (``new_items``), and the most popular items of their segment (``popular_items``). Every
candidate gets a few features (``FEATURES``):

- own history: bought before (0/1), log(1 + orders holding it), its share of the user's orders
  since they first bought it, 1 / (1 + orders since the last purchase) and a few buckets of it,
  in the last order (0/1), bought once / twice, log(1 + the decayed buy-again score) at three
  half-lives (``half_life_days`` / 4, x 1, x 6), the days since the last purchase, and the
  replenishment timing (how due the item is at the user's expected next order, see
  ``buyagain.due_closeness``), the buy-again score relative to the user's best and its rank;
- neighbours: the item-kNN score from the *other* items of the history (BM25 co-occurrence),
  relative to the user's best, and its log;
- the item: log popularity (distinct buyers, relative to the top item), its re-purchase rate;
- the user: their re-purchase rate, crossed with "bought before" and "new to them".

A logistic regression on these features is fitted on each user's last known order (the
features computed from the orders before it, the label whether the candidate was in it; with
``training_orders`` > 1 on as many earlier orders too), then the features are recomputed on the
whole history to rank. The score is therefore an estimated probability that the item is in the
user's next basket (the benchmark checks its calibration); next-best-offer uses it as P(take).
Own items and new items compete on that one scale, which is how the blend fills the slots the
user's own history cannot.

Customers without purchases get the popular list of their segment, then the global one, as it
is (scored by the share of customers who bought each item); so does any list the candidates
cannot fill.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Self

import numpy as np
from numpy.typing import ArrayLike

from consentry.recommend._arrays import (
    SECONDS_PER_DAY,
    BoolArray,
    CsrMatrix,
    FloatArray,
    IntArray,
    Recommendation,
    TopN,
    as_index_array,
    coo_keys,
    csr,
    drop_entries,
    empty_top_n,
    exclusion_matrix,
    gather_rows,
    lookup,
    merge_ranked,
    pair_keys,
    top_n_sparse,
)
from consentry.recommend.buyagain import due_closeness
from consentry.recommend.history import PurchaseHistory
from consentry.recommend.interactions import Events, last_order_split
from consentry.recommend.itemknn import ItemItem, Similarity
from consentry.recommend.logistic import LogisticModel
from consentry.recommend.popular import MostPopular

FEATURES = (
    "own",
    "log_count",
    "order_share",
    "recency",
    "in_last_order",
    "log_buy_again",
    "log_buy_again_short",
    "log_buy_again_long",
    "log_days_since",
    "since_1",
    "since_2",
    "since_3_5",
    "count_1",
    "count_2",
    "due",
    "log_due_ratio",
    "buy_again_relative",
    "buy_again_rank",
    "knn_relative",
    "log_knn",
    "popularity",
    "item_repeat_rate",
    "user_repeat_own",
    "user_repeat_new",
    "knn_relative_new",
)


@dataclass(frozen=True)
class Candidates:
    """Candidate pairs for a batch: ``rows`` (position in the batch), ``items``, features."""

    rows: IntArray
    items: IntArray
    features: FloatArray


class _Sources:
    """What the features are computed from, for one cut of the history."""

    def __init__(
        self,
        purchases: Events,
        browsing: Events | None,
        segments: ArrayLike | None,
        *,
        neighbours: int,
        similarity: Similarity,
        half_life_days: float,
    ) -> None:
        self.n_items = purchases.n_items
        self.history = PurchaseHistory.of(purchases)
        h = self.history
        co_occurrence = purchases.matrix()
        if browsing is not None and len(browsing):
            co_occurrence = co_occurrence + browsing.matrix()
        self.item_item = ItemItem(
            neighbours=neighbours, similarity=similarity, include_self=False
        ).fit(co_occurrence)
        self.popular = MostPopular().fit(purchases.matrix(), segments)
        self.buy_again = h.decayed_count(half_life_days, h.last_order_at)
        since = (h.n_orders[h.users] - 1 - h.last_order).astype(np.float64)
        span = (h.n_orders[h.users] - h.first_order).astype(np.float64)
        # replenishment: how due the item is at the user's expected next order
        elapsed = (h.last_order_at[h.users] - h.last_at) / SECONDS_PER_DAY
        elapsed = elapsed + h.order_gap_days()[h.users]
        interval = h.reorder_interval_days()
        due = due_closeness(elapsed, interval)
        known = np.isfinite(interval) & (interval > 0)
        ratio = np.where(known, (elapsed + 0.5) / (np.where(known, interval, 1.0) + 0.5), 1.0)
        self.own_features = np.column_stack(
            [
                np.log1p(h.count),
                h.count / np.maximum(span, 1.0),
                1.0 / (1.0 + since),
                (since == 0).astype(np.float64),
                np.log1p(self.buy_again),
                np.log1p(h.decayed_count(half_life_days / 4, h.last_order_at)),
                np.log1p(h.decayed_count(half_life_days * 6, h.last_order_at)),
                np.log1p((h.last_order_at[h.users] - h.last_at) / SECONDS_PER_DAY),
                (since == 1).astype(np.float64),
                (since == 2).astype(np.float64),
                ((since >= 3) & (since <= 5)).astype(np.float64),
                (h.count == 1).astype(np.float64),
                (h.count == 2).astype(np.float64),
                due,
                np.clip(np.log(ratio), -3.0, 3.0),
            ]
        )
        top = float(h.buyers.max()) if h.buyers.size else 0.0
        self.item_popularity = np.log1p(h.buyers) / np.log1p(max(top, 1.0))
        self.item_repeat = h.item_repeat_rate()
        self.user_repeat = h.user_repeat_rate()

    def has_history(self, users: IntArray) -> BoolArray:
        n_orders = self.history.n_orders
        known = users < n_orders.size
        return known & (n_orders[np.where(known, users, 0)] > 0)

    def own_rows(self, users: IntArray) -> tuple[IntArray, IntArray]:
        """(batch row, history pair index) of the users' own pairs; unknown users have none."""
        known = users < self.history.n_users
        owner, pairs = gather_rows(self.history.indptr, users[known])
        return np.nonzero(known)[0][owner], pairs

    def candidates(
        self, users: IntArray, new_items: int, popular_items: int, segments: IntArray | None
    ) -> Candidates:
        h, n_items = self.history, self.n_items
        batch = users.size
        own_row, own_pair = self.own_rows(users)
        own_items = h.items[own_pair]
        own_keys = pair_keys(own_row, own_items, n_items)
        own_matrix = csr(own_row, own_items, np.ones(own_row.size), (batch, n_items))

        knn = self.item_item.scores(users)
        knn.sort_indices()
        knn_keys = coo_keys(knn)
        knn_values = np.asarray(knn.data, dtype=np.float64)
        best_knn = np.zeros(batch)
        if knn.nnz:
            np.maximum.at(best_knn, np.repeat(np.arange(batch), np.diff(knn.indptr)), knn_values)
        new_top = top_n_sparse(drop_entries(knn, own_matrix), new_items)
        popular = self.popular.recommend_batch(
            users,
            popular_items,
            own_matrix,
            segments=self.popular.segment_of(users) if segments is None else segments,
        )
        extra_rows, extra_items = [], []
        for table in (new_top, popular):
            valid = table.items >= 0
            extra_rows.append(np.nonzero(valid)[0].astype(np.int64))
            extra_items.append(table.items[valid].astype(np.int64))
        keys = np.unique(
            np.concatenate(
                [
                    own_keys,
                    *(
                        pair_keys(r, i, n_items)
                        for r, i in zip(extra_rows, extra_items, strict=True)
                    ),
                ]
            )
        )
        rows, items = keys // n_items, keys % n_items

        own_index = lookup(own_keys, own_pair.astype(np.float64), keys, -1.0).astype(np.int64)
        own = own_index >= 0
        own_values = np.zeros((keys.size, self.own_features.shape[1]))
        own_values[own] = self.own_features[own_index[own]]
        buy_again = np.where(own, np.expm1(own_values[:, 4]), 0.0)
        best_buy_again = np.zeros(batch)
        np.maximum.at(best_buy_again, rows, buy_again)
        buy_again_relative = np.divide(
            buy_again,
            best_buy_again[rows],
            out=np.zeros_like(buy_again),
            where=best_buy_again[rows] > 0,
        )
        buy_again_rank = np.where(own, 1.0 / np.log2(2.0 + _rank_in_row(rows, buy_again)), 0.0)
        knn_value = lookup(knn_keys, knn_values, keys, 0.0)
        knn_relative = np.divide(
            knn_value, best_knn[rows], out=np.zeros_like(knn_value), where=best_knn[rows] > 0
        )
        user_ix = users[rows]
        user_repeat = np.where(
            user_ix < self.user_repeat.size,
            self.user_repeat[np.minimum(user_ix, max(self.user_repeat.size - 1, 0))],
            0.5,
        )
        own_f = own.astype(np.float64)
        features = np.column_stack(
            [
                own_f,
                own_values,
                buy_again_relative,
                buy_again_rank,
                knn_relative,
                np.log1p(knn_value),
                self.item_popularity[items],
                self.item_repeat[items],
                user_repeat * own_f,
                user_repeat * (1.0 - own_f),
                knn_relative * (1.0 - own_f),
            ]
        )
        return Candidates(rows, items, features)


def _rank_in_row(rows: IntArray, values: FloatArray) -> FloatArray:
    """0-based rank of each value within its row, largest first."""
    order = np.lexsort((-values, rows))
    sorted_rows = rows[order]
    starts = np.searchsorted(sorted_rows, sorted_rows, side="left")
    rank = np.empty(rows.size, dtype=np.float64)
    rank[order] = np.arange(rows.size) - starts
    return rank


class Hybrid:
    """The learned blend (see the module docstring). ``fit`` takes order lines (one timestamp
    per order), optionally browsing events (views, add-to-cart, weighted) that feed the
    co-occurrence, and optionally a segment per user for the popular candidates and the
    cold-start fallback."""

    def __init__(
        self,
        *,
        neighbours: int = 100,
        similarity: Similarity = "bm25",
        half_life_days: float = 60.0,
        new_items: int = 30,
        popular_items: int = 20,
        l2: float = 1.0,
        training_orders: int = 1,
        batch_size: int = 1024,
    ) -> None:
        self.neighbours = neighbours
        self.similarity: Similarity = similarity
        self.half_life_days = half_life_days
        self.new_items = new_items
        self.popular_items = popular_items
        self.l2 = l2
        self.training_orders = training_orders
        self.batch_size = batch_size
        self.n_items = 0
        self.model: LogisticModel | None = None
        self.sources: _Sources | None = None
        self.training_rows = 0

    def parameters(self) -> dict[str, object]:
        return {
            "neighbours": self.neighbours,
            "similarity": self.similarity,
            "half_life_days": self.half_life_days,
            "new_items": self.new_items,
            "popular_items": self.popular_items,
            "l2": self.l2,
            "training_orders": self.training_orders,
        }

    def _sources(
        self, purchases: Events, browsing: Events | None, segments: ArrayLike | None
    ) -> _Sources:
        return _Sources(
            purchases,
            browsing,
            segments,
            neighbours=self.neighbours,
            similarity=self.similarity,
            half_life_days=self.half_life_days,
        )

    def fit(
        self,
        purchases: Events,
        *,
        browsing: Events | None = None,
        segments: ArrayLike | None = None,
    ) -> Self:
        self.n_items = purchases.n_items
        seg = None if segments is None else np.asarray(segments, dtype=np.int64)
        parts_x: list[FloatArray] = []
        parts_y: list[FloatArray] = []
        remaining, remaining_browsing = purchases, browsing
        for _ in range(self.training_orders):
            past, label = last_order_split(remaining)
            if len(past) == 0:
                break
            cut = np.full(purchases.n_users, np.inf)
            np.minimum.at(cut, label.users, label.timestamps)
            if remaining_browsing is not None:
                remaining_browsing = remaining_browsing.select(
                    remaining_browsing.timestamps < cut[remaining_browsing.users]
                )
            sources = self._sources(past, remaining_browsing, segments)
            x_part, y_part = self._examples(sources, past, label, seg)
            parts_x.append(x_part)
            parts_y.append(y_part)
            remaining = past
        x = np.vstack(parts_x) if parts_x else np.zeros((0, len(FEATURES)))
        y = np.concatenate(parts_y) if parts_y else np.zeros(0)
        self.training_rows = int(y.size)
        if y.size == 0 or y.min() == y.max():
            # too little history to learn from: rank by the buy-again score, then neighbours
            coef = np.zeros(len(FEATURES))
            coef[FEATURES.index("log_buy_again")] = 1.0
            coef[FEATURES.index("knn_relative_new")] = 0.1
            self.model = LogisticModel(coef, -3.0, np.zeros(len(FEATURES)), np.ones(len(FEATURES)))
        else:
            self.model = LogisticModel.fit(x, y, l2=self.l2)
        self.sources = self._sources(purchases, browsing, segments)
        return self

    def _examples(
        self, sources: _Sources, past: Events, label: Events, seg: IntArray | None
    ) -> tuple[FloatArray, FloatArray]:
        """Features of the candidates of users with history, labelled by the next order."""
        users = np.intersect1d(np.unique(past.users), np.unique(label.users))
        label_keys = np.unique(pair_keys(label.users, label.items, self.n_items))
        parts_x, parts_y = [], []
        for start in range(0, users.size, self.batch_size):
            batch = users[start : start + self.batch_size]
            cand = sources.candidates(
                batch, self.new_items, self.popular_items, None if seg is None else seg[batch]
            )
            keys = pair_keys(batch[cand.rows], cand.items, self.n_items)
            parts_x.append(cand.features)
            parts_y.append(np.isin(keys, label_keys).astype(np.float64))
        if not parts_x:
            return np.zeros((0, len(FEATURES))), np.zeros(0)
        return np.vstack(parts_x), np.concatenate(parts_y)

    def scores(self, users: ArrayLike, *, segments: ArrayLike | None = None) -> CsrMatrix:
        """The candidates' probabilities for a batch of users (rows) as a sparse matrix."""
        if self.sources is None or self.model is None:
            raise RuntimeError("fit the model first")
        user_ix = as_index_array(users, "users")
        seg = None if segments is None else np.asarray(segments, dtype=np.int64).reshape(-1)
        cand = self.sources.candidates(user_ix, self.new_items, self.popular_items, seg)
        probability = self.model.probability(cand.features)
        # customers without purchases get the popular fallback as it is, not re-ranked
        has_history = self.sources.has_history(user_ix)[cand.rows]
        return csr(
            cand.rows[has_history],
            cand.items[has_history],
            probability[has_history],
            (user_ix.size, self.n_items),
        )

    def recommend_batch(
        self,
        users: ArrayLike,
        n: int = 10,
        exclude: Iterable[ArrayLike] | CsrMatrix | None = None,
        *,
        segments: ArrayLike | None = None,
    ) -> TopN:
        if self.sources is None:
            raise RuntimeError("fit the model first")
        user_ix = as_index_array(users, "users")
        excluded = exclusion_matrix(exclude, user_ix.size, self.n_items)
        seg = None if segments is None else np.asarray(segments, dtype=np.int64).reshape(-1)
        parts = []
        for start in range(0, user_ix.size, self.batch_size):
            stop = start + self.batch_size
            scores = self.scores(
                user_ix[start:stop], segments=None if seg is None else seg[start:stop]
            )
            part_excluded = None if excluded is None else excluded[start:stop]
            top = top_n_sparse(drop_entries(scores, part_excluded), n)
            fill = self.sources.popular.recommend_batch(
                user_ix[start:stop],
                n,
                part_excluded,
                segments=None if seg is None else seg[start:stop],
            )
            # fallback items are scored by the share of customers who bought them
            customers = max(float(np.count_nonzero(self.sources.history.n_orders)), 1.0)
            fill = TopN(fill.items, (fill.scores / customers).astype(np.float32))
            parts.append(merge_ranked(top, fill, n, self.n_items))
        if not parts:
            return empty_top_n(0, n)
        return TopN(np.vstack([p.items for p in parts]), np.vstack([p.scores for p in parts]))

    def recommend(
        self,
        user: int,
        n: int = 10,
        exclude: ArrayLike | None = None,
        *,
        segment: int | None = None,
    ) -> Recommendation:
        return self.recommend_batch(
            [user],
            n,
            None if exclude is None else [exclude],
            segments=None if segment is None else [segment],
        ).row(0)

    def coefficients(self) -> dict[str, float]:
        """The learned weight of each (standardised) feature."""
        if self.model is None:
            return {}
        return {name: float(c) for name, c in zip(FEATURES, self.model.coef, strict=True)}

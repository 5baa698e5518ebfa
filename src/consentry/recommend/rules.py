"""Business rules, applied after any model as a post-filter on its ranked lists.

In this order:

1. out-of-stock items are removed (``in_stock`` flag per item);
2. items the user already bought are removed unless replenishable (``purchased`` user x item
   matrix, ``replenishable`` flag per item);
3. scores are multiplied by their category's factor (``category_factors``: > 1 boosts, < 1
   buries; scores are expected to be non-negative) and the list re-sorted (stable: equal scores
   keep the model's order);
4. diversity across categories, either a cap of ``max_per_category`` items per category, or
   maximal marginal relevance with ``diversity`` = lambda in (0, 1]: repeatedly pick the item
   maximising lambda * score / best score - (1 - lambda) * [its category is already listed];
   items without a category (-1) are never capped nor penalised;
5. the first ``n`` are kept.

Everything is vectorised over the batch; a request applies them to one precomputed list (a few
array look-ups), so ask the model for more than ``n`` items (see :meth:`BusinessRules.over_fetch`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numpy.typing import ArrayLike

from consentry.recommend._arrays import (
    BoolArray,
    CsrMatrix,
    FloatArray,
    IntArray,
    Recommendation,
    TopN,
    as_index_array,
    coo_keys,
    empty_top_n,
    lookup,
    pair_keys,
)

NO_CATEGORY = -1


class BusinessRules:
    """The post-filter (see the module docstring). Every argument is optional."""

    def __init__(
        self,
        n_items: int,
        *,
        in_stock: ArrayLike | None = None,
        replenishable: ArrayLike | None = None,
        purchased: CsrMatrix | None = None,
        categories: ArrayLike | None = None,
        category_factors: Mapping[int, float] | None = None,
        max_per_category: int | None = None,
        diversity: float | None = None,
    ) -> None:
        self.n_items = n_items
        self.in_stock: BoolArray | None = self._flags(in_stock, "in_stock")
        self.replenishable: BoolArray | None = self._flags(replenishable, "replenishable")
        self.purchased_keys: IntArray | None = None
        if purchased is not None:
            import scipy.sparse as sp  # only rules built from a purchase matrix need it

            matrix = sp.csr_matrix(purchased)
            matrix.eliminate_zeros()
            matrix.sort_indices()
            if matrix.shape[1] != n_items:
                raise ValueError("purchased must have one column per item")
            self.purchased_keys = coo_keys(matrix)
        self.categories: IntArray | None = None
        if categories is not None:
            cats = np.asarray(categories, dtype=np.int64).reshape(-1)
            if cats.size != n_items:
                raise ValueError("categories needs one value per item")
            if (cats < NO_CATEGORY).any():
                raise ValueError("a category is -1 (none) or a non-negative index")
            self.categories = cats
        self.item_factor: FloatArray | None = None
        if category_factors:
            if self.categories is None:
                raise ValueError("category_factors needs categories")
            factor_of_category = np.ones(int(max(self.categories.max(initial=0), 0)) + 1)
            for category, factor in category_factors.items():
                if not np.isfinite(factor) or factor < 0:
                    raise ValueError("a category factor must be finite and >= 0")
                if 0 <= category < factor_of_category.size:
                    factor_of_category[category] = factor
            self.item_factor = np.where(
                self.categories >= 0, factor_of_category[np.maximum(self.categories, 0)], 1.0
            )
        if max_per_category is not None and max_per_category < 1:
            raise ValueError("max_per_category must be >= 1")
        if diversity is not None and not 0 < diversity <= 1:
            raise ValueError("diversity (the MMR lambda) must be in (0, 1]")
        if (max_per_category is not None or diversity is not None) and self.categories is None:
            raise ValueError("diversity rules need categories")
        if max_per_category is not None and diversity is not None:
            raise ValueError("choose a category cap or MMR diversity, not both")
        self.max_per_category = max_per_category
        self.diversity = diversity

    def _flags(self, values: ArrayLike | None, name: str) -> BoolArray | None:
        if values is None:
            return None
        flags = np.asarray(values, dtype=bool).reshape(-1)
        if flags.size != self.n_items:
            raise ValueError(f"{name} needs one flag per item")
        return flags

    def over_fetch(self, n: int) -> int:
        """How many items to ask the model for so that ``n`` usually survive the rules."""
        factor = 3 if self.max_per_category or self.diversity else 2
        return n * factor + 20

    def apply(
        self, user: int | None, items: ArrayLike, scores: ArrayLike, n: int
    ) -> Recommendation:
        """One ranked list through the rules (``user`` None: no purchase rule). The request
        path: a handful of array look-ups on the list, the diversity pass in plain Python over
        its items; same result as one row of :meth:`apply_batch`."""
        listed = np.asarray(items, dtype=np.int64).reshape(-1)
        values = np.asarray(scores, dtype=np.float64).reshape(-1)
        keep = listed >= 0
        if self.in_stock is not None:
            keep &= self.in_stock[np.where(keep, listed, 0)]
        listed, values = listed[keep], values[keep]
        if self.purchased_keys is not None and user is not None and listed.size:
            keys = np.int64(user) * np.int64(self.n_items) + listed
            at = np.minimum(
                np.searchsorted(self.purchased_keys, keys), self.purchased_keys.size - 1
            )
            bought = self.purchased_keys[at] == keys if self.purchased_keys.size else keys < 0
            if self.replenishable is not None:
                bought &= ~self.replenishable[listed]
            listed, values = listed[~bought], values[~bought]
        if self.item_factor is not None:
            values = values * self.item_factor[listed]
            order = np.argsort(-values, kind="stable")
            listed, values = listed[order], values[order]
        if self.categories is not None and self.max_per_category is not None:
            cap, taken = self.max_per_category, 0
            counts: dict[int, int] = {}
            chosen: list[int] = []
            for index, category in enumerate(self.categories[listed].tolist()):
                if category >= 0:
                    if counts.get(category, 0) >= cap:
                        continue
                    counts[category] = counts.get(category, 0) + 1
                chosen.append(index)
                taken += 1
                if taken >= n:
                    break
            listed, values = listed[chosen], values[chosen]
        elif self.categories is not None and self.diversity is not None:
            listed, values = self._mmr_one(listed, values, n)
        return Recommendation(listed[:n].astype(np.int32), values[:n].astype(np.float32))

    def _mmr_one(self, listed: IntArray, values: FloatArray, n: int) -> tuple[IntArray, FloatArray]:
        assert self.categories is not None
        lam = float(self.diversity or 1.0)
        best = float(values.max()) if values.size else 0.0
        relevance = (values / (best if best > 0 else 1.0)).tolist()
        cats = self.categories[listed].tolist()
        remaining = list(range(listed.size))
        seen: set[int] = set()
        chosen: list[int] = []
        while remaining and len(chosen) < n:
            pick = max(
                remaining,
                key=lambda i: (
                    lam * relevance[i] - (1 - lam) * (cats[i] >= 0 and cats[i] in seen),
                    -i,
                ),
            )
            remaining.remove(pick)
            chosen.append(pick)
            seen.add(cats[pick])
        return listed[chosen], values[chosen]

    def apply_batch(self, users: ArrayLike | None, ranked: TopN, n: int) -> TopN:
        """Ranked lists (one row per user, padded with -1) through the rules."""
        items = np.asarray(ranked.items, dtype=np.int64)
        scores = np.asarray(ranked.scores, dtype=np.float64)
        rows, width = items.shape
        valid = items >= 0
        safe = np.where(valid, items, 0)
        if self.in_stock is not None:
            valid &= self.in_stock[safe]
        if self.purchased_keys is not None and users is not None:
            user_ix = as_index_array(users, "users")
            if user_ix.size != rows:
                raise ValueError("users needs one value per list")
            keys = pair_keys(np.broadcast_to(user_ix[:, None], items.shape), safe, self.n_items)
            bought = lookup(
                self.purchased_keys, np.ones(self.purchased_keys.size), keys.ravel(), 0.0
            )
            bought_mask = bought.reshape(items.shape) > 0
            if self.replenishable is not None:
                bought_mask &= ~self.replenishable[safe]
            valid &= ~bought_mask
        if self.item_factor is not None:
            scores = scores * self.item_factor[safe]
        scores = np.where(valid, scores, -np.inf)
        position = np.broadcast_to(np.arange(width), items.shape)
        order = np.lexsort((position, -scores), axis=1)
        items = np.take_along_axis(items, order, axis=1)
        scores = np.take_along_axis(scores, order, axis=1)
        valid = np.take_along_axis(valid, order, axis=1)
        if self.categories is not None and (self.max_per_category or self.diversity):
            cats = np.where(valid, self.categories[np.where(valid, items, 0)], NO_CATEGORY)
            if self.max_per_category is not None:
                valid &= ~self._over_cap(cats, valid, self.max_per_category)
            else:
                items, scores, valid = self._mmr(items, scores, valid, cats, n)
        out = empty_top_n(rows, n)
        place = np.cumsum(valid, axis=1) - 1
        keep = valid & (place < n)
        row_ix = np.nonzero(keep)[0]
        out.items[row_ix, place[keep]] = items[keep]
        out.scores[row_ix, place[keep]] = scores[keep]
        return out

    @staticmethod
    def _over_cap(cats: IntArray, valid: BoolArray, cap: int) -> BoolArray:
        """True where an item is past the cap of its category within its row."""
        rows, width = cats.shape
        row_ix = np.repeat(np.arange(rows), width)
        flat = cats.ravel()
        counted = valid.ravel() & (flat >= 0)
        # rank of each item within (row, category), in list order
        order = np.lexsort((np.tile(np.arange(width), rows), flat, row_ix))
        group = pair_keys(row_ix[order], flat[order] + 1, 1 << 32)
        counted_sorted = counted[order].astype(np.int64)
        running = np.cumsum(counted_sorted)
        starts = np.searchsorted(group, group, side="left")
        before = np.where(starts > 0, running[starts - 1], 0)
        rank = running - before - counted_sorted
        over = np.zeros(flat.size, dtype=bool)
        over[order] = counted_sorted.astype(bool) & (rank >= cap)
        return over.reshape(cats.shape)

    def _mmr(
        self, items: IntArray, scores: FloatArray, valid: BoolArray, cats: IntArray, n: int
    ) -> tuple[IntArray, FloatArray, BoolArray]:
        lam = float(self.diversity or 1.0)
        rows, width = items.shape
        best = np.where(valid, scores, -np.inf).max(axis=1, initial=-np.inf)
        scale = np.where(np.isfinite(best) & (best > 0), best, 1.0)
        relevance = np.where(valid, scores / scale[:, None], -np.inf)
        n_cats = int(cats.max(initial=0)) + 2
        seen = np.zeros((rows, n_cats), dtype=bool)
        remaining = valid.copy()
        picked = np.full((rows, n), -1, dtype=np.int64)
        all_rows = np.arange(rows)
        for step in range(min(n, width)):
            penalty = np.where(cats >= 0, seen[all_rows[:, None], cats + 1], False)
            value = np.where(remaining, lam * relevance - (1 - lam) * penalty, -np.inf)
            choice = np.argmax(value, axis=1)
            ok = remaining[all_rows, choice]
            picked[ok, step] = choice[ok]
            remaining[all_rows[ok], choice[ok]] = False
            seen[all_rows[ok], cats[all_rows[ok], choice[ok]] + 1] = True
        has = picked >= 0
        safe = np.where(has, picked, 0)
        return (
            np.where(has, np.take_along_axis(items, safe, axis=1), -1),
            np.where(has, np.take_along_axis(scores, safe, axis=1), -np.inf),
            has,
        )

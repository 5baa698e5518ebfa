"""Properties of every model: a list never holds an excluded item or a repeat, and at most n."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from consentry.recommend import (
    ALS,
    BuyAgain,
    Events,
    Hybrid,
    ItemItem,
    ModelArtefact,
    MostPopular,
    implicit_available,
)

N_USERS, N_ITEMS = 6, 9


@st.composite
def shops(draw: st.DrawFn) -> Events:
    lines = draw(
        st.lists(
            st.tuples(st.integers(0, N_USERS - 1), st.integers(0, N_ITEMS - 1), st.integers(0, 5)),
            min_size=1,
            max_size=40,
        )
    )
    return Events.from_arrays(
        [u for u, _, _ in lines],
        [i for _, i, _ in lines],
        None,
        [float(t) * 86_400 for _, _, t in lines],
        n_users=N_USERS,
        n_items=N_ITEMS,
    )


Fit = Callable[[Events], Any]
FITS: dict[str, Fit] = {
    "popular": lambda e: MostPopular().fit(e.matrix(), np.arange(N_USERS) % 2 - 1),
    "item-cosine": lambda e: ItemItem(neighbours=3).fit(e.matrix()),
    "item-bm25": lambda e: ItemItem(neighbours=3, similarity="bm25").fit(e.matrix()),
    "buy-again": lambda e: BuyAgain(half_life_days=3).fit(e),
    "hybrid": lambda e: Hybrid(neighbours=3, new_items=3, popular_items=3).fit(e),
}
if implicit_available():
    FITS["als"] = lambda e: ALS(factors=2, iterations=2).fit(e.matrix())


def check(items: np.ndarray, excluded: set[int], n: int) -> None:
    listed = items.tolist()
    assert len(listed) <= n
    assert len(set(listed)) == len(listed)
    assert not set(listed) & excluded
    assert all(0 <= i < N_ITEMS for i in listed)


@settings(max_examples=50, deadline=None)
@given(
    shops(),
    st.sampled_from(sorted(FITS)),
    st.integers(0, N_USERS + 2),
    st.integers(1, N_ITEMS + 2),
    st.lists(st.integers(0, N_ITEMS - 1), max_size=N_ITEMS),
)
def test_recommend_never_returns_excluded_items_or_repeats(
    events: Events, name: str, user: int, n: int, exclude: list[int]
) -> None:
    model = FITS[name](events)
    check(model.recommend(user, n, exclude=exclude).items, set(exclude), n)
    users = np.arange(N_USERS)
    excluded = [exclude if u % 2 else [] for u in users]
    batch = model.recommend_batch(users, n, excluded)
    assert batch.items.shape == (N_USERS, n)
    for row in range(N_USERS):
        padded = batch.items[row]
        # padding only at the end
        valid = padded >= 0
        assert not (~valid[:-1] & valid[1:]).any()
        check(batch.row(row).items, set(excluded[row]), n)


@settings(max_examples=30, deadline=None)
@given(
    shops(),
    st.integers(0, N_USERS + 2),
    st.integers(1, N_ITEMS + 2),
    st.lists(st.integers(0, N_ITEMS - 1), max_size=N_ITEMS),
)
def test_artefact_lists_obey_the_same_rules(
    events: Events, user: int, n: int, exclude: list[int]
) -> None:
    model = Hybrid(neighbours=3, new_items=3, popular_items=3).fit(events)
    assert model.sources is not None
    artefact = ModelArtefact.build(
        model,
        n_users=N_USERS,
        popular=model.sources.popular,
        item_item=model.sources.item_item,
        top_n=N_ITEMS,
        model_name="hybrid",
    )
    check(artefact.recommend(user, n, exclude).items, set(exclude), n)
    check(artefact.similar(user % N_ITEMS, n, exclude).items, set(exclude), n)

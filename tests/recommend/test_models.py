"""Each model on the synthetic shop, where the right answer is known by construction."""

from __future__ import annotations

import numpy as np
import pytest

from consentry.recommend import (
    ALS,
    BuyAgain,
    EventKind,
    Events,
    Hybrid,
    ItemItem,
    MostPopular,
    implicit_available,
    last_order_split,
)
from tests.recommend import shop


@pytest.fixture(scope="module")
def purchases() -> Events:
    return shop.purchases()


def test_most_popular_global_ranking() -> None:
    # item 2 bought by 3 users, item 0 by 2, item 1 by 1 (weight does not matter by default)
    events = Events.from_arrays([0, 1, 2, 0, 1, 0, 3], [2, 2, 2, 0, 0, 1, 1], [1, 1, 1, 1, 1, 9, 1])
    model = MostPopular().fit(events.matrix())
    assert model.recommend(0, 3).items.tolist() == [2, 0, 1]
    assert model.recommend(0, 3, exclude=[2]).items.tolist() == [0, 1]
    by_weight = MostPopular(count="weight").fit(events.matrix())
    assert by_weight.recommend(0, 1).items.tolist() == [1]


def test_most_popular_per_segment_then_global(purchases: Events) -> None:
    model = MostPopular().fit(purchases.matrix(), shop.segments())
    # a dog customer's segment ranking starts with dog food, then the fill from global
    dog = model.recommend(20, 3)
    assert dog.items[0] == 5
    assert len(set(dog.items.tolist())) == 3
    baby = model.recommend(10, 2).items.tolist()
    assert sorted(baby) == [2, 3]
    # an unknown user with a segment passed explicitly
    assert model.recommend(1000, 1, segment=1).items.tolist()[0] in (2, 3)


def test_item_item_also_bought(purchases: Events) -> None:
    for similarity in ("cosine", "bm25"):
        model = ItemItem(similarity=similarity, neighbours=5).fit(purchases.matrix())  # type: ignore[arg-type]
        assert model.similar(0, 1).items.tolist() == [1], similarity
        assert model.similar(2, 2).items.tolist() in ([3, 4], [4, 3]), similarity
        # an item is never its own neighbour
        assert 0 not in model.similar(0, 10).items.tolist()
        # customer 30 bought coffee once: filters come first among new items
        assert model.recommend(30, 1, exclude=[0]).items.tolist() == [1], similarity
        # a basket of nappies -> wipes / cream, never the nappies themselves
        basket = model.for_items([2], 2).items.tolist()
        assert 2 not in basket and set(basket) <= {3, 4}


def test_item_item_keeps_top_k_sparse(purchases: Events) -> None:
    model = ItemItem(neighbours=2).fit(purchases.matrix())
    per_item = np.diff(model.similarity.indptr)
    assert per_item.max() <= 2
    table = model.neighbour_table()
    assert table.items.shape == (shop.N_ITEMS, 2)


def test_buy_again_ranks_the_most_repeated_item_first() -> None:
    # item 4 in 3 orders, item 9 in 2, item 1 once; user 1 never bought
    events = Events.from_arrays([0, 0, 0, 0, 0, 0], [4, 9, 4, 9, 4, 1], None, [0, 0, 1, 1, 2, 2])
    model = BuyAgain().fit(events)
    result = model.recommend(0, 5)
    assert result.items.tolist() == [4, 9, 1]
    assert model.recommend(1, 5).items.size == 0
    assert model.recommend(0, 5, exclude=[4]).items.tolist() == [9, 1]


def test_buy_again_breaks_ties_by_recency() -> None:
    events = Events.from_arrays([0, 0, 0, 0], [3, 5, 5, 3], None, [0, 1, 2, 3])
    # both bought twice; 3 most recently
    assert BuyAgain().fit(events).recommend(0, 2).items.tolist() == [3, 5]


def test_buy_again_favours_replenishables_that_are_due() -> None:
    day = shop.DAY
    # item 1 bought every 30 days, last 30 days ago (due now); item 2 every 30 days, last today
    events = Events.from_arrays(
        [0, 0, 0, 0, 0], [1, 1, 2, 2, 9], None, np.array([0, 30, 30, 60, 60]) * day
    )
    model = BuyAgain(replenishable=np.ones(10, dtype=bool)).fit(events)
    assert model.recommend(0, 1).items.tolist() == [1]
    # without the replenishment term the latest purchase wins the tie
    assert BuyAgain().fit(events).recommend(0, 1).items.tolist() == [2]


def test_buy_again_with_decay_prefers_recent_purchases() -> None:
    day = shop.DAY
    # item 1 bought 3 times a year ago, item 2 twice last week
    events = Events.from_arrays(
        [0, 0, 0, 0, 0], [1, 1, 1, 2, 2], None, np.array([0, 1, 2, 358, 365]) * day
    )
    assert BuyAgain().fit(events).recommend(0, 1).items.tolist() == [1]
    decayed = BuyAgain(half_life_days=30).fit(events)
    assert decayed.recommend(0, 1).items.tolist() == [2]


def test_hybrid_ranks_each_customers_staples_first(purchases: Events) -> None:
    model = Hybrid(neighbours=5, new_items=3, popular_items=3).fit(
        purchases, segments=shop.segments()
    )
    assert set(model.recommend(0, 2).items.tolist()) == {0, 1}
    assert set(model.recommend(12, 2).items.tolist()) == {2, 3}
    assert model.recommend(25, 1).items.tolist() == [5]
    # scores are probabilities
    scores = model.recommend(0, 5).scores
    assert ((scores >= 0) & (scores <= 1)).all()
    assert set(model.coefficients()) and model.training_rows > 0


def test_hybrid_fills_with_neighbours_for_a_thin_history(purchases: Events) -> None:
    model = Hybrid(neighbours=5, new_items=3, popular_items=3).fit(purchases)
    # customer 30 bought coffee once; new coffee drinkers went on to buy filters
    assert model.recommend(30, 2).items.tolist() == [0, 1]
    assert model.recommend(30, 1, exclude=[0]).items.tolist() == [1]


def test_cold_start_gets_the_fallback(purchases: Events) -> None:
    model = Hybrid(neighbours=5).fit(purchases, segments=shop.segments())
    popular = MostPopular().fit(purchases.matrix())
    cold = model.recommend(31, 3)
    assert cold.items.tolist() == popular.recommend(31, 3).items.tolist()
    assert ((cold.scores > 0) & (cold.scores <= 1)).all()
    # a cold customer with a segment gets the segment's favourites
    assert model.recommend(33, 1).items.tolist() == [5]
    # a user index the model never saw
    assert model.recommend(500, 3).items.size == 3


def test_hybrid_learns_on_the_next_basket_split(purchases: Events) -> None:
    history, last = last_order_split(purchases)
    model = Hybrid(neighbours=5).fit(history)
    from consentry.recommend import evaluate

    users = np.arange(30)
    top = model.recommend_batch(users, 3)
    # the staples of each group are always in the next basket: all of them are found
    staples = [
        (u, i) for g, members in shop.GROUPS.items() for u in members for i in shop.STAPLES[g]
    ]
    truth = Events.from_arrays(
        [u for u, _ in staples], [i for _, i in staples], n_users=30, n_items=shop.N_ITEMS
    ).matrix()
    assert evaluate(top.items, truth, k=3)["recall@3"] == 1.0
    assert evaluate(top.items, last.matrix()[users], k=3)["recall@3"] > 0.6


@pytest.mark.skipif(not implicit_available(), reason="the optional package implicit is absent")
def test_als_separates_the_groups(purchases: Events) -> None:
    model = ALS(factors=3, regularization=5.0, weighting="none").fit(purchases.matrix())
    assert set(model.recommend(1, 2).items.tolist()) == {0, 1}
    assert set(model.recommend(12, 2).items.tolist()) == {2, 3}
    assert model.recommend(21, 1).items.tolist() == [5]
    assert model.recommend(1, 3, exclude=[0]).items.tolist()[0] == 1
    # a user the model never saw gets nothing from it
    assert model.recommend(999, 3).items.size == 0


def test_hybrid_takes_browsing_into_the_co_occurrence(purchases: Events) -> None:
    # every dog customer also viewed item 11 (before their last order): 11 becomes dog food's
    # neighbour, though nobody bought it with dog food
    dog = list(shop.GROUPS["dog"])
    browsing = Events.from_kinds(
        dog + dog,
        [5] * len(dog) + [11] * len(dog),
        [EventKind.VIEW] * (2 * len(dog)),
        [shop.DAY] * (2 * len(dog)),
        n_users=shop.N_USERS,
        n_items=shop.N_ITEMS,
    )
    model = Hybrid(neighbours=5).fit(purchases, browsing=browsing)
    assert model.sources is not None
    assert model.sources.item_item.similar(5, 1).items.tolist() == [11]
    assert model.recommend(25, 1).items.tolist() == [5]

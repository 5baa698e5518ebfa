"""Business rules as a post-filter."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consentry.recommend import BusinessRules, Events, TopN

N_ITEMS = 10
CATEGORIES = np.array([0, 0, 0, 1, 1, 1, 2, 2, -1, -1])
ITEMS = np.arange(N_ITEMS)
SCORES = np.linspace(1.0, 0.1, N_ITEMS)  # item 0 best, item 9 worst


def test_out_of_stock_items_are_never_returned() -> None:
    in_stock = np.ones(N_ITEMS, dtype=bool)
    in_stock[[0, 4]] = False
    rules = BusinessRules(N_ITEMS, in_stock=in_stock)
    result = rules.apply(None, ITEMS, SCORES, 5)
    assert result.items.tolist() == [1, 2, 3, 5, 6]


def test_bought_items_excluded_unless_replenishable() -> None:
    purchased = Events.from_arrays([0, 0, 1], [1, 2, 3], n_users=2, n_items=N_ITEMS).matrix()
    replenishable = np.zeros(N_ITEMS, dtype=bool)
    replenishable[2] = True
    rules = BusinessRules(N_ITEMS, purchased=purchased, replenishable=replenishable)
    # user 0 bought 1 (not replenishable: gone) and 2 (replenishable: kept)
    assert rules.apply(0, ITEMS, SCORES, 4).items.tolist() == [0, 2, 3, 4]
    assert rules.apply(1, ITEMS, SCORES, 4).items.tolist() == [0, 1, 2, 4]
    # without replenishable flags every bought item is excluded
    strict = BusinessRules(N_ITEMS, purchased=purchased)
    assert strict.apply(0, ITEMS, SCORES, 3).items.tolist() == [0, 3, 4]


def test_category_cap_is_respected() -> None:
    rules = BusinessRules(N_ITEMS, categories=CATEGORIES, max_per_category=1)
    result = rules.apply(None, ITEMS, SCORES, 5)
    # one of each category, then the uncategorised items (never capped)
    assert result.items.tolist() == [0, 3, 6, 8, 9]
    capped = BusinessRules(N_ITEMS, categories=CATEGORIES, max_per_category=2)
    items = capped.apply(None, ITEMS, SCORES, 10).items
    for category in (0, 1, 2):
        assert (CATEGORIES[items] == category).sum() <= 2


def test_boost_and_bury_by_category() -> None:
    rules = BusinessRules(N_ITEMS, categories=CATEGORIES, category_factors={2: 10.0, 0: 0.1})
    result = rules.apply(None, ITEMS, SCORES, 4)
    assert result.items.tolist() == [6, 7, 3, 4]
    assert result.scores[0] == pytest.approx(SCORES[6] * 10.0)


def test_mmr_diversifies_across_categories() -> None:
    rules = BusinessRules(N_ITEMS, categories=CATEGORIES, diversity=0.3)
    assert rules.apply(None, ITEMS, SCORES, 3).items.tolist() == [0, 3, 6]
    relevance_only = BusinessRules(N_ITEMS, categories=CATEGORIES, diversity=1.0)
    assert relevance_only.apply(None, ITEMS, SCORES, 3).items.tolist() == [0, 1, 2]


def test_invalid_rules_are_refused() -> None:
    with pytest.raises(ValueError):
        BusinessRules(N_ITEMS, max_per_category=2)
    with pytest.raises(ValueError):
        BusinessRules(N_ITEMS, in_stock=[True])
    with pytest.raises(ValueError):
        BusinessRules(N_ITEMS, categories=CATEGORIES, max_per_category=1, diversity=0.5)
    with pytest.raises(ValueError):
        BusinessRules(N_ITEMS, categories=CATEGORIES, diversity=0.0)


@st.composite
def rule_sets(draw: st.DrawFn) -> tuple[BusinessRules, TopN, list[int], int]:
    rows = draw(st.integers(1, 4))
    in_stock = np.array(draw(st.lists(st.booleans(), min_size=N_ITEMS, max_size=N_ITEMS)))
    cats = np.array(draw(st.lists(st.integers(-1, 3), min_size=N_ITEMS, max_size=N_ITEMS)))
    factors = draw(st.dictionaries(st.integers(0, 3), st.sampled_from([0.5, 1.0, 2.0])))
    diversity = draw(st.sampled_from(["cap", "mmr", None]))
    bought = draw(st.lists(st.tuples(st.integers(0, rows - 1), st.integers(0, N_ITEMS - 1))))
    purchased = Events.from_arrays(
        [u for u, _ in bought], [i for _, i in bought], n_users=rows, n_items=N_ITEMS
    ).matrix()
    rules = BusinessRules(
        N_ITEMS,
        in_stock=in_stock,
        purchased=purchased,
        replenishable=np.array(draw(st.lists(st.booleans(), min_size=N_ITEMS, max_size=N_ITEMS))),
        categories=cats,
        category_factors=factors,
        max_per_category=draw(st.integers(1, 3)) if diversity == "cap" else None,
        diversity=draw(st.sampled_from([0.3, 0.7, 1.0])) if diversity == "mmr" else None,
    )
    lists, scores = [], []
    for _ in range(rows):
        items = draw(st.permutations(list(range(N_ITEMS))))[: draw(st.integers(0, N_ITEMS))]
        values = sorted(
            draw(
                st.lists(st.sampled_from([0.1, 0.5, 0.9]), min_size=len(items), max_size=len(items))
            ),
            reverse=True,
        )
        lists.append(items + [-1] * (N_ITEMS - len(items)))
        scores.append(values + [-np.inf] * (N_ITEMS - len(items)))
    ranked = TopN(np.array(lists, dtype=np.int32), np.array(scores, dtype=np.float32))
    return rules, ranked, list(range(rows)), draw(st.integers(1, N_ITEMS))


@settings(max_examples=100, deadline=None)
@given(rule_sets())
def test_single_list_and_batch_agree_and_obey_the_rules(
    case: tuple[BusinessRules, TopN, list[int], int],
) -> None:
    rules, ranked, users, n = case
    batch = rules.apply_batch(users, ranked, n)
    for row, user in enumerate(users):
        one = rules.apply(user, ranked.items[row], ranked.scores[row], n)
        assert one.items.tolist() == batch.row(row).items.tolist()
        np.testing.assert_allclose(one.scores, batch.row(row).scores, rtol=1e-6)
        items = one.items
        assert len(items) <= n
        assert len(set(items.tolist())) == len(items)
        assert set(items.tolist()) <= set(ranked.items[row].tolist())
        assert rules.in_stock is not None and rules.in_stock[items].all()
        if rules.max_per_category is not None and rules.categories is not None:
            cats = rules.categories[items]
            for category in set(cats.tolist()) - {-1}:
                assert (cats == category).sum() <= rules.max_per_category

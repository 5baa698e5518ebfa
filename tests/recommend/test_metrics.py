"""Recall@k and NDCG@k against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from consentry.recommend import Events, evaluate, ndcg_at_k, recall_at_k


def baskets(rows: list[list[int]], n_items: int = 10) -> object:
    users = [u for u, items in enumerate(rows) for _ in items]
    items = [i for row in rows for i in row]
    return Events.from_arrays(users, items, n_users=len(rows), n_items=n_items).matrix()


def test_recall_and_ndcg_by_hand() -> None:
    recommended = np.array([[1, 2, 3], [4, 5, -1]])
    truth = baskets([[2, 7], [9]])
    # user 0: hit at rank 2 out of 2 relevant -> recall 1/2, DCG 1/log2(3), IDCG 1 + 1/log2(3)
    # user 1: no hit -> 0, 0
    assert recall_at_k(recommended, truth, k=3) == pytest.approx((0.5 + 0.0) / 2)
    ndcg0 = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    assert ndcg_at_k(recommended, truth, k=3) == pytest.approx(ndcg0 / 2)


def test_basket_larger_than_k_keeps_its_size_in_recall_and_caps_the_ideal() -> None:
    recommended = np.array([[0, 1]])
    truth = baskets([[0, 1, 2, 3]])
    assert recall_at_k(recommended, truth, k=2) == pytest.approx(0.5)
    assert ndcg_at_k(recommended, truth, k=2) == pytest.approx(1.0)


def test_only_the_first_k_count_and_duplicates_count_once() -> None:
    recommended = np.array([[5, 5, 6, 7]])
    truth = baskets([[5, 7]])
    assert recall_at_k(recommended, truth, k=2) == pytest.approx(0.5)
    assert recall_at_k(recommended, truth, k=4) == pytest.approx(1.0)
    dcg = 1 + 1 / math.log2(5)
    assert ndcg_at_k(recommended, truth, k=4) == pytest.approx(dcg / (1 + 1 / math.log2(3)))


def test_users_without_a_test_basket_are_skipped() -> None:
    recommended = np.array([[1], [1]])
    truth = baskets([[1], []])
    assert evaluate(recommended, truth, k=1) == {"recall@1": 1.0, "ndcg@1": 1.0}
    assert math.isnan(recall_at_k(np.array([[1]]), baskets([[]]), k=1))


def test_shapes_are_checked() -> None:
    with pytest.raises(ValueError):
        recall_at_k(np.array([1, 2]), baskets([[1]]), k=1)
    with pytest.raises(ValueError):
        recall_at_k(np.array([[1], [2]]), baskets([[1]]), k=1)

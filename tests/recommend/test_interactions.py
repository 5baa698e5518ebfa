"""Interactions: arrays -> weighted CSR matrix, decay, the next-basket split, order history."""

from __future__ import annotations

import numpy as np
import pytest

from consentry.recommend import (
    EventKind,
    Events,
    InteractionWeights,
    PurchaseHistory,
    decay,
    interaction_matrix,
    last_order_split,
)

DAY = 86_400.0


def test_matrix_sums_weights_per_pair() -> None:
    matrix = interaction_matrix([0, 0, 1, 2, 0], [1, 1, 0, 2, 2], [1.0, 2.0, 5.0, 1.5, 1.0])
    assert matrix.shape == (3, 3)
    assert matrix.dtype == np.float32
    assert matrix.toarray().tolist() == [[0, 3, 1], [5, 0, 0], [0, 0, 1.5]]


def test_matrix_shape_can_be_larger_than_the_indices() -> None:
    matrix = interaction_matrix([0], [0], shape=(4, 5))
    assert matrix.shape == (4, 5)
    assert matrix.nnz == 1


def test_weights_by_kind() -> None:
    weights = InteractionWeights(view=1.0, cart=4.0, order=10.0)
    events = Events.from_kinds(
        [0, 0, 0, 1],
        [3, 3, 3, 3],
        [EventKind.VIEW, EventKind.CART, EventKind.ORDER, EventKind.VIEW],
        weights=weights,
    )
    assert events.matrix()[0, 3] == pytest.approx(15.0)
    assert events.matrix()[1, 3] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        InteractionWeights(view=-1.0)
    with pytest.raises(ValueError):
        weights.of([7])


def test_decay_halves_at_the_half_life() -> None:
    factors = decay([0.0, 10 * DAY, 20 * DAY], half_life_days=10.0)
    assert factors.tolist() == pytest.approx([0.25, 0.5, 1.0])
    assert decay([0.0, 5.0], None).tolist() == [1.0, 1.0]
    # an event after "now" counts as new
    assert decay([30 * DAY], 10.0, now=20 * DAY).tolist() == [1.0]


def test_decayed_matrix() -> None:
    matrix = interaction_matrix([0, 0], [0, 1], [1.0, 1.0], [0.0, 30 * DAY], half_life_days=30.0)
    assert matrix.toarray()[0].tolist() == pytest.approx([0.5, 1.0])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"users": [0, 1], "items": [0]}, "same length"),
        ({"users": [-1], "items": [0]}, "negative"),
        ({"users": [0.5], "items": [0]}, "integers"),
        ({"users": [0], "items": [0], "weights": [-1.0]}, ">= 0"),
        ({"users": [0], "items": [0], "timestamps": [np.nan]}, "finite"),
        ({"users": [3], "items": [0], "n_users": 2}, "out of range"),
    ],
)
def test_invalid_arrays_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Events.from_arrays(**kwargs)  # type: ignore[arg-type]


def test_last_order_split_holds_out_each_users_latest_order() -> None:
    events = Events.from_arrays([0, 0, 0, 1, 1, 2], [1, 2, 3, 1, 4, 5], None, [1, 1, 5, 2, 9, 4])
    history, last = last_order_split(events)
    assert sorted(zip(last.users.tolist(), last.items.tolist(), strict=True)) == [
        (0, 3),
        (1, 4),
        (2, 5),
    ]
    assert sorted(zip(history.users.tolist(), history.items.tolist(), strict=True)) == [
        (0, 1),
        (0, 2),
        (1, 1),
    ]


def test_purchase_history_counts_orders_not_lines() -> None:
    # user 0: item 7 in orders at day 0, 10 and 30 (twice in the last), item 8 once
    events = Events.from_arrays(
        [0, 0, 0, 0, 0, 1],
        [7, 7, 7, 7, 8, 7],
        None,
        np.array([0, 10, 30, 30, 10, 5]) * DAY,
    )
    history = PurchaseHistory.of(events)
    assert history.n_orders.tolist() == [3, 1]
    assert history.items.tolist() == [7, 8, 7]
    assert history.count.tolist() == [3, 1, 1]
    assert history.first_order.tolist() == [0, 1, 0]
    assert history.last_order.tolist() == [2, 1, 0]
    # gaps of item 7 by the same customer: 10 and 20 days -> median 15
    assert history.interval_days[7] == pytest.approx(15.0)
    assert np.isnan(history.interval_days[8])
    assert history.buyers[7] == 2

"""A small synthetic shop whose right answers are known by construction (no network, no files).

Items:
- 0 "coffee" and 1 "filters": every customer of group "coffee" buys both in every order;
- 2 "nappies" and 3 "wipes": group "baby" buys both in every order, 4 "cream" in every other;
- 5 "dog food": group "dog" buys it in every order;
- 6..11: occasional extras bought at random by anyone (at most once per order).
Customers 0-9 are "coffee", 10-19 "baby", 20-29 "dog"; each has 6 orders a week apart.
Customer 30 bought coffee (0) once and nothing else; customers 31-33 bought nothing; customers
34-39 are new coffee drinkers: coffee alone in their first order, coffee and filters in their
second (which is how a model learns that a coffee buyer goes on to buy filters).
"""

from __future__ import annotations

import numpy as np

from consentry.recommend import Events

DAY = 86_400.0
N_ITEMS = 12
N_USERS = 40
GROUPS = {"coffee": range(0, 10), "baby": range(10, 20), "dog": range(20, 30)}
STAPLES = {"coffee": [0, 1], "baby": [2, 3], "dog": [5]}
CATEGORIES = np.array([0, 0, 1, 1, 1, 2, 3, 3, 4, 4, 5, 5])


def purchases(seed: int = 0, orders: int = 6) -> Events:
    rng = np.random.default_rng(seed)
    users: list[int] = []
    items: list[int] = []
    times: list[float] = []
    for group, members in GROUPS.items():
        for user in members:
            for order in range(orders):
                basket = list(STAPLES[group])
                if group == "baby" and order % 2 == 0:
                    basket.append(4)
                extra = rng.choice(np.arange(6, 12), size=rng.integers(0, 2), replace=False)
                basket.extend(int(i) for i in extra)
                at = (order * 7 + user % 3) * DAY
                users.extend([user] * len(basket))
                items.extend(basket)
                times.extend([at] * len(basket))
    users.append(30)
    items.append(0)
    times.append(3 * DAY)
    for user in range(34, 40):
        users.extend([user, user, user])
        items.extend([0, 0, 1])
        times.extend([DAY, 9 * DAY, 9 * DAY])
    return Events.from_arrays(users, items, None, times, n_users=N_USERS, n_items=N_ITEMS)


def segments() -> np.ndarray:
    """Group of each customer: 0 coffee, 1 baby, 2 dog; -1 for the others (new customers 31+
    included, except 33, which is put in the dog segment to test the segment fallback)."""
    seg = np.full(N_USERS, -1, dtype=np.int64)
    for index, members in enumerate(GROUPS.values()):
        seg[list(members)] = index
    seg[33] = 2
    seg[34:40] = 0
    return seg

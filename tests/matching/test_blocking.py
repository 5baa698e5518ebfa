"""Blocking: exactly the expected pairs on a hand-built set, whatever the order of the records."""

from __future__ import annotations

import random

import numpy as np
import pytest

from consentry.errors import Invalid
from consentry.matching.blocking import Blocker, KeySpec, block_limit, pair_budget
from consentry.matching.records import RecordBatch

ROWS = {
    # id: given, surname, birth date, postcode
    "a": ("anna", "berg", "19800101", "1000"),
    "b": ("anna", "berg", "19800101", "2000"),  # same name and date as a
    "c": ("berg", "anna", "19750505", "3000"),  # a's names swapped
    "d": ("otto", "bergh", "19800101", "1000"),  # a's date and postcode
    "e": ("otto", "lind", "19600606", "4000"),
    "f": ("eva", "lind", None, "4000"),  # e's surname and postcode
    "g": ("ida", None, "19600606", "4000"),
}
RULES = [
    ("sorted(given_name,surname)",),
    ("birth_date", "postcode"),
    ("surname", "postcode"),
    ("soundex(surname)", "birth_date[:4]"),
]
EXPECTED = {
    ("a", "b"),  # names
    ("a", "c"),  # names, unordered
    ("b", "c"),  # names, unordered
    ("a", "d"),  # birth date + postcode; also soundex(berg) = soundex(bergh) + 1980
    ("b", "d"),  # soundex + year
    ("e", "f"),  # surname + postcode
    ("e", "g"),  # birth date + postcode
}


def batch_of(ids: list[str]) -> RecordBatch:
    fields = ["given_name", "surname", "birth_date", "postcode"]
    return RecordBatch.from_columns(
        ids, {f: [ROWS[i][k] for i in ids] for k, f in enumerate(fields)}
    )


def id_pairs(batch: RecordBatch, blocker: Blocker) -> list[tuple[str, str]]:
    a, b = blocker.all_pairs()
    ids = batch.ids
    return [tuple(sorted((ids[x], ids[y]))) for x, y in zip(a.tolist(), b.tolist(), strict=True)]


def test_blocking_yields_exactly_the_expected_pairs_once() -> None:
    batch = batch_of(sorted(ROWS))
    blocker = Blocker(batch, RULES)
    pairs = id_pairs(batch, blocker)
    assert len(pairs) == len(set(pairs)), "a pair came out twice"
    assert set(pairs) == EXPECTED
    a, b = blocker.all_pairs()
    assert (a < b).all()


@pytest.mark.parametrize("seed", range(5))
def test_blocking_does_not_depend_on_record_order(seed: int) -> None:
    ids = sorted(ROWS)
    random.Random(seed).shuffle(ids)
    batch = batch_of(ids)
    assert set(id_pairs(batch, Blocker(batch, RULES))) == EXPECTED


def test_small_chunks_give_the_same_pairs() -> None:
    batch = batch_of(sorted(ROWS))
    blocker = Blocker(batch, RULES)
    chunked = [
        p for a, b in blocker.pairs(chunk_size=1) for p in zip(a.tolist(), b.tolist(), strict=True)
    ]
    a, b = blocker.all_pairs()
    assert sorted(chunked) == sorted(zip(a.tolist(), b.tolist(), strict=True))


def test_oversize_blocks_are_skipped_and_counted() -> None:
    n = 30
    batch = RecordBatch.from_columns(
        [f"r{i}" for i in range(n)],
        {"surname": ["smith"] * 20 + [f"x{i % 5}" for i in range(10)]},
    )
    blocker = Blocker(batch, [("surname",)], max_block_size=10)
    assert blocker.skipped_blocks == 1
    assert blocker.stats[0].skipped_records == 20
    assert blocker.pair_bound == 5  # five blocks of two
    a, _ = blocker.all_pairs()
    assert len(a) == 5


def test_a_pair_skipped_by_an_oversize_block_is_found_by_a_later_rule() -> None:
    batch = RecordBatch.from_columns(
        ["p", "q", "r", "s"],
        {"surname": ["smith"] * 4, "postcode": ["1", "1", "2", "3"]},
    )
    blocker = Blocker(batch, [("surname",), ("postcode",)], max_block_size=3)
    assert id_pairs(batch, blocker) == [("p", "q")]


def test_rules_on_absent_fields_are_dropped() -> None:
    batch = batch_of(sorted(ROWS))
    blocker = Blocker(batch, [("email_local",), ("surname", "postcode")])
    assert blocker.rules == [("surname", "postcode")]


@pytest.mark.parametrize("text", ["bogus(surname)", "surname[:x]", "a b", "sorted(a)"])
def test_unreadable_keys_are_refused(text: str) -> None:
    with pytest.raises(Invalid):
        KeySpec.parse(text)


def test_a_rule_over_its_pair_budget_drops_its_largest_blocks_first() -> None:
    sizes = np.array([2, 2, 3, 10, 40], dtype=np.int64)  # pairs 1, 1, 3, 45, 780
    assert block_limit(sizes, 500, budget=10_000) == 500  # within budget: nothing dropped
    assert block_limit(sizes, 500, budget=50) == 10  # the block of 40 goes
    assert block_limit(sizes, 500, budget=5) == 3
    assert block_limit(sizes, 500, budget=4) == 2
    assert block_limit(sizes, 500, budget=0) == 1  # nothing fits
    assert block_limit(sizes, 5, budget=10_000) == 5  # the size cap still holds


def test_the_budget_leaves_small_batches_alone() -> None:
    assert pair_budget(5_000, 2.0) == 100_000
    assert pair_budget(1_000_000, 2.0) == 2_000_000

"""Comparison levels on hand-picked examples, and the detection of swapped names."""

from __future__ import annotations

import numpy as np
import pytest

from consentry.matching import comparisons as cmp
from consentry.matching.comparisons import Comparer
from consentry.matching.records import RecordBatch


def levels_of(spec: cmp.FieldComparison, pairs: list[tuple[str | None, str | None]]) -> list[str]:
    """The label of the level each pair of values hits."""
    values = [v for pair in pairs for v in pair]
    batch = RecordBatch.from_columns([str(i) for i in range(len(values))], {spec.field: values})
    comparer = Comparer(batch, [spec], swapped_names=None, workers=1)
    a = np.arange(0, len(values), 2, dtype=np.int32)
    levels, _ = comparer.levels(a, a + 1)
    return [spec.labels[level] for level in levels[:, 0].tolist()]


def test_name_levels() -> None:
    spec = cmp.name("surname")
    got = levels_of(
        spec,
        [
            ("martha", "martha"),  # exact
            ("martha", "marhta"),  # JW 0.961
            ("smith", "smyth"),  # JW 0.893, and one edit
            ("catherine", "kathryn"),  # JW 0.757, same metaphone (K0RN)
            ("dwayne", "duane"),  # JW 0.84, two edits, metaphones differ
            ("jones", "johnson"),
            ("jones", None),
            (None, None),
        ],
    )
    fuzzy = "jaro-winkler >= 0.88 | 1 edit | phonetic"
    assert got == [
        "exact",
        "jaro-winkler >= 0.92",
        fuzzy,
        fuzzy,
        "else",
        "else",
        "null",
        "null",
    ]


def test_typo_levels_count_transpositions_as_one_edit() -> None:
    spec = cmp.typo("birth_date", (1, 2))
    got = levels_of(
        spec,
        [
            ("19560409", "19560409"),
            ("19560409", "19560490"),  # neighbours swapped: one edit
            ("19560409", "19560419"),  # one substitution
            ("19560409", "19650490"),  # two transpositions
            ("19560409", "20011231"),
        ],
    )
    assert got == ["exact", "1 edit", "1 edit", "2 edits", "else"]


def test_exact_only_field() -> None:
    assert levels_of(cmp.exact("street_number"), [("7", "7"), ("7", "17"), ("", "7")]) == [
        "exact",
        "else",
        "null",
    ]


def _names(rows: list[tuple[str | None, str | None]]) -> Comparer:
    batch = RecordBatch.from_columns(
        [str(i) for i in range(len(rows))],
        {"given_name": [r[0] for r in rows], "surname": [r[1] for r in rows]},
    )
    return Comparer(batch, [cmp.name("given_name"), cmp.name("surname")], workers=1)


def test_swapped_names_are_compared_across() -> None:
    comparer = _names(
        [("john", "smith"), ("smith", "john"), ("smith", "jonh"), ("john", "smith"), ("mary", "x")]
    )
    a = np.array([0, 0, 0, 1], dtype=np.int32)
    b = np.array([1, 2, 3, 4], dtype=np.int32)
    levels, swapped = comparer.levels(a, b)
    labels = [[cmp.name("x").labels[v] for v in row] for row in levels.tolist()]
    assert swapped.tolist() == [True, True, False, False]
    assert labels[0] == ["exact", "exact"]
    # one name exact across, the other with a typo: the better level goes to the given name
    assert labels[1] == ["exact", "jaro-winkler >= 0.92"]
    assert labels[2] == ["exact", "exact"]  # not swapped at all
    assert labels[3] == ["else", "else"]


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_swap_levels_do_not_depend_on_pair_order(order: tuple[int, int]) -> None:
    comparer = _names([("jon", "smith"), ("smyth", "jon")])
    levels, swapped = comparer.levels(
        np.array([order[0]], dtype=np.int32), np.array([order[1]], dtype=np.int32)
    )
    assert swapped.tolist() == [True]
    assert levels.tolist() == [[1, 3]]  # exact (jon/jon), then smith/smyth


def test_grid_levels_agree_with_pair_levels() -> None:
    rows = [("anna", "berg"), ("ana", "berg"), ("anne", None), (None, "burg"), ("otto", "berk")]
    comparer = _names(rows)
    idx = np.arange(len(rows))
    grid = comparer.grid_levels(idx, idx)
    a = np.repeat(idx, len(rows)).astype(np.int32)
    b = np.tile(idx, len(rows)).astype(np.int32)
    pairwise, swapped = comparer.levels(a, b)
    straight = ~swapped
    assert np.array_equal(grid[straight], pairwise[straight])


def test_email_is_compared_whole() -> None:
    """Same local part at another provider is not the same address; no fuzzy level."""
    rows = [
        ("jan.jansen", "gmail.com"),
        ("jan.jansen", "gmail.com"),
        ("jan.jansen", "yahoo.com"),
        ("jan.jansen1", "gmail.com"),
        ("jan.jansen", None),
    ]
    batch = RecordBatch.from_columns(
        [str(i) for i in range(len(rows))],
        {"email_local": [r[0] for r in rows], "email_domain": [r[1] for r in rows]},
    )
    spec = cmp.email()
    comparer = Comparer(batch, [spec], workers=1)
    a = np.zeros(4, dtype=np.int32)
    levels, _ = comparer.levels(a, np.arange(1, 5, dtype=np.int32))
    assert [spec.labels[v] for v in levels[:, 0].tolist()] == ["exact", "else", "else", "null"]


def test_a_field_implied_by_another_says_nothing_when_that_one_agrees() -> None:
    rows = [("1000", "lyon"), ("1000", "lyon"), ("2000", "lyon"), ("3000", "lyom")]  # JW .883
    batch = RecordBatch.from_columns(
        ["a", "b", "c", "d"],
        {"postcode": [r[0] for r in rows], "city": [r[1] for r in rows]},
    )
    city = cmp.name("city", implied_by="postcode")
    comparer = Comparer(batch, [cmp.typo("postcode"), city], workers=1)
    a = np.array([0, 0, 2], dtype=np.int32)
    b = np.array([1, 2, 3], dtype=np.int32)
    levels, _ = comparer.levels(a, b)
    # same postcode: the city is implied (null); another postcode: the city counts
    assert [city.labels[v] for v in levels[:, 1].tolist()] == [
        "null",
        "exact",
        "jaro-winkler >= 0.88 | 1 edit | phonetic",
    ]
    grid = comparer.grid_levels(np.array([0]), np.array([1, 2]))
    assert grid[:, 1].tolist() == [0, 1]

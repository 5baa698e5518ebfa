"""Likely duplicates (``quality.duplicates``) and the audit's own duplicate finding and stale
flag: unit and property-based tests against a brute-force reference."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consentry.quality import audit
from consentry.quality.duplicates import DuplicateFinder, comparison_keys, name_words

AS_OF = datetime(2026, 6, 1, tzinfo=UTC)

small = st.sampled_from(["a@x.de", "b@x.de", "c@x.de", None])
phones = st.sampled_from(["+4930123456", "+4930654321", None])
firsts = st.sampled_from(["Jane", "Olga", None])
lasts = st.sampled_from(["Doe", "Petrova", None])
days = st.sampled_from(["1980-01-01", "1990-02-02", None])
codes = st.sampled_from(["10115", "80331", None])


@st.composite
def normalised_records(draw: st.DrawFn) -> dict[str, Any]:
    fields = {
        "email": draw(small),
        "phone": draw(phones),
        "first_name": draw(firsts),
        "last_name": draw(lasts),
        "birthday": draw(days),
        "postal_code": draw(codes),
    }
    return {k: v for k, v in fields.items() if v is not None}


def _reference(records: list[dict[str, Any]], max_group: int) -> tuple[list[int], int]:
    """Candidates per record by comparing every pair's keys, with crowded keys left out."""
    keys = [set(comparison_keys(r)) for r in records]
    holders: dict[tuple[str, str], int] = {}
    for found in keys:
        for key in found:
            holders[key] = holders.get(key, 0) + 1
    usable = [{k for k in found if holders[k] <= max_group} for found in keys]
    counts = [0] * len(records)
    pairs = 0
    for i, j in itertools.combinations(range(len(records)), 2):
        if usable[i] & usable[j]:
            counts[i] += 1
            counts[j] += 1
            pairs += 1
    return counts, pairs


@given(st.lists(normalised_records(), max_size=40), st.integers(min_value=2, max_value=6))
def test_the_finder_agrees_with_comparing_every_pair(
    records: list[dict[str, Any]], max_group: int
) -> None:
    finder = DuplicateFinder(max_group=max_group)
    for record in records:
        finder.add(record)
    found = finder.candidates()
    counts, pairs = _reference(records, max_group)
    assert found.counts.tolist() == counts
    assert found.pairs == pairs
    assert list(found.nonzero()) == [(i, c) for i, c in enumerate(counts) if c]


@given(
    st.lists(
        st.text(alphabet=st.characters(categories=["L"]), min_size=1, max_size=8),
        min_size=2,
        max_size=4,
    ),
    st.randoms(),
)
def test_a_name_is_the_same_in_any_order_and_case(words: list[str], rng: Any) -> None:
    shuffled = list(words)
    rng.shuffle(shuffled)
    assert name_words({"name": " ".join(words)}) == name_words(
        {"name": " ".join(w.upper() for w in shuffled)}
    )


def test_names_fold_accents_and_need_two_words() -> None:
    assert name_words({"first_name": "José", "last_name": "Núñez"}) == "jose nunez"
    assert name_words({"name": "NÚÑEZ, José"}) == "jose nunez"
    assert name_words({"first_name": "Olga"}) is None
    assert name_words({"name": "王伟"}) is None  # one word: too little to tell people apart
    assert name_words({"first_name": "Иван", "last_name": "Петров"}) == "иван петров"


def test_keys_come_only_from_complete_rules() -> None:
    keys = dict(comparison_keys({"first_name": "Jane", "last_name": "Doe", "postal_code": "10115"}))
    assert set(keys) == {"name_postcode"}
    assert comparison_keys({"birthday": "1980-01-01"}) == []


def test_crowded_keys_are_left_out() -> None:
    finder = DuplicateFinder(max_group=3)
    for _ in range(4):  # the shop's own phone number, typed for every walk-in customer
        finder.add({"phone": "+4930123456"})
    finder.add({"email": "a@x.de"})
    finder.add({"email": "a@x.de"})
    found = finder.candidates()
    assert found.counts.tolist() == [0, 0, 0, 0, 1, 1]
    assert (found.pairs, found.crowded_keys) == (1, 1)
    with pytest.raises(ValueError):
        DuplicateFinder(max_group=1)


def test_the_audit_finds_duplicates_from_normalised_values() -> None:
    records = [
        {"id": "a", "traits": {"email": " Jane@Shop.DE ", "firstName": "Jane"}},
        {"id": "b", "traits": {"email": "jane@shop.de."}},
        {"id": "c", "traits": {"email": "not an email"}},
        {"id": "d", "traits": {"email": "not an email"}},  # invalid values never match
        {"id": "e", "traits": {"phone": "030 12345678", "country": "DE"}},
        {"id": "f", "traits": {"phone": "+49 30 12345678"}},
    ]
    report = audit(records, as_of=AS_OF, find_duplicates=True)
    assert report.duplicates.likely_duplicates == 4
    assert report.duplicates.candidates == 4 and report.duplicates.pairs == 2
    assert report.duplicates.examples == ("a", "b", "e", "f")
    assert report.to_dict()["totals"]["likely_duplicates"] == 4


def test_the_caller_can_say_which_records_are_stale() -> None:
    records = [
        {"id": "a", "traits": {}, "stale": True, "last_seen": AS_OF},  # the flag wins
        {"id": "b", "traits": {}, "stale": False, "last_seen": "2001-01-01T00:00:00+00:00"},
        {"id": "c", "traits": {}, "last_seen": "2001-01-01T00:00:00+00:00"},
        {"id": "d", "traits": {}},
    ]
    report = audit(records, as_of=AS_OF)
    assert (report.stale.stale, report.stale.unknown) == (2, 1)
    assert report.stale.examples == ("a", "c")

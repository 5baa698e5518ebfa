"""Scoring new records against existing ones with a trained model."""

from __future__ import annotations

import pytest

from consentry.matching import MatchIndex, MatchSettings, RecordBatch, dedupe
from consentry.matching.dedupe import DedupeResult
from tests.matching.synthetic import People


@pytest.fixture(scope="module")
def split(crowd: People) -> tuple[list[dict[str, str | None]], list[dict[str, str | None]]]:
    """Existing: every original person; new: the duplicates (at most 40)."""
    originals = [r for r in crowd.records if str(r["id"]).startswith("p")]
    copies = [r for r in crowd.records if str(r["id"]).startswith("d")][:40]
    return originals, copies


def test_new_duplicates_find_their_originals(
    crowd: People,
    crowd_result: DedupeResult,
    split: tuple[list[dict[str, str | None]], list[dict[str, str | None]]],
) -> None:
    originals, copies = split
    index = MatchIndex(crowd_result.model, RecordBatch.from_records(originals))
    matches = index.match(copies)
    merged = {(m.new_id, m.other_id) for m in matches if m.merge and not m.other_is_new}
    expected = {(c["id"], f"p{crowd.entity[str(c['id'])]}") for c in copies}
    found = len(merged & expected)
    assert found >= 0.9 * len(expected)
    assert len(merged - expected) <= 1
    # copies of the same person meet each other too
    twins = [m for m in matches if m.other_is_new]
    for m in twins:
        assert crowd.entity[str(m.new_id)] == crowd.entity[str(m.other_id)] or not m.merge


def test_new_strangers_match_nobody(crowd_result: DedupeResult, split) -> None:  # type: ignore[no-untyped-def]
    originals, _ = split
    index = MatchIndex(crowd_result.model, RecordBatch.from_records(originals))
    stranger = {
        "id": "new-1",
        "given_name": "zebulon",
        "surname": "quarrington",
        "email_local": "zq",
        "email_domain": "example.org",
        "phone": "+15550000000",
        "birth_date": "19010101",
    }
    assert [m for m in index.match([stranger]) if m.merge] == []
    assert index.match([]) == []


def test_incremental_scores_equal_batch_scores(
    crowd_result: DedupeResult,
    split: tuple[list[dict[str, str | None]], list[dict[str, str | None]]],
) -> None:
    """The same model scores a pair the same, found by the index or by the batch run."""
    originals, copies = split
    model = crowd_result.model
    index = MatchIndex(model, RecordBatch.from_records(originals))
    incremental = {(m.new_id, m.other_id): m.weight for m in index.match(copies[:10])}
    together = dedupe(originals + copies[:10], MatchSettings(workers=1), model=model)
    batch_weights = {}
    for (a, b), w in zip(together.pairs(), together.weight.tolist(), strict=True):
        batch_weights[(a, b)] = w
        batch_weights[(b, a)] = w
    assert incremental
    for pair, weight in incremental.items():
        assert pair in batch_weights
        assert batch_weights[pair] == pytest.approx(weight, abs=1e-9)


def test_new_records_may_lack_whole_fields(crowd_result: DedupeResult, split) -> None:  # type: ignore[no-untyped-def]
    originals, copies = split
    index = MatchIndex(crowd_result.model, RecordBatch.from_records(originals))
    sparse = {"id": copies[0]["id"], "given_name": copies[0]["given_name"]}
    assert all(not m.merge for m in index.match([sparse]))  # one name proves nothing
    assert index.match([{"id": "only-id"}]) == []

"""Deduplication end to end on Faker-made people, its clusters, its streaming form, and the
properties of a match probability."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import consentry.matching
from consentry.matching import MatchSettings, RecordBatch, dedupe
from consentry.matching.dedupe import DedupeResult, connected_components
from consentry.matching.model import LinkageModel
from tests.matching.synthetic import People, people


def f1(found: set[tuple[str, str]], truth: set[tuple[str, str]]) -> tuple[float, float, float]:
    tp = len(found & truth)
    precision = tp / len(found) if found else 0.0
    recall = tp / len(truth)
    return precision, recall, 2 * precision * recall / (precision + recall or 1)


def merged_pairs(result: DedupeResult) -> set[tuple[str, str]]:
    return {(min(a, b), max(a, b)) for a, b in result.pairs(result.merge)}  # type: ignore[type-var]


def test_dedupe_finds_the_injected_duplicates(crowd: People, crowd_result: DedupeResult) -> None:
    truth = crowd.true_pairs()
    precision, recall, score = f1(merged_pairs(crowd_result), truth)
    assert len(truth) > 150
    assert score > 0.95, (precision, recall)
    assert crowd_result.stats.candidate_pairs < 20 * len(truth)


def test_grey_zone_and_merge_set_split_the_kept_pairs(crowd_result: DedupeResult) -> None:
    p = crowd_result.probability
    assert (p >= crowd_result.review_threshold).all()
    assert np.array_equal(crowd_result.merge, p >= crowd_result.merge_threshold)
    assert np.array_equal(crowd_result.review, ~crowd_result.merge)
    assert (crowd_result.left < crowd_result.right).all()


def test_clusters_are_the_components_of_the_merge_set(crowd_result: DedupeResult) -> None:
    labels = crowd_result.labels
    merge = crowd_result.merge
    left, right = crowd_result.left[merge], crowd_result.right[merge]
    assert (labels[left] == labels[right]).all()
    # a label is the smallest position of its cluster
    assert (labels <= np.arange(len(labels))).all()
    assert (labels[labels] == labels).all()
    sizes = np.bincount(labels)
    clusters = crowd_result.clusters()
    assert sum(len(c) for c in clusters) == int((sizes[labels] >= 2).sum())
    position = {rid: i for i, rid in enumerate(crowd_result.ids.tolist())}
    for members in clusters:
        assert len({int(labels[position[m]]) for m in members}) == 1


def test_connected_components_on_a_hand_graph() -> None:
    a = np.array([5, 1, 3, 7], dtype=np.int32)
    b = np.array([1, 2, 5, 8], dtype=np.int32)
    labels = connected_components(10, a, b)
    assert labels.tolist() == [0, 1, 1, 1, 4, 1, 6, 7, 7, 9]
    # a long chain given in the worst order
    n = 1000
    chain = np.arange(n - 1, 0, -1, dtype=np.int32)
    assert (connected_components(n, chain, chain - 1) == 0).all()


def test_streaming_training_and_scoring_agree_with_the_one_pass(
    crowd: People, crowd_batch: RecordBatch, crowd_result: DedupeResult
) -> None:
    """EM on a sample, candidates compared in small chunks: the same duplicates found."""
    small = MatchSettings(workers=1, em_max_pairs=1000, chunk_pairs=1000)
    streamed = dedupe(crowd_batch, small)
    assert streamed.stats.candidate_pairs == crowd_result.stats.candidate_pairs
    assert streamed.model.training is not None
    assert streamed.model.training.em_pairs < crowd_result.stats.candidate_pairs
    truth = crowd.true_pairs()
    assert f1(merged_pairs(streamed), truth)[2] > 0.95
    # with the same model, chunking changes nothing
    same = dedupe(crowd_batch, small, model=crowd_result.model)
    assert merged_pairs(same) == merged_pairs(crowd_result)
    assert np.allclose(np.sort(same.weight), np.sort(crowd_result.weight))


def test_dedupe_accepts_dicts_and_reports_counts(crowd: People) -> None:
    result = dedupe(crowd.records[:300], MatchSettings(workers=1))
    assert result.stats.records == 300
    assert set(result.stats.seconds) >= {"blocking", "training", "scoring", "clustering"}
    assert all(r.skipped_blocks >= 0 for r in result.stats.rules)


KEYS = st.one_of(st.none(), st.text(alphabet="abcdeimnorst", min_size=1, max_size=8))
DIGITS = st.one_of(st.none(), st.text(alphabet="0123456789", min_size=4, max_size=8))
RECORD = st.fixed_dictionaries(
    {
        "given_name": KEYS,
        "surname": KEYS,
        "email_local": KEYS,
        "email_domain": st.sampled_from(["gmail.com", "yahoo.com", None]),
        "phone": DIGITS,
        "birth_date": DIGITS,
        "street_number": st.one_of(st.none(), st.sampled_from(["1", "2", "12", "21"])),
        "street": KEYS,
        "postcode": DIGITS,
        "city": KEYS,
        "national_id": DIGITS,
    }
)


@functools.cache
def small_model() -> LinkageModel:
    return dedupe(people(400, seed=3).records, MatchSettings(workers=1)).model


@settings(max_examples=200, deadline=None)
@given(first=RECORD, second=RECORD)
def test_probability_is_a_probability_and_symmetric(
    first: dict[str, str | None], second: dict[str, str | None]
) -> None:
    model = small_model()
    batch = RecordBatch.from_records([{"id": "x", **first}, {"id": "y", **second}])
    comparer = model.comparer(batch, workers=1)
    scorer = model.scorer(comparer)
    a = np.array([0, 1], dtype=np.int32)
    b = np.array([1, 0], dtype=np.int32)
    levels, swapped = comparer.levels(a, b)
    weights = scorer.weights(a, levels, swapped)
    assert weights[0] == weights[1]
    p = 1.0 / (1.0 + np.exp2(-weights))
    assert ((p >= 0.0) & (p <= 1.0)).all()
    assert np.isfinite(weights).all()


def test_no_print_or_logging_in_the_matching_package() -> None:
    """Record contents must never reach a log: the package neither prints nor logs."""
    for path in Path(consentry.matching.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id != "print", path
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names]
                module = getattr(node, "module", None) or ""
                assert "logging" not in names and not module.startswith("logging"), path


@pytest.mark.parametrize(
    "bad",
    [
        [{"id": "a", "surname": 3}],
        [{"surname": "x"}],
        [{"id": "a", "surname": "x"}, {"id": "a", "surname": "y"}],
    ],
)
def test_bad_records_are_refused(bad: list[dict[str, object]]) -> None:
    from consentry.errors import Invalid

    with pytest.raises(Invalid):
        RecordBatch.from_records(bad)


def test_bad_thresholds_are_refused() -> None:
    from consentry.errors import Invalid

    with pytest.raises(Invalid):
        MatchSettings(review_threshold=0.95, merge_threshold=0.9)

"""Training: EM recovers the parameters of a known Fellegi-Sunter model; term frequencies;
explanations add up."""

from __future__ import annotations

import math

import numpy as np
import pytest

from consentry.matching import MatchSettings, RecordBatch, dedupe, explain
from consentry.matching import comparisons as cmp
from consentry.matching.dedupe import DedupeResult
from consentry.matching.model import expectation_maximisation, initial_m, patterns_of, train
from tests.matching.synthetic import People

# A known model: three fields of four levels (null, exact, fuzzy, else), one of three.
SPECS = [
    cmp.FieldComparison("f0", (cmp.Level("near", jaro_winkler=0.9),)),
    cmp.FieldComparison("f1", (cmp.Level("near", jaro_winkler=0.9),)),
    cmp.FieldComparison("f2", (cmp.Level("near", jaro_winkler=0.9),)),
    cmp.FieldComparison("f3"),
]
# index 0 (null) unused
TRUE_M = [
    [1.0, 0.80, 0.15, 0.05],
    [1.0, 0.70, 0.20, 0.10],
    [1.0, 0.90, 0.05, 0.05],
    [1.0, 0.85, 0.15],
]
TRUE_U = [
    [1.0, 0.05, 0.10, 0.85],
    [1.0, 0.02, 0.08, 0.90],
    [1.0, 0.10, 0.10, 0.80],
    [1.0, 0.30, 0.70],
]


def simulate(n: int, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Comparison vectors of ``n`` candidate pairs, a ``share`` of them matches, 5% nulls."""
    rng = np.random.default_rng(seed)
    is_match = rng.random(n) < share
    levels = np.zeros((n, len(SPECS)), dtype=np.int8)
    for f in range(len(SPECS)):
        m = np.array(TRUE_M[f][1:])
        u = np.array(TRUE_U[f][1:])
        drawn_m = rng.choice(len(m), size=n, p=m) + 1
        drawn_u = rng.choice(len(u), size=n, p=u) + 1
        levels[:, f] = np.where(is_match, drawn_m, drawn_u)
        levels[rng.random(n) < 0.05, f] = 0
    return levels, is_match


def run_em(levels: np.ndarray, total_pairs: int):  # type: ignore[no-untyped-def]
    patterns, counts = patterns_of(levels, SPECS)
    return expectation_maximisation(
        patterns,
        counts,
        [np.array(x) for x in TRUE_U],
        [initial_m(s) for s in SPECS],  # as training starts
        SPECS,
        candidates=len(levels),
        total_pairs=total_pairs,
        max_iterations=1000,
        tolerance=1e-8,
    )


def test_em_recovers_m_and_the_prior_of_a_known_model() -> None:
    """Every pair compared (no blocking): a plain two-class mixture, 20% matches."""
    n = 200_000
    levels, is_match = simulate(n, 0.2, seed=1)
    result = run_em(levels, total_pairs=n)
    assert result.converged
    # About 38,000 matches with the field present: a level's share has a standard error of
    # at most sqrt(0.25 / 38,000) = 0.0026; 0.012 is between four and five of them (EM adds
    # a little error of its own where the classes overlap; the pseudo-count moves m by 3e-5).
    for f in range(len(SPECS)):
        assert np.allclose(result.m[f][1:], TRUE_M[f][1:], atol=0.012), (f, result.m[f])
    matches = int(is_match.sum())
    assert result.expected_matches == pytest.approx(matches, rel=0.03)
    assert result.prior_weight == pytest.approx(math.log2(matches / (n - matches)), abs=0.06)


def test_em_on_blocked_pairs_gives_the_prior_of_random_pairs() -> None:
    """Candidates are the pairs that agree exactly on f0, f1 or f2 (blocking, a function of
    the comparison vector) out of a population with 2% matches, 99.4% of which the blocking
    keeps. EM sees only the candidates, yet its prior is that of the whole population (matches
    found / all pairs), f3 (no blocking on it) keeps its true m, and the others their share
    among the blocked matches.

    EM treats the blocked fields as independent given the match status, which the blocking
    breaks a little (a match is kept only if one of them agrees): the error this brings grows
    with the share of matches the blocking loses (0.6% here, and the expected matches come out
    2.4% low: hence 4%, not the 3% of the unblocked case).
    """
    population = 1_000_000
    levels, is_match = simulate(population, 0.02, seed=2)
    blocked = (levels[:, 0] == 1) | (levels[:, 1] == 1) | (levels[:, 2] == 1)
    result = run_em(levels[blocked], total_pairs=population)
    assert result.converged
    found = int((is_match & blocked).sum())  # ~19,600 matches among ~171,000 candidates
    assert result.expected_matches == pytest.approx(found, rel=0.04)
    assert result.prior_weight == pytest.approx(math.log2(found / (population - found)), abs=0.06)
    # standard error of a share: sqrt(0.25 / 19,000) = 0.0036; 0.02 is five and a half
    assert np.allclose(result.m[3][1:], TRUE_M[3][1:], atol=0.02), result.m[3]
    for f in (0, 1, 2):
        kept = levels[blocked & is_match, f]
        kept = kept[kept > 0]
        share = np.bincount(kept, minlength=4)[1:] / len(kept)
        assert np.allclose(result.m[f][1:], share, atol=0.02), (f, result.m[f], share)


def test_training_on_records_recovers_u_and_m(crowd_result: DedupeResult) -> None:
    """On the Faker set (duplicates made by known corruptions), the trained parameters are
    the ones those corruptions imply, within sampling error."""
    model = crowd_result.model
    by_field = {f.field: f for f in model.fields}
    # Phones are random 10-digit numbers: random pairs never share one (u exact at its floor,
    # 1 / records), and a duplicate keeps its phone unless dropped or mistyped (at most 1/3
    # of duplicates get 1 to 3 of 9 corruptions each, so m exact > 0.75).
    phone = by_field["phone"]
    assert phone.u[1] <= 1.5 / 2200
    assert phone.m[1] > 0.75
    # Birth dates: uniform over ~72 years: u exact ~ 1 / 26,000 (floored at 1 / 2,200).
    assert by_field["birth_date"].u[1] < 1e-3
    # m of else is small everywhere: duplicates rarely disagree outright on a name
    assert by_field["surname"].m[-1] < 0.05
    assert model.training is not None and model.training.converged


def test_term_frequency_weighs_a_common_surname_less_than_a_rare_one() -> None:
    rng = np.random.default_rng(3)
    n = 600
    # "smith" for a third of the records, the rest rare surnames
    surnames = ["smith" if i % 3 == 0 else f"s{i:04d}x" for i in range(n)]
    records = [
        {
            "id": f"r{i}",
            "given_name": f"g{rng.integers(0, 40)}",
            "surname": surnames[i],
            "birth_date": f"19{rng.integers(10, 99)}0{rng.integers(1, 9)}1{rng.integers(0, 9)}",
        }
        for i in range(n)
    ]
    # two pairs alike in everything but the surname's frequency
    records += [
        {"id": "c1", "given_name": "g1", "surname": "smith", "birth_date": "20010101"},
        {"id": "c2", "given_name": "g1", "surname": "smith", "birth_date": "20010101"},
        {"id": "z1", "given_name": "g1", "surname": "zilm", "birth_date": "20010101"},
        {"id": "z2", "given_name": "g1", "surname": "zilm", "birth_date": "20010101"},
    ]
    batch = RecordBatch.from_records(records)
    result = dedupe(batch, MatchSettings(workers=1))
    position = {rid: i for i, rid in enumerate(batch.ids.tolist())}
    common = explain(result.model, batch, position["c1"], position["c2"])
    rare = explain(result.model, batch, position["z1"], position["z2"])
    surname = {e.field: e for e in common.fields}["surname"]
    rare_surname = {e.field: e for e in rare.fields}["surname"]
    assert surname.level == rare_surname.level == "exact"
    assert surname.term_frequency_adjustment < 0 < rare_surname.term_frequency_adjustment
    assert surname.weight < rare_surname.weight
    assert common.match_weight < rare.match_weight


def test_explanation_weights_sum_to_the_match_weight(
    crowd_batch: RecordBatch, crowd_result: DedupeResult
) -> None:
    model = crowd_result.model
    picks = list(
        zip(crowd_result.left[:20].tolist(), crowd_result.right[:20].tolist(), strict=True)
    )
    picks += [(0, 1), (5, 9), (100, 3)]
    for left, right in picks:
        e = explain(model, crowd_batch, left, right)
        assert e.prior_weight + sum(f.weight for f in e.fields) == pytest.approx(
            e.match_weight, abs=1e-9
        )
        assert e.match_probability == pytest.approx(1 / (1 + 2**-e.match_weight))
        assert {f.field for f in e.fields} == {f.field for f in model.fields}
    # scored pairs agree with their explanation
    k = 0
    e = explain(model, crowd_batch, int(crowd_result.left[k]), int(crowd_result.right[k]))
    assert e.match_weight == pytest.approx(float(crowd_result.weight[k]))


def test_training_needs_two_records() -> None:
    from consentry.errors import Invalid

    batch = RecordBatch.from_records([{"id": "x", "surname": "a"}])
    comparer = cmp.Comparer(batch, [cmp.name("surname")], workers=1)
    with pytest.raises(Invalid):
        train(comparer, np.zeros((0, 1), dtype=np.int8), candidates=0, u_sample_pairs=1000)


def test_the_model_never_shows_values_in_its_repr(
    crowd_result: DedupeResult, crowd: People
) -> None:
    text = repr(crowd_result.model)
    some_surname = crowd.records[0]["surname"]
    assert some_surname and some_surname not in text


def test_an_implied_field_is_explained_as_such(crowd_result: DedupeResult) -> None:
    model = crowd_result.model
    records = [
        {"id": "x", "given_name": "ada", "postcode": "12345", "city": "lyon"},
        {"id": "y", "given_name": "ada", "postcode": "12345", "city": "lyon"},
    ]
    batch = RecordBatch.from_records(records)
    e = explain(model, batch, 0, 1)
    by_field = {f.field: f for f in e.fields}
    assert by_field["city"].level == "implied by postcode"
    assert by_field["city"].weight == 0.0
    assert by_field["email"].level == "null"  # absent from these records

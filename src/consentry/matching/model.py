"""The Fellegi-Sunter model: m and u probabilities per comparison level, trained without labels.

For a pair with comparison vector ``γ`` (one level per field), fields taken as independent given
the match status::

    match weight  = log2 prior odds + Σ_f log2( m_f(γ_f) / u_f(γ_f) )
    m_f(l) = P(level l | the records are the same person),  u_f(l) = P(level l | they are not)
    probability   = 2^w / (1 + 2^w)

A missing value (level 0) contributes nothing. Training, in the spirit of splink:

1. ``u`` from random pairs (nearly all non-matches). The exact level's ``u`` is computed from the
   value counts (``Σ c(c-1) / P(P-1)``, no sampling); the fuzzy levels' share of the rest comes
   from ``u_sample_pairs`` random pairs. ``u`` is floored at ``1/P`` (``P`` records with a value):
   no value is taken to be rarer than once in the data.
2. ``m`` and the prior by EM over the candidate pairs ``C`` (blocked), ``u`` held fixed. Blocking
   keeps pairs that agree on some key, so within ``C`` non-matches agree far more often than
   ``u`` says; as membership of ``C`` is (nearly) a function of ``γ``, the odds of a match given
   ``γ`` and ``C`` are still ``prior × Π m/u`` with the prior of *random* pairs, which is
   ``(expected matches in C) / (all pairs)``: that is the E-step's prior, re-estimated each
   M-step from the responsibilities. EM runs over the distinct comparison vectors with their
   counts (a few thousand rows, whatever the number of pairs); each level gets one
   pseudo-match (a Dirichlet prior), so that a level no match hit in a small set is unlikely,
   not impossible. ``m`` is so the share among the *blocked* matches: close to the true one
   while blocking keeps nearly all duplicates (99.8% on FEBRL3).
3. Random pairs include the few true matches: once ``m`` and the prior are known, their share is
   taken out of ``u`` (``u' = (u - λ m) / (1 - λ)``) and EM runs again.

Term frequencies: an exact agreement on a field with ``term_frequency`` gets
``log2(u_exact / p_v)`` on top, ``p_v`` the share of records holding that value: the exact
level's ``u`` is replaced by the value's own frequency (a shared common surname is weaker
evidence than a shared rare one). Not applied to names compared across a swap (the value would
come from the other field).

Where independence fails, EM fails loudly: with ``u`` fixed, pairs that agree on two dependent
fields far more often than ``u × u`` says can only be explained as matches, and the "match" class
fills with namesakes or neighbours (seen on a million synthetic people: ten times too many
expected matches, precision 0.11). The default comparisons avoid the two dependencies that bit:
the email is compared whole, never its local part apart from the names it is made of, and the
city says nothing when the postcode already agrees (``implied_by``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from consentry.errors import Invalid
from consentry.matching.comparisons import EXACT, NULL, Comparer, FieldComparison, Levels, Pairs
from consentry.matching.records import Column, RecordBatch

Floats = npt.NDArray[np.float64]

M_FLOOR = 1e-6
M_PSEUDO_COUNT = 1.0


@dataclass(frozen=True, slots=True)
class FieldParameters:
    """The trained m and u of one field's levels (index = level number; index 0, null, unused)."""

    comparison: FieldComparison
    m: tuple[float, ...]
    u: tuple[float, ...]

    @property
    def field(self) -> str:
        return self.comparison.field

    def weights(self) -> Floats:
        """log2(m/u) per level, 0 for null."""
        m = np.asarray(self.m, dtype=np.float64)
        u = np.asarray(self.u, dtype=np.float64)
        out = np.log2(np.maximum(m, M_FLOOR) / np.maximum(u, 1e-300))
        out[NULL] = 0.0
        return out


@dataclass(frozen=True, slots=True)
class TermFrequencies:
    """How common each value of a field was in the training records; held in memory only."""

    frequencies: Mapping[str, float] = field(repr=False)
    floor: float  # 1 / records with a value: the frequency of a value never seen

    @classmethod
    def of(cls, column: Column) -> TermFrequencies:
        present = max(column.present, 1)
        freq = (column.counts / present).tolist()
        return cls(dict(zip(column.values.tolist(), freq, strict=True)), 1.0 / present)

    def lookup(self, values: npt.NDArray[np.object_]) -> Floats:
        get = self.frequencies.get
        floor = self.floor
        return np.fromiter(
            (max(get(v, floor), floor) for v in values.tolist()), np.float64, count=len(values)
        )


@dataclass(frozen=True, slots=True)
class TrainingReport:
    """How training went (no record contents)."""

    em_iterations: int
    converged: bool
    em_pairs: int  # candidate pairs EM saw
    patterns: int  # distinct comparison vectors among them
    candidate_pairs: int  # |C|
    total_pairs: int  # n(n-1)/2
    u_sample_pairs: int
    expected_matches: float  # in C, from EM


@dataclass(frozen=True, slots=True)
class LinkageModel:
    """A trained model: parameters per field, the prior, term frequencies.

    ``term_frequencies`` holds the training records' distinct values of the term-frequency
    fields (in memory, never in ``repr``).
    """

    fields: tuple[FieldParameters, ...]
    prior_weight: float  # log2 prior odds that two random records match
    swapped_names: tuple[str, str] | None
    term_frequencies: Mapping[str, TermFrequencies] = field(repr=False)
    training: TrainingReport | None = None

    @property
    def comparisons(self) -> tuple[FieldComparison, ...]:
        return tuple(f.comparison for f in self.fields)

    def comparer(self, batch: RecordBatch, *, workers: int = -1) -> Comparer:
        """A comparer for ``batch`` over exactly this model's fields."""
        return Comparer(
            batch,
            self.comparisons,
            swapped_names=self.swapped_names,
            workers=workers,
            keep_absent=True,
        )

    def scorer(self, comparer: Comparer) -> Scorer:
        """Weights for pairs of ``comparer``'s batch."""
        return Scorer(self, comparer)


def probability(weight: Floats) -> Floats:
    """Match probability from match weight (log2 odds)."""
    return 1.0 / (1.0 + np.exp2(-np.asarray(weight, dtype=np.float64)))


def weight_of(p: float) -> float:
    """Match weight (log2 odds) of a probability in (0, 1)."""
    return math.log2(p / (1.0 - p))


class Scorer:
    """Match weights of pairs of one batch under a model."""

    def __init__(self, model: LinkageModel, comparer: Comparer) -> None:
        if comparer.comparisons != model.comparisons:
            raise Invalid("the comparer's fields differ from the model's")
        self.model = model
        self.comparer = comparer
        self.tables = [f.weights() for f in model.fields]
        self.tf: list[Floats | None] = []
        for params, column in zip(model.fields, comparer.columns, strict=True):
            tf = model.term_frequencies.get(params.field)
            if params.comparison.term_frequency and tf is not None:
                u_exact = params.u[EXACT]
                self.tf.append(np.log2(u_exact / tf.lookup(column.values)))
            else:
                self.tf.append(None)
        self.swap_fields = set(comparer.swap or ())

    def adjustments(
        self, a: Pairs, levels: Levels, swapped: npt.NDArray[np.bool_]
    ) -> list[Floats | None]:
        """Per field: the term-frequency adjustment of each pair (None: no such field)."""
        out: list[Floats | None] = []
        for f, tf in enumerate(self.tf):
            if tf is None:
                out.append(None)
                continue
            hit = levels[:, f] == EXACT
            if f in self.swap_fields:
                hit &= ~swapped
            adj = np.zeros(len(a), dtype=np.float64)
            rows = np.flatnonzero(hit)
            adj[rows] = tf[self.comparer.columns[f].codes[a[rows]]]
            out.append(adj)
        return out

    def weights(self, a: Pairs, levels: Levels, swapped: npt.NDArray[np.bool_]) -> Floats:
        """The match weight of each pair."""
        total = np.full(len(a), self.model.prior_weight, dtype=np.float64)
        for f, table in enumerate(self.tables):
            total += table[levels[:, f]]
        for adj in self.adjustments(a, levels, swapped):
            if adj is not None:
                total += adj
        return total


# --- training ---------------------------------------------------------------------------------


def _observed_u(comparer: Comparer, n_samples: int, rng: np.random.Generator) -> list[Floats]:
    """Per field, the share of each level among random pairs with both values present."""
    n = len(comparer.batch)
    # Two independent random samples of records, every pair between them: each pair is a
    # uniformly random pair of records (the same record twice is dropped).
    side = max(2, math.ceil(math.sqrt(n_samples)))
    a = rng.integers(0, n, size=side)
    b = rng.integers(0, n, size=side)
    levels = comparer.grid_levels(a, b)[(a[:, None] != b[None, :]).ravel()]
    out = []
    for f, (spec, column) in enumerate(zip(comparer.comparisons, comparer.columns, strict=True)):
        present = column.present
        counts = column.counts.astype(np.float64)
        exact_share = (
            float((counts * (counts - 1)).sum() / (present * (present - 1))) if present > 1 else 0.0
        )
        fuzzy = np.bincount(levels[:, f], minlength=spec.n_levels)[EXACT + 1 :].astype(np.float64)
        u = np.zeros(spec.n_levels, dtype=np.float64)
        if fuzzy.sum() > 0:
            u[EXACT + 1 :] = (1.0 - exact_share) * fuzzy / fuzzy.sum()
        else:
            u[spec.else_level] = 1.0 - exact_share
        u[EXACT] = exact_share
        out.append(u)
    return out


def _floored(u: Floats, floor: float) -> Floats:
    out = u.copy()
    out[NULL] = 0.0
    out[NULL + 1 :] = np.maximum(out[NULL + 1 :], floor)
    out[NULL + 1 :] /= out[NULL + 1 :].sum()
    out[NULL] = 1.0
    return out


def initial_m(spec: FieldComparison) -> Floats:
    m = np.zeros(spec.n_levels, dtype=np.float64)
    m[EXACT] = 0.8
    fuzzy = len(spec.levels)
    if fuzzy:
        m[EXACT + 1 : spec.else_level] = 0.15 / fuzzy
        m[spec.else_level] = 0.05
    else:
        m[spec.else_level] = 0.2
    m[NULL] = 1.0
    return m


@dataclass(frozen=True, slots=True)
class EMResult:
    m: list[Floats]
    prior_weight: float
    iterations: int
    converged: bool
    expected_matches: float


def expectation_maximisation(
    patterns: npt.NDArray[np.int8],
    counts: Floats,
    u: Sequence[Floats],
    m0: Sequence[Floats],
    specs: Sequence[FieldComparison],
    *,
    candidates: int,
    total_pairs: int,
    max_iterations: int,
    tolerance: float,
) -> EMResult:
    """EM for ``m`` and the prior over comparison vectors ``patterns`` seen ``counts`` times.

    ``u`` is held fixed; ``candidates`` is how many candidate pairs the counts stand for (they
    may be a sample), ``total_pairs`` how many pairs the records make in all. Returns ``m`` per
    field (index 0, null, set to 1) and the prior weight of random pairs.
    """
    m = [x.copy() for x in m0]
    log_u = [np.log2(np.maximum(x, 1e-300)) for x in u]
    scale = candidates / counts.sum()  # the EM sample stands for all of C
    lam = 0.1
    converged = False
    iterations = 0
    prior = math.log2(max(lam * candidates, 1e-9) / total_pairs)
    for iterations in range(1, max_iterations + 1):  # noqa: B007
        w = np.full(len(patterns), prior, dtype=np.float64)
        for f in range(len(specs)):
            table = np.log2(np.maximum(m[f], M_FLOOR)) - log_u[f]
            table[NULL] = 0.0
            w += table[patterns[:, f]]
        r = 1.0 / (1.0 + np.exp2(-np.clip(w, -1000, 1000)))
        rc = r * counts
        change = 0.0
        for f, spec in enumerate(specs):
            sums = np.bincount(patterns[:, f], weights=rc, minlength=spec.n_levels).astype(
                np.float64
            )
            sums[NULL] = 0.0
            if sums.sum() <= 0:
                continue
            # One pseudo-match per level (a Dirichlet prior): a level no match hit in a small
            # training set is unlikely, not impossible.
            sums[NULL + 1 :] += M_PSEUDO_COUNT
            new = sums / sums.sum()
            new[NULL] = 1.0
            change = max(change, float(np.abs(new[1:] - m[f][1:]).max()))
            m[f] = new
        lam = float(rc.sum() / counts.sum())
        expected = max(lam * counts.sum() * scale, 1e-9)
        new_prior = math.log2(expected / max(total_pairs - expected, 1.0))
        change = max(change, abs(new_prior - prior) / 100.0)
        prior = new_prior
        if change < tolerance:
            converged = True
            break
    return EMResult(m, prior, iterations, converged, lam * candidates)


def patterns_of(
    levels: Levels, specs: Sequence[FieldComparison]
) -> tuple[npt.NDArray[np.int8], Floats]:
    radix = np.array([s.n_levels for s in specs], dtype=np.int64)
    place = np.concatenate(([1], np.cumprod(radix[:-1]))).astype(np.int64)
    if float(np.prod(radix.astype(np.float64))) >= 2.0**62:
        raise Invalid("too many comparison levels to encode")
    code = levels.astype(np.int64) @ place
    unique, counts = np.unique(code, return_counts=True)
    patterns = ((unique[:, None] // place[None, :]) % radix[None, :]).astype(np.int8)
    return patterns, counts.astype(np.float64)


def train(
    comparer: Comparer,
    em_levels: Levels,
    *,
    candidates: int,
    u_sample_pairs: int,
    max_iterations: int = 100,
    tolerance: float = 1e-5,
    seed: int = 0,
    correction_rounds: int = 2,
) -> LinkageModel:
    """Train a model on ``comparer``'s batch.

    ``em_levels`` are the comparison levels of the candidate pairs EM sees (all of them, or a
    uniform sample), ``candidates`` how many candidate pairs there are in all.
    """
    batch = comparer.batch
    n = len(batch)
    if n < 2:
        raise Invalid("training needs at least two records")
    specs = comparer.comparisons
    total_pairs = n * (n - 1) // 2
    rng = np.random.default_rng(seed)
    n_samples = int(min(u_sample_pairs, max(total_pairs, 1)))
    observed = _observed_u(comparer, n_samples, rng)
    floors = [1.0 / max(col.present, 1) for col in comparer.columns]
    u = [_floored(x, fl) for x, fl in zip(observed, floors, strict=True)]
    m = [initial_m(s) for s in specs]
    if len(em_levels):
        patterns, counts = patterns_of(em_levels, specs)
    else:
        patterns = np.zeros((0, len(specs)), dtype=np.int8)
        counts = np.zeros(0, dtype=np.float64)
    result = EMResult(m, math.log2(1.0 / max(total_pairs, 1)), 0, False, 0.0)
    iterations = 0
    for round_ in range(correction_rounds + 1):
        if len(patterns) == 0:
            break
        result = expectation_maximisation(
            patterns,
            counts,
            u,
            result.m if round_ else m,
            specs,
            candidates=max(candidates, 1),
            total_pairs=total_pairs,
            max_iterations=max_iterations,
            tolerance=tolerance,
        )
        iterations += result.iterations
        if round_ == correction_rounds:
            break
        lam = 2.0**result.prior_weight / (1.0 + 2.0**result.prior_weight)
        u = [
            _floored(np.maximum(obs - lam * mf, 0.0) / (1.0 - lam), fl)
            for obs, mf, fl in zip(observed, result.m, floors, strict=True)
        ]
    fields = tuple(
        FieldParameters(spec, tuple(mf.tolist()), tuple(uf.tolist()))
        for spec, mf, uf in zip(specs, result.m, u, strict=True)
    )
    tfs = {
        spec.field: TermFrequencies.of(col)
        for spec, col in zip(specs, comparer.columns, strict=True)
        if spec.term_frequency
    }
    swapped = None
    if comparer.swap is not None:
        swapped = (specs[comparer.swap[0]].field, specs[comparer.swap[1]].field)
    report = TrainingReport(
        em_iterations=iterations,
        converged=result.converged,
        em_pairs=int(counts.sum()),
        patterns=len(patterns),
        candidate_pairs=candidates,
        total_pairs=total_pairs,
        u_sample_pairs=n_samples,
        expected_matches=result.expected_matches,
    )
    return LinkageModel(fields, result.prior_weight, swapped, tfs, report)


# --- explanation ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldContribution:
    """What one field said about a pair: its level and the log2 Bayes factor it contributed."""

    field: str
    level: str
    level_number: int
    weight: float  # log2(m/u) of the level, plus the term-frequency adjustment
    term_frequency_adjustment: float


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why a pair scored what it did: ``prior_weight + Σ fields' weight == match_weight``."""

    left: object
    right: object
    prior_weight: float
    fields: tuple[FieldContribution, ...]
    swapped_names: bool
    match_weight: float
    match_probability: float


def explain(model: LinkageModel, batch: RecordBatch, left: int, right: int) -> Explanation:
    """Explain the pair of records at positions ``left`` and ``right`` of ``batch``."""
    comparer = model.comparer(batch, workers=1)
    return explain_with(model.scorer(comparer), left, right)


def explain_with(scorer: Scorer, left: int, right: int) -> Explanation:
    """Explain one pair with a scorer already built for its batch."""
    n = len(scorer.comparer.batch)
    if not (0 <= left < n and 0 <= right < n) or left == right:
        raise Invalid("a pair needs two distinct record positions of the batch")
    a = np.array([left], dtype=np.int32)
    b = np.array([right], dtype=np.int32)
    return explain_pairs(scorer, a, b)[0]


def explain_pairs(scorer: Scorer, left: Pairs, right: Pairs) -> list[Explanation]:
    """Explain each pair ``(left[k], right[k])`` of the scorer's batch at once (positions as
    the scorer's :meth:`Scorer.weights` takes them; not checked)."""
    if len(left) == 0:
        return []
    levels, swapped = scorer.comparer.levels(left, right)
    adjustments = scorer.adjustments(left, levels, swapped)
    totals = scorer.weights(left, levels, swapped)
    probabilities = probability(totals)
    implied = dict(scorer.comparer.implied)
    ids = scorer.comparer.batch.ids
    out = []
    for k in range(len(left)):
        contributions = []
        for f, params in enumerate(scorer.model.fields):
            number = int(levels[k, f])
            label = params.comparison.labels[number]
            if f in implied and number == NULL and int(levels[k, implied[f]]) == EXACT:
                label = f"implied by {params.comparison.implied_by}"
            adjustment = adjustments[f]
            adj = float(adjustment[k]) if adjustment is not None else 0.0
            contributions.append(
                FieldContribution(
                    field=params.field,
                    level=label,
                    level_number=number,
                    weight=float(scorer.tables[f][number]) + adj,
                    term_frequency_adjustment=adj,
                )
            )
        out.append(
            Explanation(
                left=ids[int(left[k])],
                right=ids[int(right[k])],
                prior_weight=scorer.model.prior_weight,
                fields=tuple(contributions),
                swapped_names=bool(swapped[k]),
                match_weight=float(totals[k]),
                match_probability=float(probabilities[k]),
            )
        )
    return out

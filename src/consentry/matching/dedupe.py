"""Deduplicate a batch: block, train (if no model is given), score, cluster.

Memory grows with the records, not with the candidate pairs: candidates stream out of the
blocker ``chunk_pairs`` at a time, are compared and scored, and only pairs at or above the review
threshold are kept (``int32`` positions, ``float64`` weights). What stays is per record (the
codes, and two ``int32`` per record and blocking rule) plus one chunk. When the candidates fit in
``em_max_pairs`` they are compared once, for training and scoring; past it, EM trains on a
uniform sample drawn in a first pass that compares only the sample.

Clusters join the pairs at or above the merge threshold: connected components found by
union-find done in bulk (every edge hooks the larger root under the smaller, then every pointer
jumps to its grandparent until each points at its root), so a record's cluster label is the
smallest position in its cluster.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from consentry.matching.blocking import Blocker, RuleStats
from consentry.matching.comparisons import Comparer, Levels, Pairs
from consentry.matching.model import LinkageModel, Scorer, probability, train, weight_of
from consentry.matching.records import RecordBatch
from consentry.matching.settings import MatchSettings

Labels = npt.NDArray[np.int32]


@dataclass(frozen=True, slots=True)
class DedupeStats:
    """Counts and timings of a run (no record contents)."""

    records: int
    candidate_pairs: int
    skipped_blocks: int
    rules: tuple[RuleStats, ...]
    seconds: Mapping[str, float]


@dataclass(frozen=True, slots=True)
class DedupeResult:
    """Scored pairs at or above the review threshold, and the clusters of the merge set.

    ``left``/``right`` are positions in the batch (``ids[left]`` the record id), ``left <
    right``; ``labels[i]`` is record ``i``'s cluster (its smallest member's position).
    """

    ids: npt.NDArray[np.object_] = field(repr=False)
    left: Pairs = field(repr=False)
    right: Pairs = field(repr=False)
    weight: npt.NDArray[np.float64] = field(repr=False)
    labels: Labels = field(repr=False)
    merge_threshold: float
    review_threshold: float
    model: LinkageModel
    stats: DedupeStats

    @property
    def probability(self) -> npt.NDArray[np.float64]:
        """Match probability of each kept pair."""
        return probability(self.weight)

    @property
    def merge(self) -> npt.NDArray[np.bool_]:
        """Which kept pairs are at or above the merge threshold."""
        return self.weight >= weight_of(self.merge_threshold)

    @property
    def review(self) -> npt.NDArray[np.bool_]:
        """Which kept pairs are in the grey zone (review threshold up to the merge threshold)."""
        return ~self.merge

    def pairs(self, mask: npt.NDArray[np.bool_] | None = None) -> list[tuple[object, object]]:
        """The kept pairs (or those under ``mask``) as id pairs."""
        left, right = (
            (self.left, self.right) if mask is None else (self.left[mask], self.right[mask])
        )
        return list(zip(self.ids[left].tolist(), self.ids[right].tolist(), strict=True))

    def clusters(self, min_size: int = 2) -> list[list[object]]:
        """Clusters of at least ``min_size`` records, as lists of ids."""
        order = np.argsort(self.labels, kind="stable")
        labels = self.labels[order]
        bounds = np.flatnonzero(np.diff(labels)) + 1
        groups = np.split(order, bounds)
        return [self.ids[g].tolist() for g in groups if len(g) >= min_size]


def connected_components(n: int, a: Pairs, b: Pairs) -> Labels:
    """Label of each of ``n`` nodes: the smallest node of its component under edges ``a-b``."""
    parent = np.arange(n, dtype=np.int64)
    a64, b64 = a.astype(np.int64), b.astype(np.int64)
    while True:
        ra, rb = parent[a64], parent[b64]
        pending = ra != rb
        if not pending.any():
            break
        ra, rb = ra[pending], rb[pending]
        low = np.minimum(ra, rb)
        # Hook: a root only ever points to a smaller node, so no cycle can form.
        np.minimum.at(parent, np.maximum(ra, rb), low)
        while True:  # compress every path to its root
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand
    return parent.astype(np.int32)


def _scored(
    scorer: Scorer, a: Pairs, b: Pairs, levels: Levels, swapped: npt.NDArray[np.bool_], floor: float
) -> tuple[Pairs, Pairs, npt.NDArray[np.float64]]:
    w = scorer.weights(a, levels, swapped)
    keep = w >= floor
    return a[keep], b[keep], w[keep]


def dedupe(
    records: RecordBatch | Sequence[Mapping[str, object]],
    settings: MatchSettings | None = None,
    *,
    model: LinkageModel | None = None,
) -> DedupeResult:
    """Find the duplicates among ``records`` (a batch, or dicts with an ``id`` and the fields).

    Trains a model on the records themselves unless ``model`` is given.
    """
    settings = settings or MatchSettings()
    batch = records if isinstance(records, RecordBatch) else RecordBatch.from_records(records)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    blocker = Blocker(
        batch,
        settings.blocking_rules,
        max_block_size=settings.max_block_size,
        max_pairs_per_record=settings.max_pairs_per_record,
    )
    if model is None:
        comparer = Comparer(
            batch,
            settings.comparisons,
            swapped_names=settings.swapped_names,
            workers=settings.workers,
        )
    else:
        comparer = model.comparer(batch, workers=settings.workers)
    seconds["blocking"] = time.perf_counter() - t0

    floor = weight_of(settings.review_threshold)
    cached: list[tuple[Pairs, Pairs, Levels, npt.NDArray[np.bool_]]] | None = None
    candidates = 0
    t0 = time.perf_counter()
    if model is None:
        if blocker.pair_bound <= settings.em_max_pairs:
            cached = []
            for a, b in blocker.pairs(settings.chunk_pairs):
                levels, swapped = comparer.levels(a, b)
                cached.append((a, b, levels, swapped))
            candidates = sum(len(c[0]) for c in cached)
            em_levels = (
                np.concatenate([c[2] for c in cached])
                if cached
                else np.zeros((0, len(comparer.comparisons)), dtype=np.int8)
            )
        else:
            rng = np.random.default_rng(settings.seed)
            share = settings.em_max_pairs / blocker.pair_bound
            samples: list[Levels] = []
            for a, b in blocker.pairs(settings.chunk_pairs):
                candidates += len(a)
                pick = rng.random(len(a)) < share
                if pick.any():
                    samples.append(comparer.levels(a[pick], b[pick])[0])
            em_levels = np.concatenate(samples) if samples else np.zeros((0, 0), np.int8)
        seconds["compare_for_training"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        model = train(
            comparer,
            em_levels,
            candidates=candidates,
            u_sample_pairs=settings.u_sample_pairs,
            max_iterations=settings.em_max_iterations,
            tolerance=settings.em_tolerance,
            seed=settings.seed,
        )
        del em_levels
        seconds["training"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    scorer = model.scorer(comparer)
    kept: list[tuple[Pairs, Pairs, npt.NDArray[np.float64]]] = []
    if cached is not None:
        for a, b, levels, swapped in cached:
            kept.append(_scored(scorer, a, b, levels, swapped, floor))
        cached = None
    else:
        candidates = 0
        for a, b in blocker.pairs(settings.chunk_pairs):
            candidates += len(a)
            levels, swapped = comparer.levels(a, b)
            kept.append(_scored(scorer, a, b, levels, swapped, floor))
    left = np.concatenate([k[0] for k in kept]) if kept else np.empty(0, np.int32)
    right = np.concatenate([k[1] for k in kept]) if kept else np.empty(0, np.int32)
    weights = np.concatenate([k[2] for k in kept]) if kept else np.empty(0, np.float64)
    seconds["scoring"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    merge = weights >= weight_of(settings.merge_threshold)
    labels = connected_components(len(batch), left[merge], right[merge])
    seconds["clustering"] = time.perf_counter() - t0
    stats = DedupeStats(
        records=len(batch),
        candidate_pairs=candidates,
        skipped_blocks=blocker.skipped_blocks,
        rules=tuple(blocker.stats),
        seconds=seconds,
    )
    return DedupeResult(
        ids=batch.ids,
        left=left.astype(np.int32),
        right=right.astype(np.int32),
        weight=weights,
        labels=labels,
        merge_threshold=settings.merge_threshold,
        review_threshold=settings.review_threshold,
        model=model,
        stats=stats,
    )

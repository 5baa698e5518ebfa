"""The knobs of record linkage, with the defaults the benchmark (bench/identity.py) chose."""

from __future__ import annotations

from dataclasses import dataclass

from consentry.errors import Invalid
from consentry.matching.blocking import DEFAULT_RULES, Rule
from consentry.matching.comparisons import DEFAULT_COMPARISONS, FieldComparison
from consentry.matching.records import GIVEN_NAME, SURNAME


@dataclass(frozen=True, slots=True)
class MatchSettings:
    """What to compare, how to block, how to train, where to draw the lines.

    - ``merge_threshold``: pairs at or above this match probability are merged automatically
      (and form the clusters); ``review_threshold``: pairs from here up to the merge threshold
      are the grey zone, for a person to decide. Pairs below it are not kept. On FEBRL3 and
      the synthetic sets of bench/identity.py, F1 barely moves between 0.5 and 0.95 (within
      0.001) and precision reaches 1.0 at 0.95 with or without an id number: a merge is the
      costly mistake, so merging starts at 0.95, and the pairs from an even bet (0.5) up to it,
      mostly true duplicates with a field or two damaged, go to review.
    - ``max_block_size``: blocks of more records are skipped (and counted);
      ``max_pairs_per_record``: a rule's budget of pairs per record (see ``blocking``).
    - ``u_sample_pairs``: random pairs drawn to estimate the non-match (u) probabilities of the
      fuzzy levels; exact levels' u is computed from the value counts, without sampling.
    - ``em_max_pairs``: candidate pairs EM trains on; past it, a uniform sample of them.
    - ``chunk_pairs``: candidate pairs compared at a time (bounds the memory of a run).
    - ``workers``: threads of rapidfuzz (``-1``: every core).
    """

    comparisons: tuple[FieldComparison, ...] = DEFAULT_COMPARISONS
    blocking_rules: tuple[Rule, ...] = DEFAULT_RULES
    swapped_names: tuple[str, str] | None = (GIVEN_NAME, SURNAME)
    merge_threshold: float = 0.95
    review_threshold: float = 0.5
    max_block_size: int = 500
    max_pairs_per_record: float = 2.0
    u_sample_pairs: int = 300_000
    em_max_pairs: int = 1_000_000
    em_max_iterations: int = 100
    em_tolerance: float = 1e-5
    chunk_pairs: int = 1_000_000
    workers: int = -1
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.review_threshold <= self.merge_threshold < 1.0:
            raise Invalid("thresholds must satisfy 0 < review <= merge < 1")
        if not self.comparisons:
            raise Invalid("at least one field must be compared")
        if self.u_sample_pairs < 1000 or self.em_max_pairs < 1000 or self.chunk_pairs < 1000:
            raise Invalid("sample and chunk sizes must be at least 1000 pairs")

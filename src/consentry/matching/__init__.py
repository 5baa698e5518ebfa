"""Probabilistic record linkage (Fellegi-Sunter, trained by EM without labels). Pure domain code.

Records come in as normalised comparison keys (the caller opens and normalises them); nothing
here logs, prints or quotes a record's contents.

- ``records``: ``RecordBatch``, the columnar, factorised records.
- ``blocking``: rules that pick candidate pairs (``Blocker``).
- ``comparisons``: comparison levels per field (``FieldComparison``, ``Comparer``).
- ``model``: m/u by EM, term frequencies, match weight and probability, ``explain``.
- ``dedupe``: ``dedupe(records, settings)``: pairs, grey zone, clusters.
- ``incremental``: ``MatchIndex``: score a few new records against the existing ones.
"""

from consentry.matching.blocking import DEFAULT_RULES, Blocker
from consentry.matching.comparisons import DEFAULT_COMPARISONS, FieldComparison, Level
from consentry.matching.dedupe import DedupeResult, dedupe
from consentry.matching.incremental import Match, MatchIndex
from consentry.matching.model import Explanation, LinkageModel, explain
from consentry.matching.records import RecordBatch
from consentry.matching.settings import MatchSettings

__all__ = [
    "DEFAULT_COMPARISONS",
    "DEFAULT_RULES",
    "Blocker",
    "DedupeResult",
    "Explanation",
    "FieldComparison",
    "Level",
    "LinkageModel",
    "Match",
    "MatchIndex",
    "MatchSettings",
    "RecordBatch",
    "dedupe",
    "explain",
]

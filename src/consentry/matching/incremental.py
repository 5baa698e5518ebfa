"""Score a handful of new records against the existing ones with a trained model.

``MatchIndex`` keeps, for each blocking rule, the existing records' keys sorted (an ``int64`` hash
of the rule's key codes per record, and the positions in that order): a new record's candidates
are a binary search per rule, never a scan. Blocks the batch run would skip (more than
``max_block_size`` records, or over the rule's budget of pairs) are skipped here too. A hash
collision between two different keys can only add a candidate, which is then compared and
scored like any other.

The new records are also compared with each other (a batch of sign-ups may hold one person
twice). Term frequencies are the model's, from its training records.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from consentry.matching.blocking import Blocker, KeySpec, Rule, block_limit, pair_budget
from consentry.matching.comparisons import PHONETIC
from consentry.matching.model import LinkageModel, weight_of
from consentry.matching.records import Column, RecordBatch
from consentry.matching.settings import MatchSettings

_MIX = np.array(
    [0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93],
    dtype=np.uint64,
)


@dataclass(frozen=True, slots=True)
class Match:
    """A new record and a record it may be (an existing one or another new one)."""

    new_id: object
    other_id: object
    other_is_new: bool
    weight: float
    probability: float
    merge: bool  # at or above the merge threshold; else a pair to review


class _Key:
    """One key of a rule over the existing records, and how to compute it for new ones."""

    def __init__(self, batch: RecordBatch, spec: KeySpec) -> None:
        self.spec = spec
        columns = [batch.columns.get(f) for f in spec.fields]
        if any(c is None for c in columns):
            raise KeyError(spec.fields)
        cols = [c for c in columns if c is not None]
        self.vocab: dict[str, int] = {}
        if spec.kind == "sorted":
            for column in cols:
                for value in column.values.tolist():
                    self.vocab.setdefault(value, len(self.vocab))
            self.codes = self._sorted_codes(cols[0], cols[1])
        else:
            derived = [self._derive(v) for v in cols[0].values.tolist()]
            per_value = np.fromiter(
                (self.vocab.setdefault(d, len(self.vocab)) for d in derived),
                dtype=np.int64,
                count=len(derived),
            )
            codes = cols[0].codes
            self.codes = _through(per_value, codes)

    def _derive(self, value: str) -> str:
        kind = self.spec.kind
        if kind == "prefix":
            return value[: self.spec.length]
        if kind in PHONETIC:
            return PHONETIC[kind](value)
        return value

    def _sorted_codes(self, first: Column, second: Column) -> npt.NDArray[np.int64]:
        size = np.int64(len(self.vocab))
        x = self._remap(first)
        y = self._remap(second)
        low, high = np.minimum(x, y), np.maximum(x, y)
        return np.where((x >= 0) & (y >= 0), low * size + high, -1)

    def _remap(self, column: Column) -> npt.NDArray[np.int64]:
        table = np.fromiter(
            (self.vocab.get(v, -1) for v in column.values.tolist()),
            dtype=np.int64,
            count=len(column.values),
        )
        return _through(table, column.codes)

    def lookup(self, batch: RecordBatch) -> npt.NDArray[np.int64]:
        """The codes of ``batch``'s records in the existing vocabulary (-1: unseen or missing)."""
        columns = [batch.columns.get(f) for f in self.spec.fields]
        if any(c is None for c in columns):
            return np.full(len(batch), -1, dtype=np.int64)
        cols = [c for c in columns if c is not None]
        if self.spec.kind == "sorted":
            return self._sorted_codes(cols[0], cols[1])
        table = np.fromiter(
            (self.vocab.get(self._derive(v), -1) for v in cols[0].values.tolist()),
            dtype=np.int64,
            count=len(cols[0].values),
        )
        codes = cols[0].codes
        return _through(table, codes)


def _through(table: npt.NDArray[np.int64], codes: npt.NDArray[np.int32]) -> npt.NDArray[np.int64]:
    """``table[code]`` per record, -1 where the code is -1 (missing); ``table`` may be empty."""
    return np.append(table, -1)[codes]


def _hash(parts: Sequence[npt.NDArray[np.int64]]) -> npt.NDArray[np.int64]:
    """One int64 per record for a tuple of codes; -1 if any is missing."""
    missing = np.zeros(len(parts[0]), dtype=np.bool_)
    key = np.zeros(len(parts[0]), dtype=np.uint64)
    for k, part in enumerate(parts):
        missing |= part < 0
        key ^= (part.astype(np.uint64) + np.uint64(k + 1)) * _MIX[k % len(_MIX)]
        key ^= key >> np.uint64(29)
    out = (key >> np.uint64(1)).astype(np.int64)  # non-negative
    out[missing] = -1
    return out


class _RuleIndex:
    def __init__(self, batch: RecordBatch, rule: Rule, max_block_size: int, budget: int) -> None:
        self.keys = [_Key(batch, KeySpec.parse(text)) for text in rule]
        hashed = _hash([k.codes for k in self.keys])
        order = np.argsort(hashed, kind="stable")
        sorted_keys = hashed[order]
        unique, starts, counts = np.unique(sorted_keys, return_index=True, return_counts=True)
        limit = block_limit(counts[unique >= 0].astype(np.int64), max_block_size, budget)
        keep = (unique >= 0) & (counts < limit)
        mask = np.repeat(keep, counts)
        self.sorted_keys = sorted_keys[mask]
        self.order = order[mask].astype(np.int32)

    def candidates(self, batch: RecordBatch) -> list[npt.NDArray[np.int32]]:
        hashed = _hash([k.lookup(batch) for k in self.keys])
        lo = np.searchsorted(self.sorted_keys, hashed, side="left")
        hi = np.searchsorted(self.sorted_keys, hashed, side="right")
        return [
            self.order[lo[i] : hi[i]] if hashed[i] >= 0 else self.order[:0]
            for i in range(len(batch))
        ]


class MatchIndex:
    """The existing records, indexed for scoring new ones with ``model``."""

    def __init__(
        self,
        model: LinkageModel,
        existing: RecordBatch,
        settings: MatchSettings | None = None,
    ) -> None:
        self.model = model
        self.existing = existing
        self.settings = settings or MatchSettings()
        self.rules: list[_RuleIndex] = []
        for rule in self.settings.blocking_rules:
            try:
                self.rules.append(
                    _RuleIndex(
                        existing,
                        rule,
                        self.settings.max_block_size,
                        pair_budget(len(existing), self.settings.max_pairs_per_record),
                    )
                )
            except KeyError:
                continue  # a field the existing records lack

    def match(self, records: RecordBatch | Sequence[Mapping[str, object]]) -> list[Match]:
        """Pairs of a new record with an existing or another new one, at or above review."""
        new = records if isinstance(records, RecordBatch) else RecordBatch.from_records(records)
        if len(new) == 0:
            return []
        found: list[npt.NDArray[np.int32]] = [np.empty(0, dtype=np.int32)] * len(new)
        for rule in self.rules:
            for i, hits in enumerate(rule.candidates(new)):
                if len(hits):
                    found[i] = np.concatenate((found[i], hits))
        per_new = [np.unique(f) for f in found]
        others = np.unique(np.concatenate(per_new)) if per_new else np.empty(0, np.int32)
        k = len(others)
        mini = RecordBatch.concat(self.existing.take(others), new) if k else new
        offset = k if k else 0
        a_parts = [np.full(len(p), offset + i, dtype=np.int32) for i, p in enumerate(per_new)]
        b_parts = [np.searchsorted(others, p).astype(np.int32) for p in per_new]
        inner = Blocker(
            new,
            self.settings.blocking_rules,
            max_block_size=self.settings.max_block_size,
            max_pairs_per_record=self.settings.max_pairs_per_record,
        )
        na, nb = inner.all_pairs()
        a = np.concatenate([*a_parts, na + offset]).astype(np.int32)
        b = np.concatenate([*b_parts, nb + offset]).astype(np.int32)
        if len(a) == 0:
            return []
        comparer = self.model.comparer(mini, workers=self.settings.workers)
        levels, swapped = comparer.levels(a, b)
        weights = self.model.scorer(comparer).weights(a, levels, swapped)
        floor = weight_of(self.settings.review_threshold)
        merge = weight_of(self.settings.merge_threshold)
        out = []
        ids = mini.ids
        for i in np.flatnonzero(weights >= floor).tolist():
            w = float(weights[i])
            out.append(
                Match(
                    new_id=ids[a[i]],
                    other_id=ids[b[i]],
                    other_is_new=bool(b[i] >= offset),
                    weight=w,
                    probability=float(1.0 / (1.0 + 2.0**-w)),
                    merge=w >= merge,
                )
            )
        out.sort(key=lambda m: -m.weight)
        return out

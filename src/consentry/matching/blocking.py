"""Blocking: which pairs of records are compared at all.

A rule is a tuple of keys; two records are a candidate pair when they agree on every key of at
least one rule (and no key is missing). A key is a field name or a key derived from one:

    ``surname``                  the field itself
    ``surname[:3]``              its first 3 characters
    ``soundex(surname)``         a phonetic code (``soundex``, ``metaphone``, ``nysiis``)
    ``sorted(given_name,surname)``  the two fields as an unordered pair (swapped names meet)

Candidates are the union over the rules, each pair once with ``a < b`` (positions in the batch):
a pair produced by a rule is dropped when an earlier rule already produced it, which is known
from the earlier rules' block numbers without any set of pairs, so the pairs stream out in
chunks of bounded size. A block larger than ``max_block_size`` records is skipped (it would
produce ``n(n-1)/2`` pairs of a key too common to tell people apart), and counted. A rule
also has a budget of pairs (``max_pairs_per_record`` times the records, at least 100,000): past
it, its largest blocks are skipped until it fits. Chance agreements on a key grow with the square
of the records while true duplicates grow with the records, so on a large batch a loose rule
(street number and given name) would otherwise bring tens of millions of pairs of strangers; on
a small one nothing is skipped.

All of it is integer work on the batch's codes: a rule's key is a combination of codes, its blocks
are runs of equal keys after a stable sort.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from consentry.errors import Invalid
from consentry.matching.comparisons import PHONETIC
from consentry.matching.records import Column, RecordBatch, factorize

Rule = tuple[str, ...]
Keys = npt.NDArray[np.int64]
Pairs = npt.NDArray[np.int32]

_PREFIX = re.compile(r"^(\w+)\[:(\d+)\]$")
_CALL = re.compile(r"^(\w+)\(([\w, ]+)\)$")

DEFAULT_RULES: tuple[Rule, ...] = (
    ("national_id",),
    ("email_local",),
    ("phone",),
    ("sorted(given_name,surname)",),
    ("surname", "birth_date"),
    ("given_name", "birth_date"),
    ("birth_date", "postcode"),
    ("surname", "postcode"),
    ("given_name", "postcode"),
    ("street", "street_number"),
    ("street", "postcode"),
    ("street", "city"),
    ("surname", "city"),
    ("given_name", "city"),
    ("birth_date", "city"),
    ("street_number", "postcode"),
    ("street_number", "city"),
    ("street_number", "surname"),
    ("street_number", "given_name"),
    ("street_number", "birth_date"),
    ("soundex(surname)", "birth_date[:4]", "postcode[:2]"),
)


@dataclass(frozen=True, slots=True)
class KeySpec:
    """One parsed key: a function applied to one or two fields."""

    kind: str  # "field", "prefix", a phonetic algorithm, or "sorted"
    fields: tuple[str, ...]
    length: int = 0

    @classmethod
    def parse(cls, text: str) -> KeySpec:
        text = text.strip()
        if m := _PREFIX.match(text):
            return cls("prefix", (m.group(1),), int(m.group(2)))
        if m := _CALL.match(text):
            func = m.group(1)
            args = tuple(a.strip() for a in m.group(2).split(","))
            if func in PHONETIC and len(args) == 1:
                return cls(func, args)
            if func == "sorted" and len(args) == 2:
                return cls("sorted", args)
            raise Invalid(f"unknown blocking key function: {func}")
        if re.fullmatch(r"\w+", text):
            return cls("field", (text,))
        raise Invalid(f"cannot read blocking key: {text}")


def _derived(column: Column, kind: str, length: int) -> Keys:
    """Per-record codes of a key derived from each distinct value of ``column``."""
    values = column.values.tolist()
    if kind == "prefix":
        derived = [v[:length] for v in values]
    else:
        encode = PHONETIC[kind]
        derived = [encode(v) for v in values]
    per_value, _ = factorize(derived, len(derived))
    out = np.full(len(column.codes), -1, dtype=np.int64)
    present = column.codes >= 0
    out[present] = per_value[column.codes[present]]
    return out


def key_codes(batch: RecordBatch, spec: KeySpec) -> Keys | None:
    """Per-record integer codes of one key (-1 missing); None when the batch lacks a field."""
    columns = [batch.columns.get(f) for f in spec.fields]
    present = [c for c in columns if c is not None and len(c.values)]
    if len(present) != len(columns):
        return None
    first = present[0]
    if spec.kind == "field":
        return first.codes.astype(np.int64)
    if spec.kind == "sorted":
        second = present[1]
        # One vocabulary for both fields, so that "a b" and "b a" meet.
        vocab = {v: i for i, v in enumerate(first.values.tolist())}
        for v in second.values.tolist():
            vocab.setdefault(v, len(vocab))
        remap = np.fromiter(
            (vocab[v] for v in second.values.tolist()), np.int64, count=len(second.values)
        )
        x = first.codes.astype(np.int64)
        y = np.where(second.codes >= 0, remap[np.maximum(second.codes, 0)], -1)
        size = np.int64(len(vocab))
        low, high = np.minimum(x, y), np.maximum(x, y)
        return np.where((x >= 0) & (y >= 0), low * size + high, -1)
    return _derived(first, spec.kind, spec.length)


def _combine(parts: Sequence[Keys]) -> Keys:
    """One code per record for a tuple of keys; -1 if any part is missing."""
    key = parts[0].copy()
    for part in parts[1:]:
        missing = (key < 0) | (part < 0)
        # Re-number both sides densely so that the product cannot overflow.
        _, k = np.unique(np.where(missing, 0, key), return_inverse=True)
        _, p = np.unique(np.where(missing, 0, part), return_inverse=True)
        key = k.astype(np.int64) * np.int64(p.max(initial=0) + 1) + p
        key[missing] = -1
    return key


def rule_keys(batch: RecordBatch, rule: Rule) -> Keys | None:
    """Per-record codes of a rule (-1 where a key is missing); None if a field is absent."""
    parts = []
    for text in rule:
        codes = key_codes(batch, KeySpec.parse(text))
        if codes is None:
            return None
        parts.append(codes)
    return _combine(parts)


@dataclass(frozen=True, slots=True)
class RuleStats:
    """What one rule did: its blocks, the pairs it added, what it skipped."""

    rule: Rule
    blocks: int
    pairs: int  # pairs of its blocks (before removing those of earlier rules)
    block_limit: int  # the largest block it kept: max_block_size, or less to keep its budget
    skipped_blocks: int  # blocks over that limit
    skipped_records: int  # records in them


@dataclass(frozen=True, slots=True)
class _Blocks:
    order: npt.NDArray[np.int32]  # record positions sorted by block, ascending within a block
    starts: npt.NDArray[np.int64]  # start of each kept block in order
    sizes: npt.NDArray[np.int64]
    block_of: npt.NDArray[np.int32]  # per record: its kept block's number, or -1


def block_limit(sizes: npt.NDArray[np.int64], max_block_size: int, budget: int) -> int:
    """The largest block size a rule may keep: at most ``max_block_size``, and small enough
    that the rule's blocks give at most ``budget`` pairs (the largest blocks, of the most
    common keys and so the least telling, go first)."""
    sizes = sizes[(sizes >= 2) & (sizes <= max_block_size)]
    if len(sizes) == 0:
        return max_block_size
    values, counts = np.unique(sizes, return_counts=True)
    pairs = np.cumsum(counts * values * (values - 1) // 2)
    if pairs[-1] <= budget:
        return max_block_size
    allowed = values[pairs <= budget]
    return int(allowed[-1]) if len(allowed) else 1


def _group(keys: Keys, max_block_size: int, budget: int) -> tuple[_Blocks, int, int, int]:
    n = len(keys)
    order = np.argsort(keys, kind="stable").astype(np.int32)
    sorted_keys = keys[order]
    first = int(np.searchsorted(sorted_keys, 0))  # -1s sort first
    boundaries = np.flatnonzero(np.diff(sorted_keys[first:])) + 1 + first
    starts = (
        np.concatenate(([first], boundaries)).astype(np.int64)
        if first < n
        else np.array([], dtype=np.int64)
    )
    sizes = np.diff(np.concatenate((starts, [n]))).astype(np.int64)
    limit = block_limit(sizes, max_block_size, budget)
    over = sizes > limit
    keep = (sizes >= 2) & ~over
    block_of = np.full(n, -1, dtype=np.int32)
    kept_starts, kept_sizes = starts[keep], sizes[keep]
    numbers = np.repeat(np.arange(len(kept_starts), dtype=np.int32), kept_sizes)
    members = np.repeat(kept_starts, kept_sizes) + (
        np.arange(int(kept_sizes.sum()), dtype=np.int64)
        - np.repeat(np.cumsum(kept_sizes) - kept_sizes, kept_sizes)
    )
    block_of[order[members]] = numbers
    blocks = _Blocks(order=order, starts=kept_starts, sizes=kept_sizes, block_of=block_of)
    return blocks, limit, int(over.sum()), int(sizes[over].sum())


def pair_budget(n: int, max_pairs_per_record: float) -> int:
    """The most pairs one rule may give for ``n`` records (never under 100,000)."""
    return max(int(max_pairs_per_record * n), 100_000)


class Blocker:
    """The candidate pairs of a batch under a list of rules (rules on absent fields dropped)."""

    def __init__(
        self,
        batch: RecordBatch,
        rules: Sequence[Rule],
        *,
        max_block_size: int = 500,
        max_pairs_per_record: float = 2.0,
    ) -> None:
        if max_block_size < 2:
            raise Invalid("max_block_size must be at least 2")
        self.n = len(batch)
        self.rules: list[Rule] = []
        self._blocks: list[_Blocks] = []
        self.stats: list[RuleStats] = []
        budget = pair_budget(self.n, max_pairs_per_record)
        for rule in rules:
            keys = rule_keys(batch, tuple(rule))
            if keys is None:
                continue
            blocks, limit, skipped, skipped_records = _group(keys, max_block_size, budget)
            self.rules.append(tuple(rule))
            self._blocks.append(blocks)
            self.stats.append(
                RuleStats(
                    rule=tuple(rule),
                    blocks=len(blocks.sizes),
                    pairs=int((blocks.sizes * (blocks.sizes - 1) // 2).sum()),
                    block_limit=limit,
                    skipped_blocks=skipped,
                    skipped_records=skipped_records,
                )
            )

    @property
    def pair_bound(self) -> int:
        """Pairs over all rules before removing repeats: an upper bound of the candidates."""
        return sum(s.pairs for s in self.stats)

    @property
    def skipped_blocks(self) -> int:
        """Blocks skipped over all rules for being larger than ``max_block_size``."""
        return sum(s.skipped_blocks for s in self.stats)

    def pairs(self, chunk_size: int = 1_000_000) -> Iterator[tuple[Pairs, Pairs]]:
        """Yield ``(a, b)`` arrays of distinct candidate pairs, ``a < b``, a chunk at a time.

        Chunks hold about ``chunk_size`` pairs (small pieces are gathered, so that each
        comparison call is worth its overhead).
        """
        pieces: list[tuple[Pairs, Pairs]] = []
        held = 0
        for a, b in self._pieces(chunk_size):
            pieces.append((a, b))
            held += len(a)
            if held >= chunk_size:
                yield _joined(pieces)
                pieces, held = [], 0
        if pieces:
            yield _joined(pieces)

    def _pieces(self, chunk_size: int) -> Iterator[tuple[Pairs, Pairs]]:
        for r, blocks in enumerate(self._blocks):
            earlier = self._blocks[:r]
            for a, b in _rule_pairs(blocks, chunk_size):
                keep = np.ones(len(a), dtype=np.bool_)
                for prior in earlier:
                    ka = prior.block_of[a]
                    keep &= ~((ka >= 0) & (ka == prior.block_of[b]))
                if not keep.all():
                    a, b = a[keep], b[keep]
                if len(a):
                    yield a, b

    def all_pairs(self) -> tuple[Pairs, Pairs]:
        """Every candidate pair at once."""
        chunks = list(self.pairs())
        if not chunks:
            empty = np.empty(0, dtype=np.int32)
            return empty, empty.copy()
        return (
            np.concatenate([c[0] for c in chunks]),
            np.concatenate([c[1] for c in chunks]),
        )


def _joined(pieces: list[tuple[Pairs, Pairs]]) -> tuple[Pairs, Pairs]:
    if len(pieces) == 1:
        return pieces[0]
    return np.concatenate([p[0] for p in pieces]), np.concatenate([p[1] for p in pieces])


def _rule_pairs(blocks: _Blocks, chunk_size: int) -> Iterator[tuple[Pairs, Pairs]]:
    """All pairs within the blocks of one rule, blocks of equal size together, in chunks."""
    if len(blocks.sizes) == 0:
        return
    for size in np.unique(blocks.sizes).tolist():
        starts = blocks.starts[blocks.sizes == size]
        i, j = np.triu_indices(size, k=1)
        per_block = len(i)
        step = max(1, chunk_size // per_block)
        for lo in range(0, len(starts), step):
            members = blocks.order[starts[lo : lo + step, None] + np.arange(size)]
            yield members[:, i].ravel(), members[:, j].ravel()

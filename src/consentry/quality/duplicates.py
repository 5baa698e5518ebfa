"""Likely duplicates: records that share a strong comparison key.

Each record gives up to four keys, built from its *normalised* values only (what the field
checks accepted): its email, its phone (E.164), its name with its birth date, its name with its
postcode. Names are compared as a bag of folded words (no case, no accents, any order), so
"Jane Doe" and "DOE, jane" agree (and "Kıraç" and "KIRAC", "O'Brien" and "OBrien"); a name
needs at least two words to count. Two records that share any key are a candidate pair; a
record's count is the number of other records it pairs with.

A key shared by more than ``max_group`` records says nothing about who is who (a shop's own
phone number typed for every walk-in customer, a family's address): its groups are left out and
counted in ``crowded_keys``.

Memory: 12 bytes per key (a 64-bit digest, never the value, and its record's index); values
are dropped as soon as their digest is taken.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from consentry.quality.text import fold

DEFAULT_MAX_GROUP = 20

# key name -> the normalised fields it needs ("person" is the folded name, see name_words)
RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("email", ("email",)),
    ("phone", ("phone",)),
    ("name_birthday", ("person", "birthday")),
    ("name_postcode", ("person", "postal_code")),
)


def name_words(normalised: Mapping[str, Any]) -> str | None:
    """The person's name as sorted folded words ("doe jane", :func:`~consentry.quality.text.fold`
    as identity matching folds names), from first and last name, else the full name; None with
    fewer than two words."""
    parts = [normalised.get("first_name"), normalised.get("last_name")]
    text = " ".join(p for p in parts if isinstance(p, str))
    if not text.strip():
        full = normalised.get("name")
        text = full if isinstance(full, str) else ""
    words = sorted(fold(text).split())
    return " ".join(words) if len(words) >= 2 else None


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    e164 = getattr(value, "e164", None)  # quality.phones.Phone
    if isinstance(e164, str):
        return e164
    isoformat = getattr(value, "isoformat", None)  # a date
    if callable(isoformat):
        return str(isoformat())
    return None


def comparison_keys(normalised: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(rule, key text)`` of every rule the record's normalised values complete."""
    values: dict[str, str] = {}
    for name, value in normalised.items():
        text = _text(value)
        if text:
            values[name] = text
    person = name_words(normalised)
    if person is not None:
        values["person"] = person
    keys = []
    for rule, fields in RULES:
        if all(f in values for f in fields):
            keys.append((rule, "\x1f".join(values[f] for f in fields)))
    return keys


def digest(rule: str, key: str) -> int:
    """A signed 64-bit digest of a key (collisions: about one in 10^19 per pair)."""
    raw = hashlib.blake2b(f"{rule}\x1e{key}".encode(), digest_size=8).digest()
    return int.from_bytes(raw, "little", signed=True)


@dataclass(frozen=True, slots=True)
class Candidates:
    """What :meth:`DuplicateFinder.candidates` found."""

    counts: npt.NDArray[np.int64]  # per record (in the order added), other records it pairs with
    pairs: int  # distinct candidate pairs
    crowded_keys: int  # keys left out: shared by more than max_group records

    def nonzero(self) -> Iterator[tuple[int, int]]:
        """``(record index, count)`` of each record with at least one candidate."""
        for index in np.flatnonzero(self.counts):
            yield int(index), int(self.counts[index])


class DuplicateFinder:
    """Collects the keys of records (by their index, 0, 1, 2, ...), then finds the pairs."""

    def __init__(self, *, max_group: int = DEFAULT_MAX_GROUP) -> None:
        if max_group < 2:
            raise ValueError("max_group must be at least 2")
        self.max_group = max_group
        self._digests = array("q")
        self._owners = array("i")
        self.records = 0

    def add(self, normalised: Mapping[str, Any]) -> int:
        """Count one record; returns its index."""
        index = self.records
        self.records += 1
        for rule, key in comparison_keys(normalised):
            self._digests.append(digest(rule, key))
            self._owners.append(index)
        return index

    def candidates(self) -> Candidates:
        """Each record's number of candidates (distinct other records sharing a key)."""
        counts = np.zeros(self.records, dtype=np.int64)
        if not self._digests:
            return Candidates(counts, 0, 0)
        digests = np.frombuffer(self._digests, dtype=np.int64)
        owners = np.frombuffer(self._owners, dtype=np.int32)
        order = np.lexsort((owners, digests))
        digests = digests[order]
        owner: npt.NDArray[np.int64] = owners[order].astype(np.int64)
        starts = np.flatnonzero(np.r_[True, digests[1:] != digests[:-1]])
        sizes = np.diff(np.r_[starts, digests.size])
        firsts: list[npt.NDArray[np.int64]] = []
        seconds: list[npt.NDArray[np.int64]] = []
        pairs_of_two = starts[sizes == 2]  # the usual case, done at once
        firsts.append(owner[pairs_of_two])
        seconds.append(owner[pairs_of_two + 1])
        crowded = 0
        for start, size in zip(starts[sizes > 2], sizes[sizes > 2], strict=True):
            members = np.unique(owner[start : start + size])
            if members.size > self.max_group:
                crowded += 1
                continue
            a, b = np.triu_indices(members.size, k=1)
            firsts.append(members[a])
            seconds.append(members[b])
        first = np.concatenate(firsts)
        second = np.concatenate(seconds)
        distinct = first != second  # one record with two equal keys pairs with nobody
        low = np.minimum(first, second)[distinct]
        high = np.maximum(first, second)[distinct]
        pair_codes = np.unique(low * np.int64(self.records) + high)
        low, high = np.divmod(pair_codes, np.int64(self.records))
        counts += np.bincount(low, minlength=self.records)
        counts += np.bincount(high, minlength=self.records)
        return Candidates(counts, int(pair_codes.size), crowded)

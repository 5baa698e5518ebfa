"""Comparison levels: how alike two records' keys are, field by field, for arrays of pairs.

Each field has ordered levels, the first that holds wins::

    0 null     either key missing: the field says nothing (weight 0); also a field whose
               ``implied_by`` field agrees exactly (the city of a shared postcode)
    1 exact    the keys are equal
    2..k+1     the k fuzzy levels of its ``FieldComparison``, each "any of": Jaro-Winkler
               similarity at least a threshold, Damerau-Levenshtein distance at most a bound (in
               its optimal-string-alignment form, rapidfuzz ``OSA``: the same as unrestricted
               Damerau-Levenshtein up to distance 1, and many times faster), equal phonetic
               codes
    k+2 else   none of the above

Similarities and distances come from rapidfuzz's ``process.cpdist`` (element-wise over two arrays
of strings, in C++, on ``workers`` threads), each distinct pair of values once; for random pairs
(training) from ``process.cdist`` over a grid. Phonetic codes come from jellyfish, once per
distinct value. Exact agreement and missing values are integer comparisons of the batch's codes.

Given name and surname swapped between two records (a common entry error) is detected: when
neither name agrees exactly as entered but one agrees exactly across (given with surname), both
are compared across and the pair is marked ``swapped``. The better of the two crossed levels
goes to the given name and the other to the surname, so a pair scores the same in either order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import jellyfish
import numpy as np
import numpy.typing as npt
from rapidfuzz import process
from rapidfuzz.distance import OSA, JaroWinkler

from consentry.errors import Invalid
from consentry.matching import records as rf
from consentry.matching.records import Column, RecordBatch

Phonetic = Literal["metaphone", "nysiis", "soundex"]
PHONETIC: dict[str, Callable[[str], str]] = {
    "metaphone": jellyfish.metaphone,
    "nysiis": jellyfish.nysiis,
    "soundex": jellyfish.soundex,
}

NULL = 0
EXACT = 1

Levels = npt.NDArray[np.int8]
Pairs = npt.NDArray[np.int32]


@dataclass(frozen=True, slots=True)
class Level:
    """A fuzzy level: holds when any of its criteria holds."""

    label: str
    jaro_winkler: float | None = None  # similarity at least this
    damerau_levenshtein: int | None = None  # distance at most this
    phonetic: bool = False  # equal phonetic codes (non-empty)


@dataclass(frozen=True, slots=True)
class FieldComparison:
    """How one field is compared: its fuzzy levels between exact and else.

    ``term_frequency``: an exact agreement is weighted by how common the value is (a shared
    "smith" says less than a shared "zilm"). ``phonetic`` names the code used by phonetic levels.
    ``parts``: the compared value is these fields joined by ``separator`` (missing if any part
    is), and ``field`` is only its name: an email is its local part and domain together.
    ``implied_by``: a field whose exact agreement already implies this one's (a postcode, the
    city): then this field says nothing (level null), as counting both would count the same
    evidence twice; Fellegi-Sunter takes fields as independent, and two neighbours are not
    twice as alike for sharing a postcode and the city it lies in.
    """

    field: str
    levels: tuple[Level, ...] = ()
    term_frequency: bool = False
    phonetic: Phonetic = "metaphone"
    parts: tuple[str, ...] = ()
    separator: str = "@"
    implied_by: str | None = None

    @property
    def sources(self) -> tuple[str, ...]:
        """The record fields this comparison reads."""
        return self.parts or (self.field,)

    @property
    def labels(self) -> tuple[str, ...]:
        """The label of every level, by level number."""
        return ("null", "exact", *(level.label for level in self.levels), "else")

    @property
    def else_level(self) -> int:
        """The number of the last level."""
        return len(self.levels) + 2

    @property
    def n_levels(self) -> int:
        """How many levels, null included."""
        return len(self.levels) + 3

    @property
    def uses_phonetic(self) -> bool:
        return any(level.phonetic for level in self.levels)


def name(
    field: str, *, term_frequency: bool = True, implied_by: str | None = None
) -> FieldComparison:
    """A name: exact, Jaro-Winkler >= 0.92, then JW >= 0.88 or one edit or the same metaphone."""
    return FieldComparison(
        field,
        (
            Level("jaro-winkler >= 0.92", jaro_winkler=0.92),
            Level(
                "jaro-winkler >= 0.88 | 1 edit | phonetic",
                jaro_winkler=0.88,
                damerau_levenshtein=1,
                phonetic=True,
            ),
        ),
        term_frequency=term_frequency,
        implied_by=implied_by,
    )


def text(field: str, *, term_frequency: bool = False) -> FieldComparison:
    """A free text key (street, email local part): exact, JW >= 0.92, JW >= 0.88 or one edit."""
    return FieldComparison(
        field,
        (
            Level("jaro-winkler >= 0.92", jaro_winkler=0.92),
            Level("jaro-winkler >= 0.88 | 1 edit", jaro_winkler=0.88, damerau_levenshtein=1),
        ),
        term_frequency=term_frequency,
    )


def email(local: str = rf.EMAIL_LOCAL, domain: str = rf.EMAIL_DOMAIN) -> FieldComparison:
    """An email address, local part and domain together: exact or else.

    Compared whole on purpose: the same local part at two providers is often two people who
    share a name ("jan.jansen"), and counting it apart from the names would count the names
    twice. No fuzzy level either: "jan.jansen" and "jan.jansen1" at one provider are, more
    often than a typo, two namesakes (the second came later and got a digit). An address is
    missing unless both parts are present.
    """
    return FieldComparison("email", (), parts=(local, domain))


def typo(
    field: str, distances: Sequence[int] = (1,), *, term_frequency: bool = False
) -> FieldComparison:
    """A code (phone, postcode, id, date): exact, then at most each number of edits."""
    return FieldComparison(
        field,
        tuple(Level(f"{d} edit{'s' if d > 1 else ''}", damerau_levenshtein=d) for d in distances),
        term_frequency=term_frequency,
    )


def exact(field: str, *, term_frequency: bool = False) -> FieldComparison:
    """Exact or else."""
    return FieldComparison(field, (), term_frequency=term_frequency)


DEFAULT_COMPARISONS: tuple[FieldComparison, ...] = (
    name(rf.GIVEN_NAME),
    name(rf.SURNAME),
    email(),
    typo(rf.PHONE),
    typo(rf.BIRTH_DATE, (1, 2)),
    exact(rf.STREET_NUMBER, term_frequency=True),
    text(rf.STREET, term_frequency=True),
    typo(rf.POSTCODE, term_frequency=True),
    name(rf.CITY, implied_by=rf.POSTCODE),
    typo(rf.NATIONAL_ID, (1, 2)),
)


def phonetic_codes(column: Column, algorithm: Phonetic) -> npt.NDArray[np.int32]:
    """One code per distinct value of ``column``: equal codes, equal sound; -1 for no code."""
    encode = PHONETIC[algorithm]
    table: dict[str, int] = {"": -1}
    out = np.empty(len(column.values), dtype=np.int32)
    for i, value in enumerate(column.values.tolist()):
        out[i] = table.setdefault(encode(value), len(table) - 1)
    return out


def _metrics(
    spec: FieldComparison,
    left: Sequence[str],
    right: Sequence[str],
    workers: int,
    *,
    grid: bool = False,
) -> tuple[npt.NDArray[np.float64] | None, npt.NDArray[np.int32] | None]:
    """Jaro-Winkler similarity and edit distance where ``spec``'s levels need them.

    Element-wise (``left[k]`` with ``right[k]``), or every left with every right when ``grid``
    (rapidfuzz's ``cdist``, which compares many short strings at once and is ten times faster
    per pair); a grid comes back flattened, row by row.
    """
    jws = [lv.jaro_winkler for lv in spec.levels if lv.jaro_winkler is not None]
    dls = [lv.damerau_levenshtein for lv in spec.levels if lv.damerau_levenshtein is not None]
    run = process.cdist if grid else process.cpdist
    if len(left) * (len(right) if grid else 1) < 20_000:
        workers = 1  # starting threads costs more than it saves
    jw = (
        run(
            left,
            right,
            scorer=JaroWinkler.normalized_similarity,
            score_cutoff=min(jws),
            dtype=np.float64,
            workers=workers,
        ).ravel()
        if jws
        else None
    )
    dl = (
        run(
            left,
            right,
            scorer=OSA.distance,
            score_cutoff=max(dls),
            dtype=np.int32,
            workers=workers,
        ).ravel()
        if dls
        else None
    )
    return jw, dl


def _assign(
    spec: FieldComparison,
    n: int,
    jw: npt.NDArray[np.float64] | None,
    dl: npt.NDArray[np.int32] | None,
    same_sound: npt.NDArray[np.bool_] | None,
) -> Levels:
    """Levels 2..else from the metrics of ``n`` pairs of distinct, present strings."""
    out = np.full(n, spec.else_level, dtype=np.int8)
    # Lowest-priority level first, so that the first level that holds is written last.
    for number in range(spec.else_level - 1, EXACT, -1):
        level = spec.levels[number - 2]
        hit = np.zeros(n, dtype=np.bool_)
        if level.jaro_winkler is not None and jw is not None:
            hit |= jw >= level.jaro_winkler
        if level.damerau_levenshtein is not None and dl is not None:
            hit |= dl <= level.damerau_levenshtein
        if level.phonetic and same_sound is not None:
            hit |= same_sound
        out[hit] = number
    return out


def _fuzzy(
    spec: FieldComparison,
    left: npt.NDArray[np.object_],
    right: npt.NDArray[np.object_],
    same_sound: npt.NDArray[np.bool_] | None,
    workers: int,
) -> Levels:
    """Levels 2..else for pairs of distinct, present strings."""
    if not spec.levels or len(left) == 0:
        return np.full(len(left), spec.else_level, dtype=np.int8)
    jw, dl = _metrics(spec, left, right, workers)  # type: ignore[arg-type]
    return _assign(spec, len(left), jw, dl, same_sound)


def _phonetic_strings(values: npt.NDArray[np.object_], algorithm: Phonetic) -> list[str]:
    encode = PHONETIC[algorithm]
    return [encode(v) for v in values.tolist()]


class Comparer:
    """Computes the comparison levels of pairs of records of one batch.

    ``comparisons`` on fields the batch lacks are dropped (``self.comparisons`` holds the rest),
    unless ``keep_absent``: then such a field is compared as missing everywhere (a trained
    model's fields, scored on a batch that lacks one).
    ``swapped_names`` names the (given name, surname) fields whose swap is detected; it is
    ignored unless both are compared with the same levels.
    """

    def __init__(
        self,
        batch: RecordBatch,
        comparisons: Sequence[FieldComparison],
        *,
        swapped_names: tuple[str, str] | None = (rf.GIVEN_NAME, rf.SURNAME),
        workers: int = -1,
        keep_absent: bool = False,
    ) -> None:
        fields = [c.field for c in comparisons]
        if len(set(fields)) != len(fields):
            raise Invalid("a field may be compared only once")
        self.batch = batch
        self.comparisons = tuple(
            c for c in comparisons if keep_absent or all(batch.has(f) for f in c.sources)
        )
        self.workers = workers
        self.columns = [_column(batch, c) for c in self.comparisons]
        self.sounds = [
            phonetic_codes(col, spec.phonetic) if spec.uses_phonetic else None
            for spec, col in zip(self.comparisons, self.columns, strict=True)
        ]
        index = {c.field: i for i, c in enumerate(self.comparisons)}
        self.implied = [
            (f, index[c.implied_by])
            for f, c in enumerate(self.comparisons)
            if c.implied_by is not None and c.implied_by in index
        ]
        self.swap: tuple[int, int] | None = None
        self._cross: npt.NDArray[np.int32] | None = None
        if swapped_names is not None:
            index = {c.field: i for i, c in enumerate(self.comparisons)}
            g, s = index.get(swapped_names[0]), index.get(swapped_names[1])
            if (
                g is not None
                and s is not None
                and self.comparisons[g].levels == self.comparisons[s].levels
            ):
                self.swap = (g, s)
                given = {v: i for i, v in enumerate(self.columns[g].values.tolist())}
                # surname code -> the given-name code of the same string, or -1; one more -1
                # at the end, for the code -1 (missing)
                self._cross = np.fromiter(
                    (
                        *(given.get(v, -1) for v in self.columns[s].values.tolist()),
                        -1,
                    ),
                    dtype=np.int32,
                    count=len(self.columns[s].values) + 1,
                )

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(c.field for c in self.comparisons)

    def levels(self, a: Pairs, b: Pairs) -> tuple[Levels, npt.NDArray[np.bool_]]:
        """The level of each compared field for the pairs ``(a[k], b[k])``, and the swap flags.

        Returns an ``(n, fields)`` int8 array and a boolean array of pairs whose names were
        compared across.
        """
        n = len(a)
        out = np.empty((n, len(self.comparisons)), dtype=np.int8)
        for f, (spec, column) in enumerate(zip(self.comparisons, self.columns, strict=True)):
            ca = column.codes[a]
            cb = column.codes[b]
            level = np.full(n, spec.else_level, dtype=np.int8)
            null = (ca < 0) | (cb < 0)
            same = ca == cb
            level[same] = EXACT
            level[null] = NULL
            if spec.levels:
                rest = np.flatnonzero(~(null | same))
                if rest.size:
                    level[rest] = self._distinct_levels(f, ca[rest], cb[rest])
            out[:, f] = level
        swapped = np.zeros(n, dtype=np.bool_)
        if self.swap is not None and n:
            swapped = self._swapped(a, b, out)
        self._imply(out)
        return out, swapped

    def _imply(self, out: Levels) -> None:
        for f, by in self.implied:
            out[out[:, by] == EXACT, f] = NULL

    def _distinct_levels(
        self, f: int, ca: npt.NDArray[np.int32], cb: npt.NDArray[np.int32]
    ) -> Levels:
        """Fuzzy levels of pairs of distinct present codes of field ``f``.

        Many candidate pairs repeat a pair of values (common names): past a few thousand pairs,
        each distinct (unordered) pair of values is compared once.
        """
        if len(ca) > 20_000:
            size = np.int64(len(self.columns[f].values))
            key = np.minimum(ca, cb).astype(np.int64) * size + np.maximum(ca, cb)
            unique, inverse = np.unique(key, return_inverse=True)
            if len(unique) < 0.8 * len(key):
                ua = (unique // size).astype(np.int32)
                ub = (unique % size).astype(np.int32)
                levels: Levels = self._code_levels(f, ua, ub)[inverse.ravel()]
                return levels
        return self._code_levels(f, ca, cb)

    def _code_levels(self, f: int, ca: npt.NDArray[np.int32], cb: npt.NDArray[np.int32]) -> Levels:
        spec, column, sound = self.comparisons[f], self.columns[f], self.sounds[f]
        same_sound = None
        if sound is not None:
            sa, sb = sound[ca], sound[cb]
            same_sound = (sa == sb) & (sa >= 0)
        return _fuzzy(spec, column.values[ca], column.values[cb], same_sound, self.workers)

    def grid_levels(self, a: npt.NDArray[np.intp], b: npt.NDArray[np.intp]) -> Levels:
        """Levels of every pair ``(a[i], b[j])``, row by row: ``(len(a) * len(b), fields)``.

        For random pairs (the u estimate): the whole grid is compared at once, which is many
        times faster per pair than pair by pair. Names are not tried across here (a swap
        between two random records is too rare to matter).
        """
        n = len(a) * len(b)
        out = np.empty((n, len(self.comparisons)), dtype=np.int8)
        for f, (spec, column, sound) in enumerate(
            zip(self.comparisons, self.columns, self.sounds, strict=True)
        ):
            ca = column.codes[a]
            cb = column.codes[b]
            null = ((ca < 0)[:, None] | (cb < 0)[None, :]).ravel()
            same = (ca[:, None] == cb[None, :]).ravel()
            if spec.levels:
                values = column.values.tolist()
                left = [values[c] if c >= 0 else "" for c in ca.tolist()]
                right = [values[c] if c >= 0 else "" for c in cb.tolist()]
                jw, dl = _metrics(spec, left, right, self.workers, grid=True)
                same_sound = None
                if sound is not None:
                    padded = np.append(sound, -1)  # code -1 (missing) has no sound
                    sa, sb = padded[ca], padded[cb]
                    same_sound = ((sa[:, None] == sb[None, :]) & (sa >= 0)[:, None]).ravel()
                level = _assign(spec, n, jw, dl, same_sound)
            else:
                level = np.full(n, spec.else_level, dtype=np.int8)
            level[same] = EXACT
            level[null] = NULL
            out[:, f] = level
        self._imply(out)
        return out

    def _swapped(self, a: Pairs, b: Pairs, out: Levels) -> npt.NDArray[np.bool_]:
        assert self.swap is not None and self._cross is not None
        g, s = self.swap
        given, surname = self.columns[g], self.columns[s]
        cross = self._cross
        ga, gb = given.codes[a], given.codes[b]
        sa, sb = surname.codes[a], surname.codes[b]
        xa = cross[sa]  # a's surname as a given-name code (-1: none, or missing)
        xb = cross[sb]
        across = ((ga >= 0) & (ga == xb)) | ((gb >= 0) & (gb == xa))
        candidates = np.flatnonzero(across & (out[:, g] != EXACT) & (out[:, s] != EXACT))
        swapped = np.zeros(len(a), dtype=np.bool_)
        if candidates.size == 0:
            return swapped
        spec = self.comparisons[g]
        # Crossed comparisons: a's given name with b's surname, a's surname with b's given name.
        first = self._string_levels(
            spec, given.values, ga[candidates], surname.values, sb[candidates]
        )
        second = self._string_levels(
            spec, surname.values, sa[candidates], given.values, gb[candidates]
        )
        straight = _goodness(out[candidates, g], spec) + _goodness(out[candidates, s], spec)
        crossed = _goodness(first, spec) + _goodness(second, spec)
        take = crossed > straight
        rows = candidates[take]
        first, second = first[take], second[take]
        better = np.where(_goodness(first, spec) >= _goodness(second, spec), first, second)
        worse = np.where(_goodness(first, spec) >= _goodness(second, spec), second, first)
        out[rows, g] = better
        out[rows, s] = worse
        swapped[rows] = True
        return swapped

    def _string_levels(
        self,
        spec: FieldComparison,
        left_values: npt.NDArray[np.object_],
        left_codes: npt.NDArray[np.int32],
        right_values: npt.NDArray[np.object_],
        right_codes: npt.NDArray[np.int32],
    ) -> Levels:
        """Levels of strings drawn from two different columns (no shared codes)."""
        n = len(left_codes)
        level = np.full(n, spec.else_level, dtype=np.int8)
        null = (left_codes < 0) | (right_codes < 0)
        level[null] = NULL
        present = np.flatnonzero(~null)
        la = left_values[left_codes[present]]
        lb = right_values[right_codes[present]]
        same = la == lb
        level[present[same]] = EXACT
        rest = present[~same]
        if spec.levels and rest.size:
            ra = la[~same]
            rb = lb[~same]
            same_sound = None
            if spec.uses_phonetic:
                pa = _phonetic_strings(ra, spec.phonetic)
                pb = _phonetic_strings(rb, spec.phonetic)
                same_sound = np.array([x == y and x != "" for x, y in zip(pa, pb, strict=True)])
            level[rest] = _fuzzy(spec, ra, rb, same_sound, self.workers)
        return level


def _column(batch: RecordBatch, spec: FieldComparison) -> Column:
    """The column ``spec`` compares: a field of the batch, or its parts joined."""
    if not spec.parts:
        column = batch.columns.get(spec.field)
        return column if column is not None else Column.build([None] * len(batch))
    parts = [batch.columns.get(f) for f in spec.parts]
    present = [p for p in parts if p is not None]
    if len(present) != len(parts):
        return Column.build([None] * len(batch))
    # Join distinct combinations only: one string per distinct tuple of codes.
    codes = np.stack([p.codes for p in present]).astype(np.int64)
    missing = (codes < 0).any(axis=0)
    unique, inverse = np.unique(codes[:, ~missing], axis=1, return_inverse=True)
    joined = [
        spec.separator.join(p.values[c] for p, c in zip(present, combo, strict=True))
        for combo in unique.T.tolist()
    ]
    raw: list[str | None] = [None] * len(batch)
    for i, k in zip(np.flatnonzero(~missing).tolist(), inverse.ravel().tolist(), strict=True):
        raw[i] = joined[k]
    return Column.build(raw)


def _goodness(levels: Levels, spec: FieldComparison) -> npt.NDArray[np.int16]:
    """Higher is more alike: else 1 ... exact; null 0."""
    good = (spec.else_level + 1 - levels.astype(np.int16)).astype(np.int16)
    return np.where(levels == NULL, np.int16(0), good).astype(np.int16)

"""A columnar batch of comparison keys: one factorised column per field plus the record ids.

Records arrive already normalised (plain strings, lower-cased, NFKC; the caller opens and
normalises them). A column keeps each distinct value once (``values``) and one ``int32`` code per
record (``codes``, ``-1`` for a missing or empty value), so exact agreement is a comparison of
integers, term frequencies are counts of codes, and blocking groups codes. The values are never
logged or put in an error message.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from consentry.errors import FieldError, Invalid

GIVEN_NAME = "given_name"
SURNAME = "surname"
EMAIL_LOCAL = "email_local"
EMAIL_DOMAIN = "email_domain"
PHONE = "phone"
BIRTH_DATE = "birth_date"
STREET_NUMBER = "street_number"
STREET = "street"
POSTCODE = "postcode"
CITY = "city"
NATIONAL_ID = "national_id"

FIELDS = (
    GIVEN_NAME,
    SURNAME,
    EMAIL_LOCAL,
    EMAIL_DOMAIN,
    PHONE,
    BIRTH_DATE,
    STREET_NUMBER,
    STREET,
    POSTCODE,
    CITY,
    NATIONAL_ID,
)

Codes = npt.NDArray[np.int32]
Strings = npt.NDArray[np.object_]


def factorize(values: Iterable[str | None], size: int) -> tuple[Codes, Strings]:
    """Return ``(codes, uniques)``: ``uniques[codes[i]]`` is value ``i``; ``-1`` marks missing.

    ``None`` and ``""`` are missing. Codes follow first appearance, so the result depends only on
    the order of the input (dict-based: no sort of Python strings, linear time).
    """
    table: dict[str | None, int] = {None: -1, "": -1}
    setdefault = table.setdefault
    # Two sentinels sit in the table, so the next fresh code is len(table) - 2.
    codes = np.fromiter((setdefault(v, len(table) - 2) for v in values), dtype=np.int32, count=size)
    uniques = np.empty(len(table) - 2, dtype=object)
    for value, code in table.items():
        if code >= 0:
            uniques[code] = value
    return codes, uniques


@dataclass(frozen=True, slots=True)
class Column:
    """One field: ``values[codes[i]]`` is record ``i``'s key; ``codes[i] < 0``: missing."""

    codes: Codes
    values: Strings
    counts: npt.NDArray[np.int64] = field(repr=False)

    @classmethod
    def build(cls, raw: Sequence[str | None]) -> Column:
        """Factorise one column of raw keys (strings or ``None``)."""
        try:
            codes, values = factorize(raw, len(raw))
        except TypeError as exc:  # an unhashable value: a list, a dict
            raise Invalid("comparison keys must be strings or None") from exc
        counts = np.bincount(codes[codes >= 0], minlength=len(values)).astype(np.int64)
        return cls(codes=codes, values=values, counts=counts)

    @property
    def present(self) -> int:
        """How many records have a value."""
        return int(self.counts.sum())


@dataclass(frozen=True, slots=True)
class RecordBatch:
    """Records as columns: ``ids[i]`` is record ``i``'s identifier, ``columns[f]`` its field ``f``.

    Only the fields present in the input have a column; a comparison or blocking rule on a field
    the batch lacks is dropped by the caller (it could only ever say "missing").
    """

    ids: npt.NDArray[np.object_]
    columns: Mapping[str, Column]

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def from_columns(
        cls, ids: Sequence[object], columns: Mapping[str, Sequence[str | None]]
    ) -> RecordBatch:
        """Build from parallel sequences: ``ids`` and one sequence of keys per field."""
        n = len(ids)
        errors = [
            FieldError(field=name, reason=f"has {len(col)} values for {n} records")
            for name, col in columns.items()
            if len(col) != n
        ]
        if errors:
            raise Invalid("columns differ in length from the ids", errors)
        id_array = np.empty(n, dtype=object)
        id_array[:] = list(ids)
        if len(set(id_array.tolist())) != n:
            raise Invalid("record ids must be unique", [FieldError(field="id", reason="repeated")])
        built = {}
        for name, col in columns.items():
            column = Column.build(col)
            # Checked on the distinct values only: cheap, and the value itself is never quoted.
            if not all(isinstance(v, str) for v in column.values.tolist()):
                raise Invalid(
                    "comparison keys must be strings or None",
                    [FieldError(field=name, reason="not a string")],
                )
            built[name] = column
        return cls(ids=id_array, columns=built)

    @classmethod
    def from_records(
        cls,
        records: Sequence[Mapping[str, object]],
        *,
        id_field: str = "id",
        fields: Sequence[str] | None = None,
    ) -> RecordBatch:
        """Build from a list of dicts; ``fields`` defaults to every known field that appears."""
        if fields is None:
            seen: set[str] = set()
            for record in records:
                seen.update(record.keys())
            fields = [f for f in FIELDS if f in seen]
        ids = [record.get(id_field) for record in records]
        missing = next((i for i, v in enumerate(ids) if v is None), None)
        if missing is not None:
            raise Invalid(
                "every record needs an id",
                [FieldError(field=id_field, reason="missing", index=missing)],
            )
        columns: dict[str, list[str | None]] = {}
        for name in fields:
            columns[name] = [record.get(name) for record in records]  # type: ignore[misc]
        return cls.from_columns(ids, columns)

    def has(self, name: str) -> bool:
        """Whether the batch has any value for field ``name``."""
        column = self.columns.get(name)
        return column is not None and len(column.values) > 0

    def take(self, positions: npt.NDArray[np.integer[Any]] | Sequence[int]) -> RecordBatch:
        """A new batch of the records at ``positions`` (re-factorised, counts of its own)."""
        index = np.asarray(positions, dtype=np.intp)
        columns = {}
        for name, column in self.columns.items():
            codes = column.codes[index]
            raw: list[str | None] = [None if c < 0 else column.values[c] for c in codes.tolist()]
            columns[name] = raw
        return RecordBatch.from_columns(self.ids[index].tolist(), columns)

    @staticmethod
    def concat(first: RecordBatch, second: RecordBatch) -> RecordBatch:
        """The records of both batches in one (fields: the union; ids must stay unique)."""
        names = list(dict.fromkeys([*first.columns, *second.columns]))
        columns: dict[str, list[str | None]] = {}
        for name in names:
            raw: list[str | None] = []
            for batch in (first, second):
                column = batch.columns.get(name)
                if column is None:
                    raw.extend([None] * len(batch))
                else:
                    raw.extend(None if c < 0 else column.values[c] for c in column.codes.tolist())
            columns[name] = raw
        ids = [*first.ids.tolist(), *second.ids.tolist()]
        return RecordBatch.from_columns(ids, columns)

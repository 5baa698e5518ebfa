"""CSV imports of customers and orders: a file becomes Segment-spec messages, row by row.

Pure: no SQL, no HTTP. :func:`open_import` reads the header row (dropping a UTF-8 BOM and
sniffing ``,``/``;``/tab/``|`` as the delimiter), picks the layout (Shopify's customer or order
export, or the generic formats of ``docs/imports.md``) and refuses the file, naming the missing
column, before anything is read further. :meth:`ImportReader.outcomes` then streams the records:
each customer row, and each order's consecutive rows, become messages or errors with the file's
1-based line numbers. A row never raises; only a file that stops being CSV or UTF-8 half-way
does (:class:`UnreadableFile`).

::

    FileRefused      the header cannot be imported (nothing was read past it)
    UnreadableFile   the file is not CSV/UTF-8 at some line (rows before it were yielded)
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from typing import TextIO

from consentry.commerce.importers_layouts import (
    Binding,
    Cells,
    FileRefused,
    Format,
    Kind,
    Layout,
    RowError,
    choose_layout,
)
from consentry.commerce.importers_messages import (
    Outcome,
    customer_outcome,
    message_id,
    order_outcome,
)
from consentry.commerce.importers_values import parse_date, parse_money

__all__ = [
    "FileRefused",
    "Format",
    "ImportReader",
    "Kind",
    "Outcome",
    "RowError",
    "UnreadableFile",
    "message_id",
    "open_import",
    "parse_date",
    "parse_money",
    "sniff_delimiter",
]

DELIMITERS = (",", ";", "\t", "|")


class UnreadableFile(Exception):
    """The file stopped being UTF-8 CSV at ``line``; the rows before it were read."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason


def sniff_delimiter(header_line: str) -> str:
    """The delimiter that splits the header row into the most columns (``,`` on a tie)."""

    def width(delimiter: str) -> int:
        return len(next(csv.reader([header_line], delimiter=delimiter), []))

    return max(DELIMITERS, key=width)


class ImportReader:
    """A file whose header was accepted; :meth:`outcomes` reads the rest of it once."""

    def __init__(
        self, stream: TextIO, header: list[str], delimiter: str, layout: Layout, region: str
    ) -> None:
        self.kind = layout.kind
        self.format = layout.format
        self.delimiter = delimiter
        self._stream = stream
        self._binding = Binding(layout, header)
        self._region = region

    def outcomes(self) -> Iterator[Outcome]:
        """Customer rows one by one; an order's consecutive rows together."""
        if self.kind is Kind.CUSTOMERS:
            for cells in self._records():
                yield customer_outcome(cells, self._region)
            return
        for rows in _orders(self._records()):
            yield order_outcome(rows, self._region)

    def _records(self) -> Iterator[Cells]:
        reader = csv.reader(self._stream, delimiter=self.delimiter)
        while True:
            line = reader.line_num + 2  # the header is line 1
            try:
                record = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise UnreadableFile(line, f"not valid CSV ({exc})") from exc
            except UnicodeDecodeError as exc:
                raise UnreadableFile(line, "not UTF-8 text: save the file as CSV UTF-8") from exc
            if any(value.strip() for value in record):
                yield self._binding.cells(line, record)


def _orders(records: Iterator[Cells]) -> Iterator[list[Cells]]:
    """Consecutive rows with the same order id; a row without one stands alone."""
    group: list[Cells] = []
    key: str | None = None
    for cells in records:
        current = cells.values.get("order_id", (0, None))[1]
        if group and (current is None or current != key):
            yield group
            group = []
        group.append(cells)
        key = current
    if group:
        yield group


def open_import(
    stream: TextIO, *, kind: Kind, fmt: Format = Format.AUTO, default_region: str = "US"
) -> ImportReader:
    """Read the header row of ``stream`` and choose its layout, or raise :class:`FileRefused`.

    ``stream`` is text opened with ``newline=""`` (``encoding="utf-8-sig"`` for files).
    """
    try:
        first = stream.readline()
    except UnicodeDecodeError as exc:
        raise FileRefused("the file is not UTF-8 text: save it as CSV UTF-8") from exc
    first = first.lstrip("\ufeff")
    if not first.strip():
        raise FileRefused("the file is empty: the first line must name the columns")
    delimiter = sniff_delimiter(first)
    header = next(csv.reader([first], delimiter=delimiter), [])
    layout = choose_layout(kind, fmt, header)
    return ImportReader(stream, header, delimiter, layout, default_region)

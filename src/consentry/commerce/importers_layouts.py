"""The CSV layouts the importers read, and a row read through one of them.

A :class:`Layout` maps each field the importer understands to the columns that may hold it (the
first present, non-empty one wins), names the columns a file must have, and the columns that give
the format away. Column names match without regard to case, spaces or punctuation, so
``Lineitem quantity``, ``lineitem_quantity`` and ``LINEITEM-QUANTITY`` are one column.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import TypeVar

from consentry.commerce.importers_values import (
    clean,
    parse_count,
    parse_date,
    parse_flag,
    parse_money,
    strip_apostrophe,
)

T = TypeVar("T")


class Kind(StrEnum):
    """What a file holds."""

    CUSTOMERS = "customers"
    ORDERS = "orders"


class Format(StrEnum):
    """Whose export a file is; ``auto`` tells from the header row."""

    AUTO = "auto"
    SHOPIFY = "shopify"
    GENERIC = "generic"


class FileRefused(Exception):
    """The file cannot be imported at all; nothing was written."""

    def __init__(self, message: str, column: str = "(file)") -> None:
        super().__init__(message)
        self.message = message
        self.column = column


@dataclass(frozen=True, slots=True)
class RowError:
    """Why one row of the file was not imported: 1-based line number, column and reason."""

    line: int
    field: str
    reason: str


def column_key(name: str) -> str:
    """A column name without case, spaces or punctuation: ``Created at`` -> ``created_at``."""
    return re.sub(r"[^0-9a-z]+", "_", clean(name).lstrip("\ufeff").lower()).strip("_")


@dataclass(frozen=True, slots=True)
class Layout:
    """One file format: fields and the columns holding them, required and telltale columns."""

    kind: Kind
    format: Format
    columns: Mapping[str, tuple[str, ...]]
    required: tuple[tuple[str, ...], ...]
    signature: frozenset[str] = frozenset()

    def missing(self, keys: set[str]) -> str | None:
        """The refusal for a header that lacks a required column, or None."""
        for choices in self.required:
            if not any(column_key(c) in keys for c in choices):
                if len(choices) == 1:
                    return f"the file has no {choices[0]!r} column"
                names = ", ".join(repr(c) for c in choices)
                return f"the file needs at least one of the columns {names}"
        return None


_ADDRESS = "Default Address "
SHOPIFY_CUSTOMERS = Layout(
    kind=Kind.CUSTOMERS,
    format=Format.SHOPIFY,
    columns={
        "customer_id": ("Customer ID",),
        "email": ("Email",),
        "phone": ("Phone", _ADDRESS + "Phone"),
        "first_name": ("First Name",),
        "last_name": ("Last Name",),
        "street": (_ADDRESS + "Address1", "Address1"),
        "street2": (_ADDRESS + "Address2", "Address2"),
        "city": (_ADDRESS + "City", "City"),
        "state": (_ADDRESS + "Province Code", "Province Code"),
        "country": (_ADDRESS + "Country Code", "Country Code"),
        "postal_code": (_ADDRESS + "Zip", "Zip"),
        "accepts_email_marketing": ("Accepts Email Marketing", "Accepts Marketing"),
        "accepts_sms_marketing": ("Accepts SMS Marketing",),
        "tags": ("Tags",),
        "total_spent": ("Total Spent",),
        "orders_count": ("Total Orders",),
    },
    required=(("Email",),),
    signature=frozenset(
        column_key(c)
        for c in (
            "Accepts Email Marketing",
            "Accepts Marketing",
            "Accepts SMS Marketing",
            "Total Orders",
            "Tax Exempt",
            _ADDRESS + "Address1",
            _ADDRESS + "City",
            _ADDRESS + "Country Code",
        )
    ),
)
GENERIC_CUSTOMERS = Layout(
    kind=Kind.CUSTOMERS,
    format=Format.GENERIC,
    columns={
        name: (name,)
        for name in (
            "customer_id",
            "email",
            "phone",
            "first_name",
            "last_name",
            "street",
            "city",
            "postal_code",
            "state",
            "country",
            "accepts_email_marketing",
            "accepts_sms_marketing",
            "tags",
            "total_spent",
            "orders_count",
            "created_at",
        )
    },
    required=(("customer_id", "email", "phone"),),
)
SHOPIFY_ORDERS = Layout(
    kind=Kind.ORDERS,
    format=Format.SHOPIFY,
    columns={
        "order_id": ("Name",),
        "email": ("Email",),
        "phone": ("Phone", "Billing Phone", "Shipping Phone"),
        "country": ("Billing Country", "Shipping Country"),
        "status": ("Financial Status",),
        "placed_at": ("Created at",),
        "currency": ("Currency",),
        "subtotal": ("Subtotal",),
        "shipping": ("Shipping",),
        "tax": ("Taxes",),
        "total": ("Total",),
        "coupon": ("Discount Code",),
        "discount": ("Discount Amount",),
        "refunded_amount": ("Refunded Amount",),
        "cancelled_at": ("Cancelled at",),
        "sku": ("Lineitem sku",),
        "item_name": ("Lineitem name",),
        "price": ("Lineitem price",),
        "quantity": ("Lineitem quantity",),
    },
    required=tuple(
        (c,)
        for c in (
            "Name",
            "Email",
            "Created at",
            "Currency",
            "Total",
            "Lineitem quantity",
            "Lineitem name",
            "Lineitem price",
        )
    ),
    signature=frozenset(
        column_key(c)
        for c in (
            "Financial Status",
            "Fulfillment Status",
            "Lineitem name",
            "Lineitem quantity",
            "Lineitem price",
        )
    ),
)
GENERIC_ORDERS = Layout(
    kind=Kind.ORDERS,
    format=Format.GENERIC,
    columns={
        **{
            name: (name,)
            for name in (
                "order_id",
                "customer_id",
                "email",
                "phone",
                "country",
                "status",
                "placed_at",
                "currency",
                "subtotal",
                "shipping",
                "tax",
                "total",
                "coupon",
                "discount",
                "refunded_amount",
                "cancelled_at",
                "sku",
                "category",
                "price",
                "quantity",
            )
        },
        "item_name": ("name",),
    },
    required=(
        ("order_id",),
        ("customer_id", "email", "phone"),
        ("placed_at",),
        ("currency",),
        ("total",),
    ),
)
LAYOUTS = {
    (layout.kind, layout.format): layout
    for layout in (SHOPIFY_CUSTOMERS, GENERIC_CUSTOMERS, SHOPIFY_ORDERS, GENERIC_ORDERS)
}
_ORDER_HINTS = frozenset({"order_id", "lineitem_name", "financial_status", "placed_at"})
_CUSTOMER_HINTS = frozenset({"accepts_email_marketing", "total_orders", "orders_count"})


def choose_layout(kind: Kind, fmt: Format, header: Sequence[str]) -> Layout:
    """The layout of a file with this header, or :class:`FileRefused` saying what is wrong."""
    keys = {column_key(h) for h in header} - {""}
    if not keys:
        raise FileRefused("the file has no header row")
    _refuse_other_kind(kind, keys)
    if fmt is Format.AUTO:
        shopify = LAYOUTS[(kind, Format.SHOPIFY)]
        fmt = Format.SHOPIFY if keys & shopify.signature else Format.GENERIC
    layout = LAYOUTS[(kind, fmt)]
    problem = layout.missing(keys)
    if problem is not None:
        hint = " (see docs/imports.md for the columns of each format)"
        raise FileRefused(f"{problem}; read as {fmt.value} {kind.value}{hint}")
    return layout


def _refuse_other_kind(kind: Kind, keys: set[str]) -> None:
    if kind is Kind.CUSTOMERS and keys & _ORDER_HINTS:
        raise FileRefused("this looks like an order export: use `consentry import orders`")
    if kind is Kind.ORDERS and keys & _CUSTOMER_HINTS and not keys & _ORDER_HINTS:
        raise FileRefused("this looks like a customer export: use `consentry import customers`")


# --- one row, read through a layout ---------------------------------------------------------

APOSTROPHE_FIELDS = frozenset({"customer_id", "phone", "postal_code"})


@dataclass(slots=True)
class Cells:
    """The fields of one row (or of one order's rows); parse problems collect in ``problems``.

    ``values`` maps a field to the line it was read from and its text; ``labels`` names each
    field's column as the file spells it, for the error report.
    """

    line: int
    values: dict[str, tuple[int, str]]
    labels: Mapping[str, str]
    problems: list[RowError] = field(default_factory=list)

    @classmethod
    def merged(cls, rows: Sequence[Cells]) -> Cells:
        """The first non-empty value of each field across ``rows`` (an order's first row wins)."""
        values: dict[str, tuple[int, str]] = {}
        for row in rows:
            for name, found in row.values.items():
                values.setdefault(name, found)
        return cls(line=rows[0].line, values=values, labels=rows[0].labels)

    def label(self, name: str) -> str:
        """The column a field is read from."""
        return self.labels.get(name, name)

    def problem(self, name: str, reason: str, line: int | None = None) -> None:
        """Record why a field cannot be imported."""
        where = line if line is not None else self.values.get(name, (self.line, ""))[0]
        self.problems.append(RowError(where, self.label(name), reason))

    def text(self, name: str, limit: int | None = None) -> str | None:
        """A field's text, or None when empty; longer than ``limit`` is a problem."""
        found = self.values.get(name)
        if found is None:
            return None
        if limit is not None and len(found[1]) > limit:
            self.problem(name, f"longer than {limit} characters")
            return None
        return found[1]

    def money(self, name: str) -> Decimal | None:
        """A field as an amount."""
        return self._parsed(name, parse_money)

    def count(self, name: str) -> int | None:
        """A field as a whole number."""
        return self._parsed(name, parse_count)

    def date(self, name: str) -> datetime | None:
        """A field as a timezone-aware point in time."""
        return self._parsed(name, parse_date)

    def flag(self, name: str) -> bool | None:
        """A field as yes/no; unknown words are left out rather than guessed."""
        return self._parsed(name, parse_flag)

    def _parsed(self, name: str, parse: Callable[[str], T | None]) -> T | None:
        found = self.values.get(name)
        if found is None:
            return None
        try:
            return parse(found[1])
        except ValueError as exc:
            self.problem(name, str(exc))
            return None


class Binding:
    """A layout bound to a file's header: which positions hold which field."""

    def __init__(self, layout: Layout, header: Sequence[str]) -> None:
        self.layout = layout
        self.width = len(header)
        keys = [column_key(h) for h in header]
        self.positions: dict[str, list[int]] = {}
        self.labels: dict[str, str] = {}
        for name, choices in layout.columns.items():
            found = [keys.index(k) for c in choices if (k := column_key(c)) in keys]
            self.positions[name] = found
            self.labels[name] = header[found[0]].strip() if found else choices[0]

    def cells(self, line: int, record: Sequence[str]) -> Cells:
        """Read one CSV record; a record longer than the header is a problem."""
        values: dict[str, tuple[int, str]] = {}
        for name, positions in self.positions.items():
            for pos in positions:
                text = clean(record[pos]) if pos < len(record) else ""
                if name in APOSTROPHE_FIELDS:
                    text = strip_apostrophe(text)
                if text:
                    values[name] = (line, text)
                    break
        cells = Cells(line=line, values=values, labels=self.labels)
        if any(clean(extra) for extra in record[self.width :]):
            reason = f"the row has {len(record)} fields, the header {self.width}"
            cells.problem("(row)", reason, line)
        return cells

"""Columnar reads and bulk writes of analytics-size data at the store's own speed.

Reads: :func:`read_arrow` runs a SQLAlchemy ``SELECT`` and returns an Arrow table without a
Python object per value where the store allows it. PostgreSQL streams the result as CSV
(``COPY (SELECT ...) TO STDOUT``) into Arrow's multi-threaded CSV reader; SQLite, in process,
is read with the raw ``sqlite3`` cursor in batches and converted column by column (no ORM rows,
no type processing). Values are bound as parameters by the driver, never pasted into the SQL.
Timestamps and decimals should be computed by the store (``platform.db.epoch_seconds``, integer
cents) so the columns are plain integers and text.

Writes: :func:`copy_rows` appends rows inside the caller's transaction with the driver's bulk
path: ``COPY ... FROM STDIN`` on PostgreSQL, ``executemany`` on the raw ``sqlite3`` cursor.
Values must be ready for the store: timestamps as :func:`timestamp_texts` writes them.

(Apache Arrow's ADBC SQLite driver was measured and refused: it links a second copy of SQLite
into the process, and two copies of SQLite in one process can release each other's file locks.)
"""

from __future__ import annotations

import io
import sqlite3
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import psycopg
import pyarrow as pa
import pyarrow.csv as pa_csv
from sqlalchemy import Select, Table
from sqlalchemy.orm import Session

from consentry.platform.db import Database

FETCH_BATCH = 100_000


def read_arrow(db: Database, statement: Select[*tuple[Any, ...]], schema: pa.Schema) -> pa.Table:
    """The result of ``statement`` as an Arrow table of ``schema`` (one field per selected
    column, in order; text columns keep their nulls)."""
    with db.read() as session:
        connection = session.connection()
        compiled = statement.compile(dialect=connection.dialect)
        raw = connection.connection.dbapi_connection
        if raw is None:
            raise RuntimeError("the session's connection is closed")
        if connection.dialect.name == "postgresql":
            return _copy_out(
                cast(psycopg.Connection[Any], raw), str(compiled), compiled.params, schema
            )
        names = compiled.positiontup or []
        params = tuple(compiled.params[name] for name in names)
        return _fetch(cast(sqlite3.Connection, raw), str(compiled), params, schema)


def _copy_out(
    raw: psycopg.Connection[Any], sql: str, params: dict[str, Any], schema: pa.Schema
) -> pa.Table:
    buffer = io.BytesIO()
    with (
        raw.cursor() as cursor,
        cursor.copy(f"COPY ({sql}) TO STDOUT (FORMAT csv)", params) as copy,
    ):
        for chunk in copy:
            buffer.write(chunk)
    if buffer.tell() == 0:
        return schema.empty_table()
    buffer.seek(0)
    return pa_csv.read_csv(
        buffer,
        read_options=pa_csv.ReadOptions(column_names=schema.names),
        parse_options=pa_csv.ParseOptions(newlines_in_values=True),
        convert_options=pa_csv.ConvertOptions(
            column_types=schema,
            strings_can_be_null=True,  # PostgreSQL writes NULL unquoted and '' quoted
            quoted_strings_can_be_null=False,
        ),
    )


def _fetch(
    raw: sqlite3.Connection, sql: str, params: tuple[Any, ...], schema: pa.Schema
) -> pa.Table:
    columns: list[list[Any]] = [[] for _ in schema.names]
    cursor = raw.cursor()
    try:
        cursor.execute(sql, params)
        while rows := cursor.fetchmany(FETCH_BATCH):
            for column, values in zip(columns, zip(*rows, strict=True), strict=True):
                column.extend(values)
    finally:
        cursor.close()
    return pa.table(
        [pa.array(values, field.type) for values, field in zip(columns, schema, strict=True)],
        schema=schema,
    )


_SQLITE_TIME = " 00:00:00.000000"  # platform.db writes SQLite timestamps as naive UTC text


def timestamp_texts(db_dialect: str, days: npt.NDArray[Any]) -> list[str]:
    """Midnight UTC of each day number (days since 1970-01-01) as the store reads a timestamp:
    SQLite's naive UTC text (``platform.db``), PostgreSQL's text with its zone."""
    dates = days.astype("datetime64[D]").astype(str)
    suffix = _SQLITE_TIME if db_dialect == "sqlite" else " 00:00:00+00"
    return [d + suffix for d in dates.tolist()]


def moment_text(db_dialect: str, moment: datetime) -> str:
    """One timestamp as the store reads it (see :func:`timestamp_texts`)."""
    utc = moment.astimezone(UTC)
    if db_dialect == "sqlite":
        return utc.strftime("%Y-%m-%d %H:%M:%S.%f")
    return utc.isoformat()


def copy_rows(
    session: Session, table: Table, columns: Sequence[str], rows: Iterable[Sequence[object]]
) -> None:
    """Append ``rows`` (values in ``columns`` order, ready for the store) to ``table`` inside
    the session's transaction."""
    connection = session.connection()
    raw = connection.connection.dbapi_connection
    if raw is None:
        raise RuntimeError("the session's connection is closed")
    names = ", ".join(columns)
    if connection.dialect.name == "postgresql":
        pg = cast(psycopg.Connection[Any], raw)
        with pg.cursor() as cursor, cursor.copy(f"COPY {table.name} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    marks = ", ".join("?" * len(columns))
    lite = cast(sqlite3.Connection, raw).cursor()
    try:
        lite.executemany(f"INSERT INTO {table.name} ({names}) VALUES ({marks})", rows)
    finally:
        lite.close()


def as_float_or_none(values: npt.NDArray[np.float64]) -> list[float | None]:
    """A float column with NaN as None (SQL null)."""
    return [None if v != v else v for v in values.tolist()]

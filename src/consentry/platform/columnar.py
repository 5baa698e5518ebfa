"""Columnar reads and bulk writes of analytics-size data at the store's own speed.

Reads: :func:`read_arrow` runs a SQLAlchemy ``SELECT`` and returns an Arrow table without a
Python object per value where the store allows it. PostgreSQL streams the result as CSV
(``COPY (SELECT ...) TO STDOUT``) into Arrow's multi-threaded CSV reader; SQLite, in process,
is read with the raw ``sqlite3`` cursor in batches and converted column by column (no ORM rows,
no type processing). Values are bound as parameters by the driver, never pasted into the SQL.
Timestamps and decimals should be computed by the store (``platform.db.epoch_seconds``, integer
cents) so the columns are plain integers and text.

Writes: :func:`copy_table` appends an Arrow table inside the caller's transaction with the
driver's bulk path: CSV written by Arrow into ``COPY ... FROM STDIN`` on PostgreSQL,
``executemany`` on the raw ``sqlite3`` cursor. Values must be ready for the store: timestamps
as :func:`day_timestamps` writes them.

(Apache Arrow's ADBC SQLite driver was measured and refused: it links a second copy of SQLite
into the process, and two copies of SQLite in one process can release each other's file locks.)
"""

from __future__ import annotations

import gc
import io
import itertools
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

import psycopg
from sqlalchemy import Select, Table
from sqlalchemy.orm import Session

from consentry.platform.db import Database

if TYPE_CHECKING:  # pyarrow is loaded by the first columnar read or write, not to start
    import numpy.typing as npt
    import pyarrow as pa

FETCH_BATCH = 100_000
RAW_BATCH = 20_000  # rows a raw_batches scan fetches at a time


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
    import pyarrow.csv as pa_csv

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
    """Batches of rows, each turned into Arrow columns at once (a few hundred thousand Python
    objects alive at a time, not tens of millions); the cyclic garbage collector is paused
    meanwhile, since tuples of plain values never form cycles and it would otherwise scan
    every one of them again and again."""
    import pyarrow as pa

    batches: list[pa.RecordBatch] = []
    cursor = raw.cursor()
    collecting = gc.isenabled()
    gc.disable()
    try:
        cursor.execute(sql, params)
        while rows := cursor.fetchmany(FETCH_BATCH):
            columns = zip(*rows, strict=True)
            arrays = [pa.array(c, f.type) for c, f in zip(columns, schema, strict=True)]
            batches.append(pa.RecordBatch.from_arrays(arrays, schema=schema))
    finally:
        if collecting:
            gc.enable()
        cursor.close()
    return pa.Table.from_batches(batches, schema=schema)


_SQLITE_FORMAT = "%Y-%m-%d %H:%M:%S.000000"  # platform.db: SQLite timestamps as naive UTC text
_POSTGRESQL_FORMAT = "%Y-%m-%d %H:%M:%S+00"


def day_timestamps(db_dialect: str, days: npt.NDArray[Any]) -> pa.Array:
    """Midnight UTC of each day number (days since 1970-01-01) as text the store reads as a
    timestamp: SQLite's naive UTC text (``platform.db``), PostgreSQL's text with its zone."""
    import pyarrow as pa
    import pyarrow.compute as pc

    stamps = pa.array(days.astype("datetime64[D]").astype("datetime64[s]"), pa.timestamp("s"))
    return pc.strftime(stamps, format=_timestamp_format(db_dialect))


def moment_text(db_dialect: str, moment: datetime) -> str:
    """One timestamp as the store reads it (see :func:`day_timestamps`)."""
    utc = moment.astimezone(UTC)
    if db_dialect == "sqlite":
        return utc.strftime("%Y-%m-%d %H:%M:%S.%f")
    return utc.isoformat()


def _timestamp_format(db_dialect: str) -> str:
    return _SQLITE_FORMAT if db_dialect == "sqlite" else _POSTGRESQL_FORMAT


def copy_table(session: Session, table: Table, data: pa.Table) -> None:
    """Append the rows of ``data`` (columns named as ``table``'s, values ready for the store:
    text timestamps from :func:`day_timestamps`, nulls as nulls) to ``table`` inside the
    session's transaction. PostgreSQL takes them as CSV written by Arrow (``COPY ... FROM
    STDIN``); SQLite by ``executemany``."""
    import pyarrow.csv as pa_csv

    connection = session.connection()
    raw = connection.connection.dbapi_connection
    if raw is None:
        raise RuntimeError("the session's connection is closed")
    names = ", ".join(data.column_names)
    if connection.dialect.name == "postgresql":
        buffer = io.BytesIO()
        pa_csv.write_csv(data, buffer, pa_csv.WriteOptions(include_header=False))
        pg = cast(psycopg.Connection[Any], raw)
        statement = f"COPY {table.name} ({names}) FROM STDIN (FORMAT csv)"
        with pg.cursor() as cursor, cursor.copy(statement) as copy:
            copy.write(buffer.getbuffer())
        return
    marks = ", ".join("?" * data.num_columns)
    lite = cast(sqlite3.Connection, raw).cursor()
    try:
        for batch in data.to_batches(FETCH_BATCH):
            rows = zip(*(column.to_pylist() for column in batch.columns), strict=True)
            lite.executemany(f"INSERT INTO {table.name} ({names}) VALUES ({marks})", rows)
    finally:
        lite.close()


_cursor_numbers = itertools.count()  # server-side cursors need distinct names


def raw_batches(
    session: Session, statement: Select[*tuple[Any, ...]], batch: int = RAW_BATCH
) -> Iterator[list[tuple[Any, ...]]]:
    """The rows of ``statement`` as the driver returns them (no SQLAlchemy type processing: a
    SQLite timestamp is its text, a JSON value its text), ``batch`` at a time, on the
    session's connection and in its transaction: PostgreSQL streams them through a
    server-side cursor, SQLite through its raw cursor. Bind only plain values (text, numbers,
    lists of them): they reach the driver as given."""
    connection = session.connection()
    compiled = statement.compile(
        dialect=connection.dialect, compile_kwargs={"render_postcompile": True}
    )
    raw = connection.connection.dbapi_connection
    if raw is None:
        raise RuntimeError("the session's connection is closed")
    if connection.dialect.name == "postgresql":
        pg = cast(psycopg.Connection[Any], raw)
        with pg.cursor(name=f"consentry_raw_{next(_cursor_numbers)}") as cursor:
            cursor.itersize = batch
            cursor.execute(str(compiled), compiled.params)
            while rows := cursor.fetchmany(batch):
                yield cast(list[tuple[Any, ...]], rows)
        return
    lite = raw.cursor()
    try:
        names = compiled.positiontup or []
        lite.execute(str(compiled), tuple(compiled.params[name] for name in names))
        while part := lite.fetchmany(batch):
            yield cast(list[tuple[Any, ...]], part)
    finally:
        lite.close()

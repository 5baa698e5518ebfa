"""Engine, sessions and the unit of work.

SQLite is the embedded default and runs in WAL mode; a write transaction there starts with
``BEGIN IMMEDIATE`` so concurrent writers queue on the busy timeout instead of failing on a lock
upgrade. PostgreSQL (psycopg 3) is the production store. Services never commit: the caller opens a
unit of work with :meth:`Database.write` or :meth:`Database.read` and owns its end.
"""

from __future__ import annotations

import contextvars
import logging
import weakref
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import itemgetter
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ColumnElement,
    DateTime,
    Insert,
    MetaData,
    String,
    Update,
    any_,
    bindparam,
    create_engine,
    event,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.engine import Connection, Dialect, Engine, make_url
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.sql import Executable
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeDecorator

from consentry.platform.jsoncodec import json_dumps, json_loads

log = logging.getLogger(__name__)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

_immediate: contextvars.ContextVar[bool] = contextvars.ContextVar("immediate", default=False)
# False inside ``Database.write(durable=False)``: the commit need not reach the disk at once.
_durable: contextvars.ContextVar[bool] = contextvars.ContextVar("durable", default=True)


class Base(DeclarativeBase):
    """Declarative base of every table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


JSONType = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, _dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, _dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    # SQLite stores a timestamp as text. The two methods below fuse the steps above with the
    # dialect's own text conversion into one call per value (the hot path of ingestion); they
    # give exactly what the composed steps give. Other stores take the composed steps.

    def bind_processor(self, dialect: Any) -> Any:
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)
        return _sqlite_bind

    def result_processor(self, dialect: Any, coltype: Any) -> Any:
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)
        return _sqlite_result


_SQLITE_TEXT = "%04d-%02d-%02d %02d:%02d:%02d.%06d"  # SQLAlchemy's SQLite DATETIME format


def _sqlite_bind(value: datetime | None) -> str | None:
    """UTC text as SQLAlchemy's SQLite ``DATETIME`` writes it: ``YYYY-MM-DD HH:MM:SS.ffffff``."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return _SQLITE_TEXT % (
        value.year,
        value.month,
        value.day,
        value.hour,
        value.minute,
        value.second,
        value.microsecond,
    )


def _sqlite_result(value: str | None) -> datetime | None:
    if value is None:
        return None
    if len(value) == 26:  # what _sqlite_bind writes: naive text, in UTC
        try:
            return datetime.fromisoformat(value + "+00:00")  # aware at once: no replace()
        except ValueError:  # some other text of that length: the general way below
            pass
    parsed = datetime.fromisoformat(value)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


class epoch_seconds(FunctionElement[int]):  # noqa: N801 - used like a SQL function
    """Whole seconds since 1970-01-01 UTC of a ``UTCDateTime`` column, computed by the store
    (columnar reads for analytics convert no timestamps in Python)."""

    type = BigInteger()
    inherit_cache = True


@compiles(epoch_seconds, "sqlite")
def _epoch_sqlite(element: epoch_seconds, compiler: Any, **kw: Any) -> str:
    return f"CAST(strftime('%s', {compiler.process(element.clauses, **kw)}) AS INTEGER)"


@compiles(epoch_seconds, "postgresql")
def _epoch_postgresql(element: epoch_seconds, compiler: Any, **kw: Any) -> str:
    return f"CAST(FLOOR(EXTRACT(EPOCH FROM {compiler.process(element.clauses, **kw)})) AS BIGINT)"


def one_of(session: Session, column: Any, values: Collection[str]) -> ColumnElement[bool]:
    """``column`` is one of the text ``values``: one array parameter on PostgreSQL (the
    statement's text is the same whatever the count, so the plan the server caches for the
    prepared statement is reused and still looks the values up in the index, where a long
    ``IN`` list's generic plan may scan), an ``IN`` list on SQLite."""
    if session.get_bind().dialect.name == "postgresql":
        array = bindparam(None, list(values), type_=ARRAY(String))
        return column == any_(array)  # type: ignore[no-any-return]
    return column.in_(list(values))  # type: ignore[no-any-return]


def row_batches(
    session: Session, statement: Executable, batch: int
) -> Iterator[list[tuple[Any, ...]]]:
    """The rows of ``statement`` as plain tuples, ``batch`` at a time, streamed from the store
    (no ORM objects, no whole result in memory): the columnar feeds' reading loop."""
    result = session.execute(statement.execution_options(yield_per=batch))
    for part in result.partitions():
        yield [tuple(r) for r in part]


def utcnow() -> datetime:
    """Return the current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


def _configure_sqlite(engine: Engine, synchronous: str) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA synchronous={synchronous}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        # deleted and overwritten content is zeroed, not left in free space: an erased
        # person's rows leave no trace in the file (with :meth:`Database.purge_deleted`)
        cur.execute("PRAGMA secure_delete=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        if _immediate.get():  # a writer: say how hard its commit must sync, then lock
            level = synchronous if _durable.get() else "NORMAL"
            conn.exec_driver_sql(f"PRAGMA synchronous={level}")
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")


def create_db_engine(url: str, *, sqlite_synchronous: str = "FULL", echo: bool = False) -> Engine:
    """Create an engine for ``url``; SQLite files get WAL and their folder is created."""
    parsed = make_url(url)
    common: dict[str, Any] = {
        "echo": echo,
        "hide_parameters": True,  # values (personal data) never reach exception text or logs
        "json_serializer": json_dumps,
        "json_deserializer": json_loads,
    }
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, **common
        )
        _configure_sqlite(engine, sqlite_synchronous)
        return engine
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True, **common)


class Database:
    """One store: an engine and the factory of its sessions."""

    def __init__(
        self, engine: Engine, vault: object | None = None, spool: object | None = None
    ) -> None:
        self.engine = engine
        # the sealing of personal values (platform.vault) and the acknowledged requests not
        # expanded yet (ingest.spool); its sessions carry both in ``info``
        self.vault = vault
        self.spool = spool
        self._sessions = sessionmaker(bind=engine, expire_on_commit=False, autoflush=False)

    @classmethod
    def from_url(
        cls, url: str, *, vault: object | None = None, spool: object | None = None, **kwargs: Any
    ) -> Database:
        """Open the store at ``url``."""
        return cls(create_db_engine(url, **kwargs), vault, spool)

    def _info(self) -> dict[str, object]:
        """What a session carries: the vault and the spool (see ``__init__``)."""
        return {"vault": self.vault, "spool": self.spool}

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    @contextmanager
    def write(self, *, durable: bool = True) -> Iterator[Session]:
        """A unit of work that commits on success and rolls back on any error.

        ``durable=False`` is for work that can be redone from what is already durable (applying
        stored events, whose cursor moves in the same transaction): its commit is atomic and
        consistent but may be lost in a power cut, and skips the wait for the disk (SQLite:
        ``synchronous=NORMAL`` in WAL mode; PostgreSQL: ``synchronous_commit=off``). Any later
        durable commit makes it durable too, as both logs are written in order.
        """
        token, durable_token = _immediate.set(True), _durable.set(durable)
        try:
            with self._sessions(info=self._info()) as session:
                with session.begin():
                    if not durable and self.dialect == "postgresql":
                        session.execute(text("SET LOCAL synchronous_commit = off"))
                    yield session
                actions: list[Callable[[], object]] = session.info.get(_AFTER_COMMIT, [])
        finally:
            _immediate.reset(token)
            _durable.reset(durable_token)
        for action in actions:  # committed: see after_commit
            try:
                action()
            except Exception:  # noqa: BLE001 - the commit stands; what it left is redone later
                log.exception("an action after a commit failed")

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only unit of work; it is rolled back at the end."""
        with self._sessions(info=self._info()) as session:
            try:
                yield session
            finally:
                session.rollback()

    def ping(self) -> bool:
        """Return True when the store answers."""
        with self.engine.connect() as conn:
            return conn.execute(text("SELECT 1")).scalar() == 1

    def purge_deleted(self) -> None:
        """Make deleted rows unrecoverable from the store's files, as far as the engine allows.

        SQLite (with ``secure_delete``, set on every connection) zeroes deleted content in the
        pages, but older copies of those pages stay in the WAL file until it is rewritten: a
        checkpoint copies the WAL back and truncates it to zero bytes. PostgreSQL keeps dead
        row versions until vacuum reuses their space; there the personal values are sealed,
        and their keys were destroyed (docs/erasure.md).
        """
        if self.dialect == "sqlite":
            self._sqlite_outside_transactions("PRAGMA wal_checkpoint(TRUNCATE)")
        for companion in (getattr(self.vault, "keystore", None), self.spool):
            store = getattr(companion, "db", None)  # the key store, the spool: theirs too
            if isinstance(store, Database):
                store.purge_deleted()

    def _sqlite_outside_transactions(self, *statements: str) -> None:
        """Run statements on a pooled SQLite connection in autocommit (the driver's own mode
        here: no BEGIN is sent), as ANALYZE must commit and a checkpoint must not be inside a
        transaction."""
        raw = self.engine.raw_connection()
        try:
            cursor = raw.cursor()
            for statement in statements:
                cursor.execute(statement)
            cursor.close()
        finally:
            raw.close()

    def optimize(self) -> None:
        """Refresh the query planner's statistics.

        SQLite keeps none until ANALYZE runs, and without them it picks full scans for look-ups
        by a list of profile ids (an erasure of a merged person took seconds on a million
        events instead of milliseconds). ``analysis_limit`` samples each index, so this takes
        well under a second on such a store. PostgreSQL's autovacuum analyses on its own.
        """
        if self.dialect == "sqlite":
            self._sqlite_outside_transactions("PRAGMA analysis_limit=400", "ANALYZE")

    def dispose(self) -> None:
        """Close every pooled connection (and the vault's key store and the spool, if any)."""
        for closing in (getattr(self.vault, "close", None), getattr(self.spool, "dispose", None)):
            if callable(closing):
                closing()
        self.engine.dispose()


def lock_workspace(session: Session, workspace_id: str, scope: str | None = None) -> None:
    """Serialise writers of one workspace on PostgreSQL until the transaction ends (SQLite
    already has one writer): all of them, or with ``scope`` only those of that scope (one
    segment refresh at a time, say), which leaves the workspace's other writers alone."""
    if session.get_bind().dialect.name == "postgresql":
        key = workspace_id if scope is None else f"{scope}:{workspace_id}"
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:w))"), {"w": key})


def companion_url(data_url: str, name: str) -> str:
    """The URL of a store kept beside the data store at ``data_url`` (the key store, the
    spool): the SQLite file ``<stem>.<name><suffix>`` next to it, or the PostgreSQL database
    ``<database>_<name>`` on the same server. ValueError when ``data_url`` names no file or
    database to put it beside."""
    url = make_url(data_url)
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if not database or database == ":memory:":
            raise ValueError("an in-memory data store")
        path = Path(database)
        return str(url.set(database=str(path.with_name(f"{path.stem}.{name}{path.suffix}"))))
    if not url.database:
        raise ValueError("the data store's URL names no database")
    return url.set(database=f"{url.database}_{name}").render_as_string(hide_password=False)


def ensure_postgres_database(url: str) -> None:
    """Create the PostgreSQL database at ``url`` when it does not exist yet."""
    parsed = make_url(url)
    name = parsed.database or ""
    admin = create_db_engine(parsed.set(database="postgres").render_as_string(hide_password=False))
    try:
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            exists = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
            ).first()
            if exists is None:
                quoted = conn.dialect.identifier_preparer.quote(name)
                conn.execute(text(f"CREATE DATABASE {quoted}"))
    finally:
        admin.dispose()


def open_companion(url: str, metadata: MetaData) -> Database:
    """A store kept beside the data store (the key store, the spool; see :func:`companion_url`)
    at ``url``: its PostgreSQL database created when missing, and its tables (``metadata``,
    not part of the data store's migrations)."""
    if make_url(url).get_backend_name() == "postgresql":
        ensure_postgres_database(url)
    store = Database.from_url(url)
    metadata.create_all(store.engine)
    return store


_AFTER_COMMIT = "after_commit"  # the session.info entry of the actions of after_commit()


def after_commit(session: Session, action: Callable[[], object]) -> None:
    """Run ``action`` once the unit of work of ``session`` (a :meth:`Database.write`) has
    committed, never if it rolls back, nor when a savepoint inside it is released: for work
    outside the store that must only follow a durable change, such as discarding keys whose
    data the transaction moved. An action that fails is logged, as the commit stands; callers
    make what it leaves undone harmless (it is redone later)."""
    session.info.setdefault(_AFTER_COMMIT, []).append(action)


@dataclass(frozen=True, slots=True)
class _Plan:
    """A statement compiled for one dialect and one set of parameter names."""

    sql: str
    values: Callable[[Mapping[str, Any]], Any]  # a row's values, in the compiled order
    processed: tuple[tuple[int | str, Callable[[Any], Any]], ...]  # positions to convert
    positional: bool


class Bulk:
    """A constant Core INSERT or UPDATE run for many rows of plain values (executemany).

    ``connection.execute(statement, rows)`` builds every row's parameters through SQLAlchemy's
    general machinery, which costs more than the database's own work for a small row. This
    compiles the statement once per dialect and set of names, exactly as ``execute`` compiles
    it, and applies the same bind processors (timestamps, JSON, ...) to each row, so the driver
    receives the same SQL and the same values. A statement that needs more than that (defaults
    computed in Python, expanding parameters, values fixed in the statement) goes through
    ``execute`` unchanged.
    """

    def __init__(self, statement: Insert | Update) -> None:
        self.statement = statement
        self._plans: weakref.WeakKeyDictionary[Dialect, dict[tuple[str, ...], _Plan | None]] = (
            weakref.WeakKeyDictionary()
        )

    def run(self, connection: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Execute the statement once per row; every row has the same keys."""
        if not rows:
            return
        keys = tuple(sorted(rows[0]))
        plan = self._plan(connection.dialect, keys)
        if plan is None or len(rows) < 2:
            connection.execute(self.statement, list(rows))
            return
        params: list[Any] = []
        for row in rows:
            if len(row) != len(keys):
                raise ValueError("every row of a bulk statement must have the same keys")
            values = plan.values(row)
            if plan.positional:
                values = list(values)
            for where, process in plan.processed:
                values[where] = process(values[where])
            params.append(tuple(values) if plan.positional else values)
        connection.exec_driver_sql(plan.sql, params)

    def _plan(self, dialect: Dialect, keys: tuple[str, ...]) -> _Plan | None:
        plans = self._plans.setdefault(dialect, {})
        if keys not in plans:
            plans[keys] = _compile_plan(self.statement, dialect, keys)
        return plans[keys]


def _compile_plan(
    statement: Insert | Update, dialect: Dialect, keys: tuple[str, ...]
) -> _Plan | None:
    try:
        compiled: Any = statement.compile(  # as Connection.execute compiles an executemany
            dialect=dialect, column_keys=list(keys), for_executemany=True
        )
        if (
            compiled.literal_execute_params
            or compiled.post_compile_params
            or compiled.insert_prefetch
            or compiled.update_prefetch
            or compiled.escaped_bind_names
            or compiled._insertmanyvalues
            or compiled.schema_translate_map
        ):
            return None
        processors: Mapping[str, Callable[[Any], Any]] = compiled._bind_processors
        names = tuple(compiled.positiontup if compiled.positional else compiled.binds)
    except AttributeError:  # another SQLAlchemy than the one this was written for
        return None
    if not names or not set(names) <= set(keys) or len(set(names)) != len(keys):
        return None  # a value fixed in the statement, or a key the statement does not use
    if compiled.positional:
        getter = itemgetter(*names)
        values: Callable[[Mapping[str, Any]], Any] = (
            getter if len(names) > 1 else lambda row: (getter(row),)
        )
        processed = tuple((i, processors[n]) for i, n in enumerate(names) if n in processors)
    else:

        def values(row: Mapping[str, Any]) -> dict[str, Any]:  # in the compiled order
            return {name: row[name] for name in names}

        processed = tuple((n, processors[n]) for n in names if n in processors)
    return _Plan(compiled.string, values, processed, bool(compiled.positional))

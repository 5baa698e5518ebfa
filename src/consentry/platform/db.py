"""Engine, sessions and the unit of work.

SQLite is the embedded default and runs in WAL mode; a write transaction there starts with
``BEGIN IMMEDIATE`` so concurrent writers queue on the busy timeout instead of failing on a lock
upgrade. PostgreSQL (psycopg 3) is the production store. Services never commit: the caller opens a
unit of work with :meth:`Database.write` or :meth:`Database.read` and owns its end.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, DateTime, MetaData, create_engine, event, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from consentry.platform.jsoncodec import json_dumps, json_loads

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

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(bind=engine, expire_on_commit=False, autoflush=False)

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> Database:
        """Open the store at ``url``."""
        return cls(create_db_engine(url, **kwargs))

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
            with self._sessions() as session, session.begin():
                if not durable and self.dialect == "postgresql":
                    session.execute(text("SET LOCAL synchronous_commit = off"))
                yield session
        finally:
            _immediate.reset(token)
            _durable.reset(durable_token)

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only unit of work; it is rolled back at the end."""
        with self._sessions() as session:
            try:
                yield session
            finally:
                session.rollback()

    def ping(self) -> bool:
        """Return True when the store answers."""
        with self.engine.connect() as conn:
            return conn.execute(text("SELECT 1")).scalar() == 1

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


def lock_workspace(session: Session, workspace_id: str) -> None:
    """Serialise writers of one workspace on PostgreSQL (SQLite already has one writer)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:w))"), {"w": workspace_id})

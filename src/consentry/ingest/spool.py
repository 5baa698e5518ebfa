"""The spool: acknowledged ingestion requests waiting to be expanded into events, in a database
of their own.

Acknowledging a request writes one row here (its new messages sealed as one value under a data
key of the stage's own, see ``ingest.service.seal_stages``); the ingest writer or worker then
expands the oldest stages into the data store's ``events`` and deletes them. The spool lives
apart from the data store because on SQLite a database has one writer at a time: the server
answering requests and the worker expanding and applying them would otherwise queue on one lock
(measured: acknowledgements fell from 14k to 4k events/s, the p99 to 0.9 s, as the worker's
chunks held the lock nearly all the time). Here the server's one write per group of requests
meets only the worker's short deletes.

Where it lives (``CONSENTRY_INGEST__SPOOL_URL``, else derived from the data store's URL):

- SQLite ``sqlite:///path/shop.db``: the file ``path/shop.spool.db`` next to it (WAL);
- PostgreSQL ``postgresql+psycopg://.../shop``: the database ``shop_spool`` on the same server,
  created on first use when the role may create databases.

Its one table is created when it is opened (``platform.db.open_companion``), as the key
store's is.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.orm import Session

from consentry.errors import ConsentryError
from consentry.platform.db import (
    Bulk,
    Database,
    UTCDateTime,
    companion_url,
    open_companion,
    utcnow,
)
from consentry.platform.vault import token_subject

metadata = MetaData()

stages = Table(
    "ingest_stages",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
    Column("workspace_id", String(64), nullable=False),
    Column("messages", Integer, nullable=False),
    Column("received_at", UTCDateTime(), nullable=False),
    Column("body", Text, nullable=False),  # a pv1: token, sealed under the stage's own key
    # a stage that could not be expanded by itself: kept, with its key, for an operator
    Column("failed_at", UTCDateTime(), nullable=True),
    Column("failure", String(200), nullable=True),  # the error's type: never a value
    Index("ix_ingest_stages_ws_id", "workspace_id", "id"),
)

_INSERT = Bulk(insert(stages))


class SpoolError(ConsentryError):
    """The spool cannot be opened or used."""


def default_url(data_url: str) -> str:
    """The spool's URL beside the data store at ``data_url`` (see the module's text)."""
    try:
        return companion_url(data_url, "spool")
    except ValueError as exc:
        raise SpoolError(f"{exc}: set CONSENTRY_INGEST__SPOOL_URL") from exc


class Spool:
    """The stages of acknowledged requests, oldest first per workspace."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @classmethod
    def open(cls, url: str) -> Spool:
        """The spool at ``url``, its database and table created when missing."""
        return cls(open_companion(url, metadata))

    def dispose(self) -> None:
        self.db.dispose()

    def write(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Write stages (``workspace_id``, ``messages``, ``received_at``, ``body``) in one
        durable commit."""
        if rows:
            with self.db.write() as session:
                _INSERT.run(session.connection(), rows)

    def oldest(
        self, workspace_id: str, max_messages: int | None, skip: Collection[int] = ()
    ) -> list[tuple[int, int, str]]:
        """``(id, messages, body)`` of the workspace's oldest stages that did not fail, but
        ``skip``: at least one, then as many as fit ``max_messages`` (None: all)."""
        where = [stages.c.workspace_id == workspace_id, stages.c.failed_at.is_(None)]
        if skip:
            where.append(stages.c.id.not_in(list(skip)))
        with self.db.read() as session:
            listed = session.execute(
                select(stages.c.id, stages.c.messages)
                .where(*where)
                .order_by(stages.c.id)
                .limit(None if max_messages is None else max(1, max_messages))
            )
            chosen: list[int] = []
            total = 0
            for stage_id, messages in listed:
                if chosen and max_messages is not None and total + messages > max_messages:
                    break
                chosen.append(stage_id)
                total += messages
            if not chosen:
                return []
            rows = session.execute(
                select(stages.c.id, stages.c.messages, stages.c.body)
                .where(stages.c.id.in_(chosen))
                .order_by(stages.c.id)
            )
            return [(i, n, body) for i, n, body in rows]

    def delete(self, workspace_id: str, ids: Sequence[int]) -> None:
        """Delete expanded stages."""
        with self.db.write() as session:
            session.execute(
                delete(stages).where(stages.c.workspace_id == workspace_id, stages.c.id.in_(ids))
            )

    def fail(self, workspace_id: str, stage_id: int, failure: str) -> None:
        """Set a stage aside that cannot be expanded by itself (kept, never expanded again
        until an operator clears ``failed_at``), so it does not hold up the stages after it."""
        with self.db.write() as session:
            session.execute(
                update(stages)
                .where(stages.c.workspace_id == workspace_id, stages.c.id == stage_id)
                .values(failed_at=utcnow(), failure=failure[:200])
            )

    def workspaces(self) -> list[str]:
        """Workspaces that have stages waiting (not failed)."""
        with self.db.read() as session:
            return list(
                session.scalars(
                    select(stages.c.workspace_id).where(stages.c.failed_at.is_(None)).distinct()
                )
            )

    def messages(self, workspace_id: str, *, failed: bool = False) -> int:
        """How many messages the workspace's waiting stages hold (``failed``: its failed
        stages)."""
        state = stages.c.failed_at.is_not(None) if failed else stages.c.failed_at.is_(None)
        with self.db.read() as session:
            total = session.scalar(
                select(func.coalesce(func.sum(stages.c.messages), 0)).where(
                    stages.c.workspace_id == workspace_id, state
                )
            )
            return int(total or 0)

    def subjects(self) -> set[str]:
        """The key-store subject of every stage (to tell which stage keys are still needed),
        read from the head of its sealed body, not the whole body."""
        head = func.substr(stages.c.body, 1, _TOKEN_HEAD)
        with self.db.read() as session:
            return {token_subject(h) for h in session.scalars(select(head))}


_TOKEN_HEAD = 64  # "pv1:st-<32 hex>:" and more: the subject of a stage's token is in it


def spool_of(session: Session) -> Spool:
    """The spool of the data store this session belongs to."""
    spool = session.info.get("spool")
    if not isinstance(spool, Spool):
        raise SpoolError("this session's store has no spool: open it with open_database")
    return spool

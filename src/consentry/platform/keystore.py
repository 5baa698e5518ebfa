"""The store of wrapped data keys, in a database of its own.

Data keys are kept apart from the data they protect: a copy or backup of the data store holds
sealed fields but no keys, so once :meth:`KeyStore.shred` has destroyed a subject's key, no copy
of its fields opens again, while every other subject's data in the same copy still reads. The
key store is small (one row per subject) and is backed up on its own, on a short rotation.

Where it lives (``CONSENTRY_CRYPTO__KEYSTORE_URL``, else derived from the data store's URL):

- SQLite ``sqlite:///path/shop.db``: the file ``path/shop.keys.db`` next to it (WAL);
- PostgreSQL ``postgresql+psycopg://.../shop``: the database ``shop_keys`` on the same server,
  created on first use when the role may create databases.

Its one table is created when it is opened (``platform.db.open_companion``; it is not part of
the data store's migrations). A shredded subject keeps a tombstone (its id, no key) so that no
new key is ever made for it and old data can never be mistaken for new.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    Column,
    LargeBinary,
    MetaData,
    String,
    Table,
    delete,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert

from consentry.platform.crypto import CryptoError, Keyring, WrappedKey, new_key
from consentry.platform.db import (
    Database,
    UTCDateTime,
    companion_url,
    open_companion,
    utcnow,
)

metadata = MetaData()

subject_keys = Table(
    "subject_keys",
    metadata,
    Column("workspace_id", String(64), primary_key=True),
    Column("subject_id", String(36), primary_key=True),
    Column("master_key_id", String(32), nullable=True),  # None once shredded
    Column("wrapped", LargeBinary, nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("shredded_at", UTCDateTime(), nullable=True),
)

CACHE_SIZE = 50_000  # unwrapped keys kept in memory
CACHE_SECONDS = 60.0  # how long another process's shredding may take to reach this one's cache
CHUNK = 500


def _insert_missing(dialect: str) -> Insert:
    """INSERT of key rows that skips a subject which has a row already (made by another
    process, or a tombstone)."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(subject_keys).on_conflict_do_nothing(
        index_elements=[subject_keys.c.workspace_id, subject_keys.c.subject_id]
    )


class ShreddedKey(CryptoError):
    """The subject's key was destroyed: its sealed data is gone for good."""


@dataclass(frozen=True, slots=True)
class KeyStatus:
    """How many live keys each master key wraps, and how many subjects were shredded."""

    by_master_key: dict[str, int]
    shredded: int


def default_url(data_url: str) -> str:
    """The key store's URL beside the data store at ``data_url`` (see the module's text)."""
    try:
        return companion_url(data_url, "keys")
    except ValueError as exc:
        raise CryptoError(f"{exc}: set CONSENTRY_CRYPTO__KEYSTORE_URL") from exc


class KeyStore:
    """Per-subject data keys: made on first use, unwrapped through a small cache, shredded on
    erasure, re-wrapped on master-key rotation."""

    def __init__(self, db: Database, keyring: Keyring) -> None:
        self.db = db
        self.keyring = keyring
        self._cache: OrderedDict[tuple[str, str], tuple[float, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def open(cls, url: str, keyring: Keyring) -> KeyStore:
        """The key store at ``url``, its database and table created when missing."""
        return cls(open_companion(url, metadata), keyring)

    def dispose(self) -> None:
        self.db.dispose()

    # --- keys ------------------------------------------------------------------------------

    def data_keys(
        self, workspace_id: str, subject_ids: Iterable[str], *, create: bool = False
    ) -> dict[str, bytes]:
        """The data key of each subject that has one (``create``: make the missing ones).

        A shredded subject has none, and asking to create one for it raises ShreddedKey.
        """
        wanted = list(dict.fromkeys(subject_ids))
        found: dict[str, bytes] = {}
        missing: list[str] = []
        now = time.monotonic()
        with self._lock:
            for subject_id in wanted:
                cached = self._cache.get((workspace_id, subject_id))
                if cached is not None and now - cached[0] < CACHE_SECONDS:
                    found[subject_id] = cached[1]
                else:
                    missing.append(subject_id)
        if missing:
            loaded = self._load(workspace_id, missing, create=create)
            found.update(loaded)
            with self._lock:
                for subject_id, key in loaded.items():
                    self._cache[(workspace_id, subject_id)] = (now, key)
                while len(self._cache) > CACHE_SIZE:
                    self._cache.popitem(last=False)
        return found

    def shredded(self, workspace_id: str, subject_ids: Iterable[str]) -> set[str]:
        """Which of these subjects were shredded (they have a tombstone)."""
        rows = self._rows(workspace_id, list(dict.fromkeys(subject_ids)))
        return {s for s, row in rows.items() if row is None}

    def data_key(self, workspace_id: str, subject_id: str, *, create: bool = False) -> bytes | None:
        """The data key of one subject (see :meth:`data_keys`)."""
        return self.data_keys(workspace_id, [subject_id], create=create).get(subject_id)

    def _load(self, workspace_id: str, subject_ids: list[str], *, create: bool) -> dict[str, bytes]:
        rows = self._rows(workspace_id, subject_ids)
        shredded = [s for s, row in rows.items() if row is None]
        if create and shredded:
            raise ShreddedKey(f"{len(shredded)} subject(s) were erased; no new key is made")
        out = {s: self.keyring.unwrap(workspace_id, s, row) for s, row in rows.items() if row}
        absent = [s for s in subject_ids if s not in rows]
        if create and absent:
            out.update(self._create(workspace_id, absent))
        return out

    def _rows(self, workspace_id: str, subject_ids: list[str]) -> dict[str, WrappedKey | None]:
        """Stored keys by subject (None for a tombstone)."""
        found: dict[str, WrappedKey | None] = {}
        t = subject_keys
        with self.db.read() as session:
            for start in range(0, len(subject_ids), CHUNK):
                part = subject_ids[start : start + CHUNK]
                for subject_id, master_key_id, wrapped in session.execute(
                    select(t.c.subject_id, t.c.master_key_id, t.c.wrapped).where(
                        t.c.workspace_id == workspace_id, t.c.subject_id.in_(part)
                    )
                ):
                    found[subject_id] = (
                        WrappedKey(master_key_id, bytes(wrapped))
                        if master_key_id is not None and wrapped is not None
                        else None
                    )
        return found

    def _create(self, workspace_id: str, subject_ids: list[str]) -> dict[str, bytes]:
        """Make and store keys for subjects that had none. Another process may make some of
        them at the same time: rows that already exist are left as they are, and the keys
        stored are read back, so every process seals a subject's data with the one stored key
        (and a subject shredded meanwhile raises ShreddedKey)."""
        made = {s: new_key() for s in subject_ids}
        now = utcnow()
        rows = []
        for subject_id, key in made.items():
            wrapped = self.keyring.wrap(workspace_id, subject_id, key)
            rows.append(
                {
                    "workspace_id": workspace_id,
                    "subject_id": subject_id,
                    "master_key_id": wrapped.master_key_id,
                    "wrapped": wrapped.wrapped,
                    "created_at": now,
                    "shredded_at": None,
                }
            )
        with self.db.write() as session:
            session.execute(_insert_missing(self.db.dialect), rows)
        ours = {row["subject_id"]: row["wrapped"] for row in rows}
        stored = self._rows(workspace_id, subject_ids)
        out: dict[str, bytes] = {}
        for subject_id in subject_ids:
            row = stored.get(subject_id)
            if row is None:  # a tombstone (or no row at all): shredded while being made
                raise ShreddedKey("a subject was erased while its key was being made")
            if row.wrapped == ours[subject_id]:
                out[subject_id] = made[subject_id]
            else:  # another process stored its key first: use that one
                out[subject_id] = self.keyring.unwrap(workspace_id, subject_id, row)
        return out

    # --- erasure ---------------------------------------------------------------------------

    def shred(self, workspace_id: str, subject_ids: Iterable[str]) -> int:
        """Destroy the data keys of ``subject_ids`` (a tombstone stays); returns how many live
        keys were destroyed. Idempotent: shredding twice destroys nothing more."""
        ids = list(dict.fromkeys(subject_ids))
        now = utcnow()
        t = subject_keys
        destroyed = 0
        with self.db.write() as session:
            for start in range(0, len(ids), CHUNK):
                part = ids[start : start + CHUNK]
                result = session.execute(
                    update(t)
                    .where(
                        t.c.workspace_id == workspace_id,
                        t.c.subject_id.in_(part),
                        t.c.shredded_at.is_(None),
                    )
                    .values(master_key_id=None, wrapped=None, shredded_at=now)
                )
                destroyed += int(getattr(result, "rowcount", 0) or 0)
                present = set(
                    session.scalars(
                        select(t.c.subject_id).where(
                            t.c.workspace_id == workspace_id, t.c.subject_id.in_(part)
                        )
                    )
                )
                tombstones = [
                    {
                        "workspace_id": workspace_id,
                        "subject_id": s,
                        "master_key_id": None,
                        "wrapped": None,
                        "created_at": now,
                        "shredded_at": now,
                    }
                    for s in part
                    if s not in present
                ]
                if tombstones:  # never had a key: still, none may be made from now on
                    session.execute(t.insert(), tombstones)
        with self._lock:
            for subject_id in ids:
                self._cache.pop((workspace_id, subject_id), None)
        return destroyed

    def discard(self, workspace_id: str, subject_ids: Iterable[str]) -> None:
        """Delete the keys of subjects that are spent: their data was moved under other keys
        and their names are never used again (an expanded ingest stage), so, unlike
        :meth:`shred`, no tombstone is kept."""
        ids = list(dict.fromkeys(subject_ids))
        t = subject_keys
        with self.db.write() as session:
            for start in range(0, len(ids), CHUNK):
                part = ids[start : start + CHUNK]
                session.execute(
                    delete(t).where(t.c.workspace_id == workspace_id, t.c.subject_id.in_(part))
                )
        with self._lock:
            for subject_id in ids:
                self._cache.pop((workspace_id, subject_id), None)

    def subjects(self, prefix: str, made_before: datetime) -> list[tuple[str, str]]:
        """The ``(workspace, subject)`` of every key or tombstone made before ``made_before``
        whose subject starts with ``prefix``."""
        t = subject_keys
        with self.db.read() as session:
            rows = session.execute(
                select(t.c.workspace_id, t.c.subject_id).where(
                    t.c.subject_id.startswith(prefix), t.c.created_at < made_before
                )
            )
            return [(w, s) for w, s in rows]

    def forget_workspace(self, workspace_id: str) -> None:
        """Delete every key and tombstone of a workspace (the workspace itself is deleted)."""
        with self.db.write() as session:
            session.execute(delete(subject_keys).where(subject_keys.c.workspace_id == workspace_id))
        with self._lock:
            for key in [k for k in self._cache if k[0] == workspace_id]:
                del self._cache[key]

    # --- rotation --------------------------------------------------------------------------

    def rotate(self, *, on_progress: Callable[[int, int], None] | None = None) -> int:
        """Re-wrap every live data key not wrapped by the current master key; returns how many.

        The sealed data is not touched (its data keys do not change). Safe to interrupt and run
        again: each chunk commits on its own.
        """
        t = subject_keys
        current = self.keyring.current_id
        with self.db.read() as session:
            total = (
                session.scalar(
                    select(text("count(*)"))
                    .select_from(t)
                    .where(t.c.master_key_id.is_not(None), t.c.master_key_id != current)
                )
                or 0
            )
        done = 0
        while True:
            with self.db.write() as session:
                rows = session.execute(
                    select(t.c.workspace_id, t.c.subject_id, t.c.master_key_id, t.c.wrapped)
                    .where(t.c.master_key_id.is_not(None), t.c.master_key_id != current)
                    .limit(CHUNK)
                ).all()
                if not rows:
                    break
                for workspace_id, subject_id, master_key_id, wrapped in rows:
                    again = self.keyring.rewrap(
                        workspace_id, subject_id, WrappedKey(master_key_id, bytes(wrapped))
                    )
                    session.execute(
                        update(t)
                        .where(t.c.workspace_id == workspace_id, t.c.subject_id == subject_id)
                        .values(master_key_id=again.master_key_id, wrapped=again.wrapped)
                    )
                done += len(rows)
            if on_progress is not None:
                on_progress(done, int(total))
        return done

    def status(self) -> KeyStatus:
        t = subject_keys
        with self.db.read() as session:
            counts = {
                str(key_id): int(n)
                for key_id, n in session.execute(
                    select(t.c.master_key_id, text("count(*)"))
                    .where(t.c.master_key_id.is_not(None))
                    .group_by(t.c.master_key_id)
                )
            }
            shredded = session.scalar(
                select(text("count(*)")).select_from(t).where(t.c.shredded_at.is_not(None))
            )
        return KeyStatus(counts, int(shredded or 0))


def open_keystore(*, data_url: str, keystore_url: str | None, keyring: Keyring) -> KeyStore:
    """The key store of the data store at ``data_url`` (``keystore_url`` when given)."""
    return KeyStore.open(keystore_url or default_url(data_url), keyring)

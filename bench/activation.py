"""Activation benchmark (issue 7): segment evaluation, journey trigger throughput, and the
consent-gated audience export, at the issue's scale.

The store: ``--profiles`` unified profiles (default 1,000,000; 5 % of them have a second member
profile merged in) and ``--events`` events (default 10,000,000) over the 60 days before
``AS_OF``, in one workspace, written once and cached in ``bench/.cache/`` (SQLite; with
``--postgresql`` a throwaway PostgreSQL server is built each run, as ``bench/analytics.py``
does). Real ingestion would take hours at this size, so the rows are bulk-inserted the way the
services store them (``consentry.migrations.upgrade`` first, then ``executemany`` / ``COPY``):

- ``profiles``: canonical ids are random UUIDs; merged members point at their canonical;
- ``events``: the clear columns ingestion writes (id in arrival order, type, event name, member
  profile, timestamps); activity per person is skewed (a gamma spread), names are drawn from a
  shop's mix (Product Viewed 40 %, page 25 %, Product Added 10 %, Signed In 8 %, identify 5 %,
  Product List Viewed 5 %, Checkout Started 4 %, Order Completed 3 %). The sealed Segment
  ``payload`` is one constant sealed-looking placeholder of ~100 bytes for the 10M history
  events (no measured path opens it; real sealed payloads are ~1-2 kB, so the real table is
  larger: the segment queries read only the covering index on (workspace, event, type,
  timestamp, profile), the trigger intake reads table rows by id); the trigger events the
  trigger measure adds carry a placeholder of realistic size (1.5 kB);
- ``profile_traits``: clear ``plan`` (free 50 % / plus 30 % / gold 20 %), ``loyalty_tier``
  (bronze 60 % / silver 30 % / gold 10 %) and ``country`` (85 % have one, opt-in and opt-out
  regimes mixed); personal traits of the first ``--export-subjects`` people (``email`` 95 %,
  ``firstName``/``lastName`` 80 %, ``phone`` 40 %) sealed for real through the vault (one data
  key per person in the key store beside the data file), as ``profiles.service`` seals them
  (no ``trait_history`` rows: nothing measured reads them);
- consent, through the real ledger (``consent.ledger.append``: hash chain and current states):
  ``marketing.communications.email`` for 40 % of people (granted 60 % / denied 20 % /
  withdrawn 20 %), ``marketing.advertising.third_party`` for 20 % (granted 70 %);
- the ingest cursor at the last event (everything applied); a registered ad processor for the
  partner export; and the export audience, a segment "Everyone with a plan" of every unified
  profile, created through ``audiences.service.create_segment`` (its 1M entries are the
  membership history a new journey cursor reads first).

Measured, each in a fresh process (``--repeat`` times; medians), with the raw store as the
baseline in the same run (hand-written SQL through ``sqlite3`` / psycopg alone):

1. segment evaluation of the issue's example rule (``plan = "gold" AND Product Viewed >= 2
   times in the last 7 days AND NOT (Order Completed in the last 7 days)``) through
   ``audiences.service``: ``preview`` (count and a sample), ``create_segment`` (the first
   evaluation: every member enters, written), ``refresh_segment`` six hours later (evaluated
   again, diffed, changes written) and the workspace's full ``refresh`` (every segment, the
   1M-member one included); all in one transaction that is rolled back (the cache is not
   changed; the commit is not timed). Then the full refresh as the server runs it,
   ``refresh_in_steps`` (evaluated in reads, applied in write transactions of at most 2,000
   changes), over the same segment created anew: its time and its **longest write
   transaction** (``longest_write_s``: how long ingestion may wait behind it; the
   one-transaction refresh holds the write lock for all of ``full_refresh_s``); that segment is
   deleted afterwards. Baseline: the same set counted, and its ids read, by one SQL
   statement. Target: under 5 s.
2. trigger throughput of the journey engine: an active journey on an event trigger
   (``Checkout Started``, a 4 h wait first) and one on ``segment_entered``; ``--triggers`` new
   trigger events (default 100,000) appended after the journeys' cursor and applied (the ingest
   cursor covers them), then ``journeys.service.run`` rounds back to back (default
   ``trigger_batch`` 10,000 a round) until all are read: triggers/s. Then a segment's rule is
   changed so ~10 % of people enter it, and the rounds read those membership changes. Also
   reported: the rounds a new workspace cursor takes to read the past membership history.
   Baseline: the same events (changes) read raw. Target: 10,000 triggers/s. Each run undoes its
   journeys, events and segment afterwards.
3. audience export of the 1M-subject segment through ``audiences.export_service.
   export_audience``, consent-gated: a download (CSV of id, email, phone, names, country for
   ``marketing.communications.email``) and a partner file (normalised, SHA-256-hashed email and
   phone for ``marketing.advertising.third_party`` to the registered processor): subjects/s and
   the peak RSS of the process. Baselines: the member ids read raw; and the rows the export
   reads (ids, consent states, trait rows; sealed values left sealed) read raw. Each run's
   manifest rows are deleted afterwards.

``--profile`` adds cProfile's top functions of each measured step. Prints the figures with the
machine's core count; writes bench/results/activation.json (activation_postgresql.json with
``--postgresql``; ``--quick``: 20,000 profiles, 200,000 events, 10,000 triggers, written to
activation_quick.json).

    .venv/bin/python bench/activation.py [--profiles 1000000] [--events 10000000]
        [--export-subjects N] [--triggers 100000] [--repeat 3] [--postgresql] [--quick]
        [--only segment,triggers,export] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import random
import resource
import sqlite3
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.postgres import started_postgres  # noqa: E402

CACHE = ROOT / "bench" / ".cache"
RESULTS = ROOT / "bench" / "results"
VERSION = "v1"
WORKSPACE = "bench-activation"
SECRET = "bench-activation-secret"  # fixed: the cached store's data keys derive from it
AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
SPAN_DAYS = 60
EMAIL_PURPOSE = "marketing.communications.email"
ADS_PURPOSE = "marketing.advertising.third_party"
EXPORT_SEGMENT = "Everyone with a plan"
MERGED_SHARE = 0.05
CHUNK = 100_000  # rows generated and written at a time
SEAL_CHUNK = 20_000  # people sealed at a time

EVENT_MIX: tuple[tuple[str, str | None, float], ...] = (
    ("track", "Product Viewed", 0.40),
    ("page", None, 0.25),
    ("track", "Product Added", 0.10),
    ("track", "Signed In", 0.08),
    ("identify", None, 0.05),
    ("track", "Product List Viewed", 0.05),
    ("track", "Checkout Started", 0.04),
    ("track", "Order Completed", 0.03),
)
COUNTRIES = (("DE", 0.25), ("FR", 0.10), ("US", 0.35), ("GB", 0.10), ("BR", 0.05), (None, 0.15))
PLANS = (("free", 0.5), ("plus", 0.3), ("gold", 0.2))
TIERS = (("bronze", 0.6), ("silver", 0.3), ("gold", 0.1))
FIRST = ("anna", "ben", "carla", "david", "emma", "felix", "greta", "hugo", "ines", "jonas")
LAST = ("schmidt", "martin", "smith", "garcia", "rossi", "dubois", "silva", "jones")

RULE: dict[str, Any] = {
    "all": [
        {"trait": "plan", "op": "eq", "value": "gold"},
        {"event": "Product Viewed", "count": {"op": "gte", "value": 2}, "within_days": 7},
        {"event": "Order Completed", "count": {"op": "eq", "value": 0}, "within_days": 7},
    ]
}
TRIGGER_EVENT = "Checkout Started"
PLACEHOLDER = '"pv1:00000000-0000-4000-8000-000000000000:' + "A" * 56 + '"'
EVENT_COLUMNS = (  # the events' columns the bench writes (the rest take their defaults)
    "workspace_id",
    "message_id",
    "type",
    "event",
    "profile_id",
    "received_at",
    "timestamp",
    "payload",
)
BIG_PLACEHOLDER = '"pv1:00000000-0000-4000-8000-000000000000:' + "A" * 1500 + '"'


def settings(url: str) -> Any:
    """Test settings with fixed development keys (whatever the environment says)."""
    from consentry.config import CryptoSettings, Settings

    return Settings(
        environment="test", database_url=url, secret_key=SECRET, crypto=CryptoSettings()
    )


def keys_path(path: Path) -> Path:
    """The key store's file beside the data file (``keystore.default_url``)."""
    return path.with_name(path.stem + ".keys" + path.suffix)


def store_path(profiles: int, events: int, subjects: int) -> Path:
    return CACHE / f"activation-{VERSION}-{profiles}-{events}-{subjects}.db"


# --- the synthetic shop ---------------------------------------------------------------------------


def _uuids(rng: np.random.Generator, n: int) -> list[str]:
    data = rng.bytes(16 * n).hex()
    out = []
    for k in range(0, 32 * n, 32):
        h = data[k : k + 32]
        out.append(f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}")
    return out


def _pick(rng: np.random.Generator, options: Sequence[tuple[Any, float]], n: int) -> list[Any]:
    index = rng.choice(len(options), size=n, p=[p for _, p in options])
    values = [v for v, _ in options]
    return [values[i] for i in index.tolist()]


def _stamps(seconds: np.ndarray[Any, Any], pg: bool) -> list[str]:
    """Epoch seconds (float) as the timestamp text the store reads."""
    micro = (seconds * 1_000_000).astype("int64").astype("datetime64[us]").astype(str)
    suffix = "+00" if pg else ""
    return [s.replace("T", " ") + suffix for s in micro.tolist()]


class Shop:
    """Who is in the store: canonical ids (sorted), merged members, traits; events are
    generated in chunks from the per-person activity weights."""

    def __init__(self, profiles: int, events: int, seed: int = 23) -> None:
        self.rng = np.random.default_rng(seed)
        self.profiles, self.events = profiles, events
        self.canonical = sorted(_uuids(self.rng, profiles))
        merged = self.rng.random(profiles) < MERGED_SHARE
        self.merged_index = np.flatnonzero(merged)
        self.members = _uuids(self.rng, len(self.merged_index))
        self.member_of = np.full(profiles, -1, dtype=np.int64)
        self.member_of[self.merged_index] = np.arange(len(self.merged_index))
        weight = self.rng.gamma(0.6, 1.0, profiles)
        self.p = weight / weight.sum()
        self.plan = _pick(self.rng, PLANS, profiles)
        self.tier = _pick(self.rng, TIERS, profiles)
        self.country = _pick(self.rng, COUNTRIES, profiles)
        self.seen = AS_OF.timestamp() - self.rng.uniform(0, 400 * 86_400, profiles)

    def profile_rows(self, pg: bool) -> Iterator[list[tuple[Any, ...]]]:
        """(id, canonical_id, merged_into, created_at) in chunks, members after canonicals."""
        stamps = _stamps(self.seen, pg)
        for lo in range(0, self.profiles, CHUNK):
            hi = min(self.profiles, lo + CHUNK)
            yield [(c, c, None, stamps[i]) for i, c in enumerate(self.canonical[lo:hi], lo)]
        rows = [
            (m, self.canonical[i], self.canonical[i], stamps[i])
            for m, i in zip(self.members, self.merged_index.tolist(), strict=True)
        ]
        for lo in range(0, len(rows), CHUNK):
            yield rows[lo : lo + CHUNK]

    def clear_trait_rows(self, pg: bool) -> Iterator[list[tuple[Any, ...]]]:
        """(canonical_id, key, json value, observed_at) of plan, loyalty_tier, country."""
        stamps = _stamps(self.seen, pg)
        for lo in range(0, self.profiles, CHUNK):
            rows: list[tuple[Any, ...]] = []
            for i in range(lo, min(self.profiles, lo + CHUNK)):
                c, at = self.canonical[i], stamps[i]
                if self.country[i] is not None:
                    rows.append((c, "country", json.dumps(self.country[i]), at))
                rows.append((c, "loyalty_tier", json.dumps(self.tier[i]), at))
                rows.append((c, "plan", json.dumps(self.plan[i]), at))
            yield rows

    def personal_traits(self, lo: int, hi: int) -> list[tuple[int, str, Any]]:
        """(person, key, value) of the personal traits of people ``lo`` to ``hi``."""
        rnd = random.Random(lo)
        out: list[tuple[int, str, Any]] = []
        for i in range(lo, hi):
            first, last = rnd.choice(FIRST), rnd.choice(LAST)
            if rnd.random() < 0.95:
                out.append((i, "email", f"{first.title()}.{last}{i}@Mail.example"))
            if rnd.random() < 0.8:
                out.append((i, "firstName", first.title()))
                out.append((i, "lastName", last.title()))
            if rnd.random() < 0.4:
                out.append((i, "phone", f"+1 415 {rnd.randrange(200, 999)} {i % 10000:04d}"))
        return out

    def event_rows(self, pg: bool) -> Iterator[list[tuple[Any, ...]]]:
        """(message_id, type, event, profile_id, timestamp) in arrival (id) order."""
        start = AS_OF.timestamp() - SPAN_DAYS * 86_400
        seconds = np.sort(self.rng.uniform(start, AS_OF.timestamp() - 60, self.events))
        mix = self.rng.choice(len(EVENT_MIX), size=self.events, p=[m[2] for m in EVENT_MIX])
        owner = self.rng.choice(self.profiles, size=self.events, p=self.p)
        use_member = self.rng.random(self.events) < 0.5
        for lo in range(0, self.events, CHUNK):
            hi = min(self.events, lo + CHUNK)
            stamps = _stamps(seconds[lo:hi], pg)
            rows = []
            for k, (o, m, um) in enumerate(
                zip(
                    owner[lo:hi].tolist(),
                    mix[lo:hi].tolist(),
                    use_member[lo:hi].tolist(),
                    strict=True,
                )
            ):
                member = self.member_of[o]
                pid = self.members[member] if um and member >= 0 else self.canonical[o]
                kind, name, _ = EVENT_MIX[m]
                rows.append((f"bench-{lo + k:010d}", kind, name, pid, stamps[k]))
            yield rows


# --- raw access to the store ----------------------------------------------------------------------


class Raw:
    """The bare driver: ``sqlite3`` or psycopg, for bulk writes and the baselines."""

    def __init__(self, url: str, *, cache_mib: int | None = None) -> None:
        self.pg = url.startswith("postgresql")
        if self.pg:
            import psycopg

            plain = url.replace("postgresql+psycopg://", "postgresql://")
            self.con: Any = psycopg.connect(plain, autocommit=True)
        else:
            self.con = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=60)
            if cache_mib:  # the build only: the baselines keep the driver's defaults, as consentry
                self.con.execute(f"PRAGMA cache_size=-{cache_mib * 1024}")

    def q(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.pg else sql

    def one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        cur = self.con.execute(self.q(sql), params)
        row = cur.fetchone()
        return row[0] if row else None

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return list(self.con.execute(self.q(sql), params).fetchall())

    def run(self, sql: str, params: Sequence[Any] = ()) -> None:
        self.con.execute(self.q(sql), params)

    def count_rows(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a query and fetch every row (as an application would), returning how many."""
        cur = self.con.cursor()
        cur.execute(self.q(sql), params)
        n = 0
        while rows := cur.fetchmany(50_000):
            n += len(rows)
        return n

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
        if not rows:
            return
        if self.pg:
            with self.con.cursor() as cur:
                sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
                with cur.copy(sql) as copy:
                    for row in rows:
                        copy.write_row(row)
        else:
            marks = ", ".join("?" for _ in columns)
            self.con.executemany(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows
            )

    def commit(self) -> None:
        self.con.commit()

    def close(self) -> None:
        self.con.close()

    def secondary_indexes(self, table: str) -> list[tuple[str, str]]:
        """(name, CREATE statement) of the table's indexes that back no constraint."""
        if self.pg:
            return self.all(
                "SELECT i.relname, pg_get_indexdef(x.indexrelid) FROM pg_index x "
                "JOIN pg_class i ON i.oid = x.indexrelid "
                "WHERE x.indrelid = ?::regclass AND NOT x.indisprimary AND NOT x.indisunique",
                (table,),
            )
        return self.all(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
            "AND sql IS NOT NULL",
            (table,),
        )


# --- the build ------------------------------------------------------------------------------------


def _timed(label: str, timings: dict[str, float]) -> Callable[[], None]:
    started = time.perf_counter()

    def done() -> None:
        timings[label] = round(time.perf_counter() - started, 1)
        print(f"  {label}: {timings[label]:.0f} s", flush=True)

    return done


def build(url: str, profiles: int, events: int, subjects: int) -> dict[str, Any]:
    """The shop written into the (migrated) store at ``url``; returns the build's figures."""
    from consentry.consent.ledger import append
    from consentry.consent.models import ConsentEntry
    from consentry.migrations import upgrade
    from consentry.platform import keystore as keystore_module
    from consentry.platform import tenancy
    from consentry.platform.vault import Vault
    from consentry.privacy import processor_service
    from consentry.privacy.processors import ProcessorSpec
    from consentry.profiles.models import trait_field
    from consentry.stores import open_database

    timings: dict[str, float] = {}
    started = time.perf_counter()
    upgrade(url)
    raw = Raw(url, cache_mib=500)
    pg = raw.pg
    if not pg:
        raw.run("PRAGMA synchronous=OFF")
        raw.run("PRAGMA journal_mode=WAL")
    db = open_database(settings(url), **({} if pg else {"sqlite_synchronous": "OFF"}))
    keystore_module.CACHE_SIZE = max(keystore_module.CACHE_SIZE, SEAL_CHUNK * 2)
    with db.write() as session:
        tenancy.create_workspace(session=session, workspace_id=WORKSPACE, name="Bench Shop")
    shop = Shop(profiles, events)
    ws = WORKSPACE

    done = _timed("profiles and clear traits", timings)
    for rows in shop.profile_rows(pg):
        raw.insert(
            "profiles",
            (
                "id",
                "workspace_id",
                "canonical_id",
                "merged_into",
                "created_at",
                "first_seen",
                "last_seen",
            ),
            [(i, ws, c, m, at, at, at) for i, c, m, at in rows],
        )
        raw.commit()
    for rows in shop.clear_trait_rows(pg):
        raw.insert(
            "profile_traits",
            ("canonical_id", "key", "workspace_id", "value", "observed_at"),
            [(c, k, ws, v, at) for c, k, v, at in rows],
        )
        raw.commit()
    done()

    done = _timed(f"personal traits of {subjects:,} people sealed (a data key each)", timings)
    vault = db.vault
    assert isinstance(vault, Vault)
    stamp = _stamps(np.array([AS_OF.timestamp() - 86_400.0]), pg)[0]
    for lo in range(0, subjects, SEAL_CHUNK):
        found = shop.personal_traits(lo, min(subjects, lo + SEAL_CHUNK))
        tokens = vault.seal_many(
            ws, [(shop.canonical[i], trait_field(key), value) for i, key, value in found]
        )
        raw.insert(
            "profile_traits",
            ("canonical_id", "key", "workspace_id", "value", "observed_at"),
            [
                (shop.canonical[i], key, ws, json.dumps(token), stamp)
                for (i, key, _), token in zip(found, tokens, strict=True)
            ],
        )
        raw.commit()
        print(f"    sealed {min(subjects, lo + SEAL_CHUNK):,}/{subjects:,}", end="\r", flush=True)
    print()
    done()

    done = _timed("events", timings)
    indexes = raw.secondary_indexes("events")
    for name, _ in indexes:
        raw.run(f"DROP INDEX {name}")
    raw.commit()
    written = 0
    for rows in shop.event_rows(pg):
        raw.insert(
            "events",
            EVENT_COLUMNS,
            [(ws, m, k, e, p, t, t, PLACEHOLDER) for m, k, e, p, t in rows],
        )
        raw.commit()
        written += len(rows)
        print(f"    events written: {written:,}/{events:,}", end="\r", flush=True)
    print()
    for _, create in indexes:
        raw.run(create)
    raw.commit()
    last = raw.one("SELECT max(id) FROM events WHERE workspace_id = ?", (ws,))
    raw.run(
        "INSERT INTO ingest_cursors (workspace_id, last_event_id, updated_at) VALUES (?, ?, ?)",
        (ws, last, stamp),
    )
    raw.commit()
    done()

    done = _timed("consent records through the ledger", timings)
    rnd = random.Random(5)
    chunk: list[Any] = []
    recorded = 0

    def flush() -> None:
        nonlocal recorded
        with db.write() as session:
            append(session=session, workspace_id=ws, entries=chunk)
        recorded += len(chunk)
        chunk.clear()

    for i, canonical in enumerate(shop.canonical):
        at = datetime.fromtimestamp(shop.seen[i], UTC)
        if rnd.random() < 0.4:
            state = rnd.choices(["granted", "denied", "withdrawn"], [0.6, 0.2, 0.2])[0]
            chunk.append(_entry(ConsentEntry, canonical, EMAIL_PURPOSE, "email", state, at))
        if rnd.random() < 0.2:
            state = rnd.choices(["granted", "denied"], [0.7, 0.3])[0]
            chunk.append(_entry(ConsentEntry, canonical, ADS_PURPOSE, "any", state, at))
        if len(chunk) >= 20_000:
            flush()
    if chunk:
        flush()
    done()

    done = _timed("planner statistics", timings)
    if pg:
        raw.run("VACUUM ANALYZE")
    else:
        raw.run("ANALYZE")
        raw.commit()
    done()

    from consentry.audiences import service as segments

    done = _timed(f"export segment created ({profiles:,} members enter)", timings)
    with db.write() as session:
        segment, _ = segments.create_segment(
            session=session,
            workspace_id=ws,
            name=EXPORT_SEGMENT,
            rule={"trait": "plan", "op": "exists"},
            actor="cli:bench",
            now=AS_OF,
        )
        processor = processor_service.register_processor(
            session=session,
            workspace_id=ws,
            spec=ProcessorSpec(
                name="Ads partner",
                kind="processor",
                transfer_country="DE",
                purposes=(ADS_PURPOSE,),
                categories=("user.contact",),
                dpa_signed_on=date(2024, 1, 10),
            ),
            actor="cli:bench",
        )
    done()
    if not pg:
        raw.run("PRAGMA wal_checkpoint(TRUNCATE)")
    raw.close()
    db.dispose()
    return {
        "profiles": profiles,
        "members_merged": len(shop.members),
        "events": events,
        "export_subjects": subjects,
        "consent_records": recorded,
        "segment_id": segment.id,
        "processor_id": processor.id,
        "build_seconds": round(time.perf_counter() - started, 1),
        "build_steps_s": timings,
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _entry(cls: Any, profile: str, purpose: str, channel: str, state: str, at: datetime) -> Any:
    return cls(
        profile_id=profile,
        purpose=purpose,
        channel=channel,
        state=state,
        legal_basis="consent",
        source="web_form",
        notice_version=None,
        occurred_at=at,
        actor="cli:bench",
        expires_at=None,
        proof=None,
    )


def cached_build(path: Path, build_into: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
    """The description of the cached SQLite store at ``path`` (with its key store beside it),
    built first by ``build_into(url)`` into a partial file when missing, then renamed, so an
    interrupted build is never taken for a store; migrated to the newest schema each time (a
    store cached by an older version gets the new tables and indexes)."""
    meta_path = path.with_suffix(".json")
    if not (path.exists() and keys_path(path).exists() and meta_path.exists()):
        CACHE.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.stem + "-partial.db")
        for leftover in CACHE.glob(partial.stem + "*"):
            leftover.unlink()
        meta = build_into(f"sqlite:///{partial}")
        partial.rename(path)
        keys_path(partial).rename(keys_path(path))
        for leftover in CACHE.glob(partial.stem + "*"):
            leftover.unlink()
        meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    from consentry.migrations import upgrade

    url = f"sqlite:///{path}"
    upgrade(url, settings=settings(url))  # a sealing migration uses the bench's own keys
    loaded: dict[str, Any] = json.loads(meta_path.read_text())
    return loaded


def cached_sqlite(profiles: int, events: int, subjects: int) -> tuple[str, dict[str, Any]]:
    """The cached SQLite store of this size (built when missing) and its description."""
    path = store_path(profiles, events, subjects)
    meta = cached_build(path, lambda url: build(url, profiles, events, subjects))
    return f"sqlite:///{path}", meta


# --- baselines (the raw store) --------------------------------------------------------------------

RAW_SEGMENT = """
SELECT {what} FROM profiles p
WHERE p.workspace_id = ? AND p.id = p.canonical_id
  AND p.id IN (SELECT canonical_id FROM profile_traits
               WHERE workspace_id = ? AND key = 'plan' AND value = {gold})
  AND p.id IN (SELECT m.canonical_id FROM events e JOIN profiles m ON m.id = e.profile_id
               WHERE e.workspace_id = ? AND e.event = 'Product Viewed' AND e.type = 'track'
                 AND e.timestamp >= ? AND e.profile_id IS NOT NULL
               GROUP BY m.canonical_id HAVING count(*) >= 2)
  AND p.id NOT IN (SELECT m.canonical_id FROM events e JOIN profiles m ON m.id = e.profile_id
               WHERE e.workspace_id = ? AND e.event = 'Order Completed' AND e.type = 'track'
                 AND e.timestamp >= ? AND e.profile_id IS NOT NULL)
"""


def raw_segment(url: str) -> dict[str, Any]:
    """The example rule's set by one hand-written statement: counted, and its ids fetched."""
    raw = Raw(url)
    since = AS_OF - timedelta(days=7)
    stamp = since if raw.pg else since.strftime("%Y-%m-%d %H:%M:%S.%f")
    gold = "'\"gold\"'::jsonb" if raw.pg else "'\"gold\"'"
    params = (WORKSPACE, WORKSPACE, WORKSPACE, stamp, WORKSPACE, stamp)
    t, c = time.perf_counter(), _cpu()
    count = raw.one(RAW_SEGMENT.format(what="count(*)", gold=gold), params)
    counted, counted_cpu = time.perf_counter() - t, _cpu() - c
    t, c = time.perf_counter(), _cpu()
    ids = raw.count_rows(RAW_SEGMENT.format(what="p.id", gold=gold), params)
    fetched, fetched_cpu = time.perf_counter() - t, _cpu() - c
    raw.close()
    assert ids == count
    return {
        "count": count,
        "count_s": counted,
        "ids_s": fetched,
        "count_cpu_s": counted_cpu,
        "ids_cpu_s": fetched_cpu,
    }


def raw_export(url: str, segment_id: str) -> dict[str, Any]:
    """The audience's ids read raw; then the rows the export reads (ids, members, consent
    states of the purpose, the identifier and country traits, sealed values left sealed)."""
    from consentry.audiences.exports import TRAIT_KEYS

    raw = Raw(url)
    t = time.perf_counter()
    ids = raw.count_rows(
        "SELECT profile_id FROM segment_members WHERE segment_id = ? ORDER BY profile_id",
        (segment_id,),
    )
    ids_s = time.perf_counter() - t
    keys = ", ".join(f"'{k}'" for k in TRAIT_KEYS)
    t = time.perf_counter()
    raw.count_rows("SELECT id, canonical_id FROM profiles WHERE workspace_id = ?", (WORKSPACE,))
    raw.count_rows(
        "SELECT profile_id, channel, state, record_id, occurred_at, expires_at FROM "
        "consent_state WHERE workspace_id = ? AND purpose = ?",
        (WORKSPACE, EMAIL_PURPOSE),
    )
    raw.count_rows(
        f"SELECT canonical_id, key, value FROM profile_traits WHERE workspace_id = ? "
        f"AND key IN ({keys})",
        (WORKSPACE,),
    )
    rows_s = time.perf_counter() - t
    raw.close()
    return {"ids": ids, "ids_s": ids_s, "rows_s": rows_s + ids_s}


# --- the measures, each in a fresh process --------------------------------------------------------


class _Rollback(Exception):
    """Leave a unit of work without committing it."""


@contextmanager
def _profiled(enabled: bool, into: dict[str, str], label: str) -> Iterator[None]:
    if not enabled:
        yield
        return
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        yield
    finally:
        profiler.disable()
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(25)
        into[label] = out.getvalue()


def _cpu() -> float:
    """CPU seconds of this process so far (user + system): on a shared machine the wall time
    also holds the time other processes had the cores."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _rss() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def work_segment(url: str, profile: bool) -> dict[str, Any]:
    from consentry.audiences import service as segments
    from consentry.stores import open_database

    db = open_database(settings(url))
    out: dict[str, Any] = {"profiles": {}}
    with db.read() as session:
        t, c = time.perf_counter(), _cpu()
        with _profiled(profile, out["profiles"], "preview"):
            found = segments.preview(session=session, workspace_id=WORKSPACE, rule=RULE, now=AS_OF)
        out["preview_s"] = time.perf_counter() - t
        out["preview_cpu_s"] = _cpu() - c
        out["count"], out["text"] = found.count, found.text
    try:
        with db.write() as session:
            t, c = time.perf_counter(), _cpu()
            with _profiled(profile, out["profiles"], "create"):
                segment, report = segments.create_segment(
                    session=session,
                    workspace_id=WORKSPACE,
                    name=f"bench {uuid.uuid4()}",
                    rule=RULE,
                    actor="cli:bench",
                    now=AS_OF,
                )
            out["create_s"] = time.perf_counter() - t
            out["create_cpu_s"] = _cpu() - c
            out["create_entered"] = report.entered
            t, c = time.perf_counter(), _cpu()
            with _profiled(profile, out["profiles"], "refresh_segment"):
                report = segments.refresh_segment(
                    session=session,
                    workspace_id=WORKSPACE,
                    segment_id=segment.id,
                    now=AS_OF + timedelta(hours=6),
                )
            out["refresh_s"] = time.perf_counter() - t
            out["refresh_cpu_s"] = _cpu() - c
            out["refresh_changes"] = {"entered": report.entered, "exited": report.exited}
            t, c = time.perf_counter(), _cpu()
            with _profiled(profile, out["profiles"], "full_refresh"):
                report = segments.refresh(
                    session=session, workspace_id=WORKSPACE, now=AS_OF + timedelta(hours=6)
                )
            out["full_refresh_s"] = time.perf_counter() - t
            out["full_refresh_cpu_s"] = _cpu() - c
            out["full_refresh"] = report.document()
            raise _Rollback
    except _Rollback:
        pass
    # The full refresh as the server, the API and the CLI run it: evaluated in reads, applied
    # in write transactions of at most STEP_CHANGES changes; what counts is its longest write
    # transaction (ingestion waits that long at most). The one-transaction refresh above held
    # the write lock for all of its ``full_refresh_s``. Committed, so undone afterwards.
    with db.write() as session:
        steps_segment, _ = segments.create_segment(
            session=session,
            workspace_id=WORKSPACE,
            name=f"bench steps {uuid.uuid4()}",
            rule=RULE,
            actor="cli:bench",
            now=AS_OF,
        )
    try:
        t, c = time.perf_counter(), _cpu()
        with _profiled(profile, out["profiles"], "full_refresh_in_steps"):
            report = segments.refresh_in_steps(
                db, workspace_id=WORKSPACE, now=AS_OF + timedelta(hours=6)
            )
        out["full_refresh_steps_s"] = time.perf_counter() - t
        out["full_refresh_steps_cpu_s"] = _cpu() - c
        out["full_refresh_steps"] = report.document()
        out["longest_write_s"] = report.longest_write_s
    finally:
        with db.write() as session:
            segments.delete_segment(
                session=session, workspace_id=WORKSPACE, segment_id=steps_segment.id
            )
    db.dispose()
    out["peak_rss_mib"] = _rss()
    return out


def _event_journey() -> dict[str, Any]:
    return {
        "name": "Bench checkout reminder",
        "trigger": {"type": "event", "event": TRIGGER_EVENT},
        "exit_on": {"event": "Order Completed"},
        "steps": [
            {"id": "wait", "type": "wait", "hours": 4},
            {"id": "tag", "type": "update_trait", "trait": "checkout_reminded", "value": True},
        ],
    }


def _segment_journey(segment_id: str) -> dict[str, Any]:
    return {
        "name": "Bench welcome to gold",
        "trigger": {"type": "segment_entered", "segment_id": segment_id},
        "steps": [
            {"id": "wait", "type": "wait", "hours": 24},
            {"id": "tag", "type": "update_trait", "trait": "gold_welcomed", "value": True},
        ],
    }


def _rounds(run: Callable[[], Any], field: str) -> dict[str, Any]:
    """Rounds back to back until one reads nothing of ``field`` (events or changes)."""
    started, cpu = time.perf_counter(), _cpu()
    rounds, read, enrolled, seconds = 0, 0, 0, []
    while True:
        t = time.perf_counter()
        report = run()
        seconds.append(time.perf_counter() - t)
        rounds += 1
        got = getattr(report.triggers, field)
        read += got
        enrolled += report.triggers.enrolled
        if got == 0:
            break
    return {
        "seconds": time.perf_counter() - started,
        "cpu_s": _cpu() - cpu,
        "rounds": rounds,
        "read": read,
        "enrolled": enrolled,
        "round_s_max": max(seconds),
    }


def work_triggers(url: str, n: int, batch: int, profile: bool) -> dict[str, Any]:
    from consentry.audiences import service as segments
    from consentry.config import JourneySettings
    from consentry.journeys import service as journeys
    from consentry.journeys.templates import LinkMaker
    from consentry.platform.db import utcnow
    from consentry.stores import open_database

    db = open_database(settings(url))
    options = JourneySettings(trigger_batch=batch)
    links = LinkMaker(secret=SECRET, public_url="https://shop.example")
    out: dict[str, Any] = {"profiles": {}, "trigger_batch": batch}
    raw = Raw(url)
    first_event = raw.one("SELECT max(id) FROM events") or 0
    applied = raw.one(
        "SELECT last_event_id FROM ingest_cursors WHERE workspace_id = ?", (WORKSPACE,)
    )

    def run() -> Any:
        return journeys.run(db, WORKSPACE, options, links=links)

    try:
        with db.write() as session:
            segment, _ = segments.create_segment(
                session=session,
                workspace_id=WORKSPACE,
                name="Bench gold tier",
                rule={"trait": "loyalty_tier", "op": "eq", "value": "(nobody yet)"},
                actor="cli:bench",
            )
            for document in (_event_journey(), _segment_journey(segment.id)):
                made = journeys.create_journey(
                    session=session, workspace_id=WORKSPACE, document=document, actor="cli:bench"
                )
                journeys.change_status(
                    session=session,
                    workspace_id=WORKSPACE,
                    journey_id=made.id,
                    action="activate",
                    actor="cli:bench",
                )
        # a new workspace cursor starts at the applied events and at membership change 0
        out["history_catch_up"] = _rounds(run, "changes")

        # 1. event triggers: n trigger events appended and applied
        people = [
            r[0] for r in raw.all("SELECT id FROM profiles WHERE workspace_id = ?", (WORKSPACE,))
        ]
        rnd = random.Random(9)
        now = utcnow().timestamp()
        stamps = _stamps(np.array(sorted(now - rnd.uniform(60, 3600) for _ in range(n))), raw.pg)
        tag = uuid.uuid4().hex[:8]
        rows = [
            (
                WORKSPACE,
                f"trig-{tag}-{i:08d}",
                "track",
                TRIGGER_EVENT,
                rnd.choice(people),
                s,
                s,
                BIG_PLACEHOLDER,
            )
            for i, s in enumerate(stamps)
        ]
        for lo in range(0, n, 20_000):
            raw.insert(
                "events",
                EVENT_COLUMNS,
                rows[lo : lo + 20_000],
            )
        last = raw.one("SELECT max(id) FROM events WHERE workspace_id = ?", (WORKSPACE,))
        raw.run(
            "UPDATE ingest_cursors SET last_event_id = ? WHERE workspace_id = ?", (last, WORKSPACE)
        )
        raw.commit()
        t = time.perf_counter()
        read = raw.count_rows(
            "SELECT id, type, event, profile_id, timestamp FROM events "
            "WHERE workspace_id = ? AND id > ? AND id <= ? ORDER BY id",
            (WORKSPACE, first_event, last),
        )
        out["raw_events_s"] = time.perf_counter() - t
        assert read == n
        with _profiled(profile, out["profiles"], "event_rounds"):
            out["events"] = _rounds(run, "events")
        out["events"]["per_s"] = n / out["events"]["seconds"]

        # 2. segment_entered: a rule change lets ~10 % of people in
        with db.write() as session:
            t = time.perf_counter()
            _, report = segments.update_segment(
                session=session,
                workspace_id=WORKSPACE,
                segment_id=segment.id,
                actor="cli:bench",
                rule={"trait": "loyalty_tier", "op": "eq", "value": "gold"},
            )
            out["segment_update_s"] = time.perf_counter() - t
        entered = report.entered
        t = time.perf_counter()
        read = raw.count_rows(
            "SELECT id, segment_id, profile_id, entered, at FROM segment_membership_changes "
            "WHERE workspace_id = ? AND segment_id = ? ORDER BY id",
            (WORKSPACE, segment.id),
        )
        out["raw_changes_s"] = time.perf_counter() - t
        with _profiled(profile, out["profiles"], "change_rounds"):
            out["changes"] = _rounds(run, "changes")
        out["changes"]["entered"] = entered
        out["changes"]["per_s"] = entered / out["changes"]["seconds"]
    finally:
        _undo_triggers(db, raw, first_event, applied)
        raw.close()
        db.dispose()
    out["peak_rss_mib"] = _rss()
    return out


def _undo_triggers(db: Any, raw: Raw, first_event: int, applied: int) -> None:
    """Leave the cached store as it was: journeys, their cursor, the events and segment added."""
    from consentry.audiences import service as segments

    for table in ("journey_step_runs", "journey_enrollments", "journey_versions"):
        raw.run(
            f"DELETE FROM {table} WHERE journey_id IN "
            "(SELECT id FROM journeys WHERE workspace_id = ?)",
            (WORKSPACE,),
        )
    for table in ("journeys", "journey_cursors"):
        raw.run(f"DELETE FROM {table} WHERE workspace_id = ?", (WORKSPACE,))
    raw.run("DELETE FROM events WHERE workspace_id = ? AND id > ?", (WORKSPACE, first_event))
    raw.run(
        "UPDATE ingest_cursors SET last_event_id = ? WHERE workspace_id = ?", (applied, WORKSPACE)
    )
    raw.commit()
    with db.write() as session:
        for segment in segments.list_segments(session=session, workspace_id=WORKSPACE):
            if segment.name == "Bench gold tier":
                segments.delete_segment(
                    session=session, workspace_id=WORKSPACE, segment_id=segment.id
                )


class _Sink:
    """A file that counts what is written to it."""

    def __init__(self) -> None:
        self.bytes = 0

    def write(self, data: bytes) -> int:
        self.bytes += len(data)
        return len(data)


def work_export(
    url: str, mode: str, segment_id: str, processor_id: str, profile: bool
) -> dict[str, Any]:
    from consentry.audiences import export_service
    from consentry.audiences.export_service import ExportRequest
    from consentry.config import AudienceExportSettings
    from consentry.stores import open_database

    db = open_database(settings(url))
    if mode == "download":
        request = ExportRequest(purpose=EMAIL_PURPOSE, channel="email", segment_id=segment_id)
    else:
        request = ExportRequest(
            purpose=ADS_PURPOSE,
            channel="any",
            mode="partner",
            platform="meta",
            processor_id=processor_id,
            segment_id=segment_id,
        )
    sink = _Sink()
    out: dict[str, Any] = {"profiles": {}}
    t, c = time.perf_counter(), _cpu()
    with _profiled(profile, out["profiles"], f"export_{mode}"):
        record = export_service.export_audience(
            db,
            workspace_id=WORKSPACE,
            request=request,
            actor="cli:bench",
            settings=AudienceExportSettings(),
            default_region="US",
            sink=sink,  # type: ignore[arg-type]
        )
    out["seconds"] = time.perf_counter() - t
    out["cpu_s"] = _cpu() - c
    out["peak_rss_mib"] = _rss()
    out["status"] = record.status
    out["exported"] = record.subjects
    out["left_out"] = record.left_out
    out["bytes"] = sink.bytes
    raw = Raw(url)
    out["audience"] = raw.one(
        "SELECT count(*) FROM segment_members WHERE segment_id = ?", (segment_id,)
    )
    raw.run("DELETE FROM audience_export_subjects WHERE export_id = ?", (record.id,))
    raw.commit()
    raw.close()
    db.dispose()
    out["subjects_per_s"] = out["audience"] / out["seconds"]
    return out


def worker(kind: str, url: str, meta: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    if kind == "segment":
        return work_segment(url, args.profile)
    if kind == "triggers":
        return work_triggers(url, args.triggers, args.trigger_batch, args.profile)
    return work_export(
        url, kind.removeprefix("export-"), meta["segment_id"], meta["processor_id"], args.profile
    )


def _spawn(kind: str, url: str, meta: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    command = [
        sys.executable,
        __file__,
        "--worker",
        kind,
        "--url",
        url,
        "--meta",
        json.dumps(meta),
        "--triggers",
        str(args.triggers),
        "--trigger-batch",
        str(args.trigger_batch),
    ]
    if args.profile:
        command.append("--profile")
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"worker {kind} failed")
    found: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    found["load_avg_1m"] = round(os.getloadavg()[0], 2)  # the machine is shared: how busy it was
    return found


def _median(runs: list[dict[str, Any]], *path: str) -> float:
    def get(run: dict[str, Any]) -> float:
        value: Any = run
        for key in path:
            value = value[key]
        return float(value)

    return statistics.median(get(r) for r in runs)


def measure(store: str, url: str, meta: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    only = set(args.only.split(","))
    result: dict[str, Any] = {}
    if "segment" in only:
        runs, bases = [], []
        for i in range(args.repeat):
            bases.append(raw_segment(url))
            runs.append(_spawn("segment", url, meta, args))
            r, b = runs[-1], bases[-1]
            print(
                f"  {store} segment run {i + 1}: preview {r['preview_s']:.2f} s ({r['count']:,}), "
                f"create {r['create_s']:.2f} s, refresh {r['refresh_s']:.2f} s, full refresh "
                f"{r['full_refresh_s']:.2f} s in one write transaction, in steps "
                f"{r['full_refresh_steps_s']:.2f} s (longest write {r['longest_write_s']:.3f} s, "
                f"{r['full_refresh_steps']['writes']} writes); raw count {b['count_s']:.2f} s, "
                f"raw ids {b['ids_s']:.2f} s ({b['count']:,}); CPU s: preview "
                f"{r['preview_cpu_s']:.2f}, refresh {r['refresh_cpu_s']:.2f}, raw count "
                f"{b['count_cpu_s']:.2f}, raw ids {b['ids_cpu_s']:.2f}; load {r['load_avg_1m']}",
                flush=True,
            )
        preview, refresh = _median(runs, "preview_s"), _median(runs, "refresh_s")
        raw_count, raw_ids = _median(bases, "count_s"), _median(bases, "ids_s")
        result["segment"] = {
            "rule": RULE,
            "text": runs[0]["text"],
            "members": runs[0]["count"],
            "raw_members": bases[0]["count"],
            "preview_s": round(preview, 3),
            "create_s": round(_median(runs, "create_s"), 3),
            "refresh_segment_s": round(refresh, 3),
            "full_refresh_s": round(_median(runs, "full_refresh_s"), 3),
            # the one-transaction refresh holds the write lock throughout; the refresh in
            # steps (what the server runs) for its longest write transaction only
            "one_transaction_longest_write_s": round(_median(runs, "full_refresh_s"), 3),
            "full_refresh_steps_s": round(_median(runs, "full_refresh_steps_s"), 3),
            "longest_write_s": round(_median(runs, "longest_write_s"), 3),
            "full_refresh_steps_writes": runs[0]["full_refresh_steps"]["writes"],
            "raw_count_s": round(raw_count, 3),
            "raw_ids_s": round(raw_ids, 3),
            "cpu_s": {
                "preview": round(_median(runs, "preview_cpu_s"), 3),
                "create": round(_median(runs, "create_cpu_s"), 3),
                "refresh_segment": round(_median(runs, "refresh_cpu_s"), 3),
                "full_refresh": round(_median(runs, "full_refresh_cpu_s"), 3),
                "full_refresh_steps": round(_median(runs, "full_refresh_steps_cpu_s"), 3),
                "raw_count": round(_median(bases, "count_cpu_s"), 3),
                "raw_ids": round(_median(bases, "ids_cpu_s"), 3),
            },
            "preview_ratio_to_raw_count": round(preview / raw_count, 2),
            "refresh_ratio_to_raw_ids": round(refresh / raw_ids, 2),
            "peak_rss_mib": round(max(r["peak_rss_mib"] for r in runs)),
            "target_s": 5,
            "met": max(preview, refresh) < 5,
            "runs": runs,
        }
    if "triggers" in only:
        runs = []
        for i in range(args.repeat):
            runs.append(_spawn("triggers", url, meta, args))
            r = runs[-1]
            print(
                f"  {store} triggers run {i + 1}: {r['events']['read']:,} events in "
                f"{r['events']['seconds']:.2f} s ({r['events']['per_s']:,.0f}/s, "
                f"{r['events']['rounds']} rounds, {r['events']['enrolled']:,} enrolled; raw read "
                f"{r['raw_events_s']:.2f} s); {r['changes']['entered']:,} segment entries in "
                f"{r['changes']['seconds']:.2f} s ({r['changes']['per_s']:,.0f}/s; raw "
                f"{r['raw_changes_s']:.2f} s); history catch-up "
                f"{r['history_catch_up']['read']:,} changes in "
                f"{r['history_catch_up']['seconds']:.1f} s; CPU s: events "
                f"{r['events']['cpu_s']:.2f}, changes {r['changes']['cpu_s']:.2f}; load "
                f"{r['load_avg_1m']}",
                flush=True,
            )
        per_s = _median(runs, "events", "per_s")
        result["triggers"] = {
            "trigger_events": args.triggers,
            "trigger_batch": args.trigger_batch,
            "event_triggers_per_s": round(per_s),
            "event_seconds": round(_median(runs, "events", "seconds"), 3),
            "event_cpu_s": round(_median(runs, "events", "cpu_s"), 3),
            "event_triggers_per_cpu_s": round(args.triggers / _median(runs, "events", "cpu_s")),
            "raw_events_s": round(_median(runs, "raw_events_s"), 3),
            "event_ratio_to_raw": round(
                _median(runs, "events", "seconds") / _median(runs, "raw_events_s"), 1
            ),
            "segment_entries": runs[0]["changes"]["entered"],
            "segment_triggers_per_s": round(_median(runs, "changes", "per_s")),
            "segment_seconds": round(_median(runs, "changes", "seconds"), 3),
            "segment_cpu_s": round(_median(runs, "changes", "cpu_s"), 3),
            "raw_changes_s": round(_median(runs, "raw_changes_s"), 3),
            "segment_ratio_to_raw": round(
                _median(runs, "changes", "seconds") / _median(runs, "raw_changes_s"), 1
            ),
            "segment_update_s": round(_median(runs, "segment_update_s"), 3),
            "history_catch_up": {
                "changes": runs[0]["history_catch_up"]["read"],
                "rounds": runs[0]["history_catch_up"]["rounds"],
                "seconds": round(_median(runs, "history_catch_up", "seconds"), 2),
            },
            "peak_rss_mib": round(max(r["peak_rss_mib"] for r in runs)),
            "target_per_s": 10_000,
            "met": per_s >= 10_000,
            "runs": runs,
        }
    if "export" in only:
        for mode in ("download", "partner"):
            runs, bases = [], []
            for i in range(args.repeat):
                bases.append(raw_export(url, meta["segment_id"]))
                runs.append(_spawn(f"export-{mode}", url, meta, args))
                r, b = runs[-1], bases[-1]
                print(
                    f"  {store} export {mode} run {i + 1}: {r['audience']:,} subjects in "
                    f"{r['seconds']:.1f} s ({r['subjects_per_s']:,.0f}/s), {r['exported']:,} "
                    f"exported, left out {r['left_out']}, {r['bytes'] / 2**20:.0f} MiB, peak RSS "
                    f"{r['peak_rss_mib']:.0f} MiB; raw ids {b['ids_s']:.2f} s, raw rows "
                    f"{b['rows_s']:.2f} s; CPU {r['cpu_s']:.1f} s; load {r['load_avg_1m']}",
                    flush=True,
                )
            seconds = _median(runs, "seconds")
            result[f"export_{mode}"] = {
                "audience": runs[0]["audience"],
                "exported": runs[0]["exported"],
                "left_out": runs[0]["left_out"],
                "seconds": round(seconds, 2),
                "cpu_s": round(_median(runs, "cpu_s"), 2),
                "subjects_per_s": round(_median(runs, "subjects_per_s")),
                "file_mib": round(runs[0]["bytes"] / 2**20, 1),
                "raw_ids_s": round(_median(bases, "ids_s"), 3),
                "raw_rows_s": round(_median(bases, "rows_s"), 3),
                "ratio_to_raw_ids": round(seconds / _median(bases, "ids_s"), 1),
                "ratio_to_raw_rows": round(seconds / _median(bases, "rows_s"), 1),
                "peak_rss_mib": round(max(r["peak_rss_mib"] for r in runs)),
                "runs": runs,
            }
    return result


def report(result: dict[str, Any], store: str) -> None:
    r = result[store]
    print(f"\n{result['cores']} cores; {store}; medians (runs per section in the JSON):")
    if "segment" in r:
        s = r["segment"]
        print(
            f"  segment ({s['members']:,} of {result['profiles']:,} profiles, "
            f"{result['events']:,} events): preview {s['preview_s']} s "
            f"({s['preview_ratio_to_raw_count']}x the raw count, {s['raw_count_s']} s), "
            f"refresh {s['refresh_segment_s']} s ({s['refresh_ratio_to_raw_ids']}x the raw ids, "
            f"{s['raw_ids_s']} s), first evaluation {s['create_s']} s, full workspace refresh "
            f"{s['full_refresh_s']} s in one write transaction, in steps "
            f"{s.get('full_refresh_steps_s')} s with its longest write transaction "
            f"{s.get('longest_write_s')} s; target < 5 s: {'met' if s['met'] else 'NOT met'}"
        )
    if "triggers" in r:
        t = r["triggers"]
        print(
            f"  triggers: {t['event_triggers_per_s']:,} event triggers/s "
            f"({t['trigger_events']:,} in {t['event_seconds']} s, {t['event_ratio_to_raw']}x the "
            f"raw read); {t['segment_triggers_per_s']:,} segment_entered triggers/s "
            f"({t['segment_entries']:,}, {t['segment_ratio_to_raw']}x raw); target 10,000/s: "
            f"{'met' if t['met'] else 'NOT met'} (trigger_batch {t['trigger_batch']:,})"
        )
    for mode in ("download", "partner"):
        if f"export_{mode}" in r:
            e = r[f"export_{mode}"]
            print(
                f"  export {mode}: {e['audience']:,} subjects in {e['seconds']} s "
                f"({e['subjects_per_s']:,}/s; {e['exported']:,} exported), "
                f"{e['ratio_to_raw_ids']}x the raw ids ({e['raw_ids_s']} s), "
                f"{e['ratio_to_raw_rows']}x the raw rows ({e['raw_rows_s']} s); peak RSS "
                f"{e['peak_rss_mib']} MiB"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--profiles", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument(
        "--export-subjects", type=int, default=None, help="people with sealed identifiers"
    )
    parser.add_argument("--triggers", type=int, default=100_000)
    parser.add_argument("--trigger-batch", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--postgresql", action="store_true")
    parser.add_argument("--quick", action="store_true", help="20k profiles, 200k events")
    parser.add_argument("--only", default="segment,triggers,export")
    parser.add_argument("--profile", action="store_true", help="cProfile each measured step")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--meta", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        found = worker(args.worker, args.url, json.loads(args.meta), args)
        print(json.dumps(found, default=str))
        return
    if args.quick:
        args.profiles, args.events, args.triggers = 20_000, 200_000, 10_000
    subjects = args.profiles if args.export_subjects is None else args.export_subjects
    store = "postgresql" if args.postgresql else "sqlite"
    result: dict[str, Any] = {
        "benchmark": "activation",
        "cores": os.cpu_count(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "profiles": args.profiles,
        "events": args.events,
        "repeat": args.repeat,
        "targets": {"segment_s": 5, "triggers_per_s": 10_000},
        "sqlite_version": sqlite3.sqlite_version,
        "python": sys.version.split()[0],
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    print(
        f"scale: {args.profiles:,} profiles, {args.events:,} events, {subjects:,} export "
        f"subjects; {store}; {os.cpu_count()} cores"
    )
    if args.postgresql:
        server = started_postgres()
        try:
            url = server.create_database()
            meta = build(url, args.profiles, args.events, subjects)
            result["store"] = meta
            print(f"  PostgreSQL store written in {meta['build_seconds']:.0f} s")
            result[store] = measure(store, url, meta, args)
        finally:
            server.stop()
    else:
        url, meta = cached_sqlite(args.profiles, args.events, subjects)
        result["store"] = meta
        result[store] = measure(store, url, meta, args)
    name = "activation_quick" if args.quick else "activation"
    if args.postgresql:
        name += "_postgresql"
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    if path.exists():  # measures of another invocation (``--only``) on the same scale are kept
        before = json.loads(path.read_text())
        if (before.get("profiles"), before.get("events")) == (args.profiles, args.events):
            kept = before.get(store, {})
            for key, value in kept.items():
                result[store].setdefault(key, value)
    for section in result[store].values():
        section.setdefault("date", result["date"])
        section.setdefault("repeat", args.repeat)
    report(result, store)
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"written to bench/results/{name}.json")


if __name__ == "__main__":
    main()

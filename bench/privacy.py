"""Privacy benchmark: the access export and the erasure of one person, and what encryption at
rest costs ingestion.

Builds (once, cached in bench/.cache/ keyed by the size) an SQLite store with ``--profiles``
unified profiles and ``--events`` events in one workspace, with its key store beside it. Real
ingestion (~600 µs/event) would take hours at this size, so the rows are bulk-inserted the way
the services store them, sealed for real through the vault, so that the export and erasure run
their true code paths (opening, key look-ups, crypto-shredding):

- ``profiles`` (10% of people have a second member merged in, with a ``profile_merges`` row);
- ``identifiers`` (user_id and email for the 70% who are customers, anonymous_id for everyone):
  ``value`` the blind index, ``sealed`` the value sealed under the profile (``identifier:<type>``);
- ``trait_history`` / ``profile_traits``: personal traits (email, firstName, lastName) sealed
  under the profile (``trait:<key>``), country and plan in clear, as ``seal_traits`` does;
- ``events``: userId/anonymousId as blind indexes, linked to a profile, the Segment message
  sealed under ``ingest.service.event_subject`` (field ``event.payload``); ids are interleaved
  across people and skewed: most people have about ``events / profiles`` events, one in a
  thousand has 30 to 100 times that (the "heavy" subject);
- ``orders`` / ``order_items`` for 30% of customers, open ``carts`` for 5%, and consent records
  (with a proof holding email, IP and user agent, sealed) appended through the real ledger for
  40% of customers; the ingest cursor is at the last event (nothing pending);
- 5 recommendation model versions (``recommend.keep_versions``), trained through
  ``recommend.service.train`` on the built store, browsing over the whole span of the events
  (every customer who bought or viewed a product is in each version: the access export reads
  every version for the person, the erasure blanks them in every version);
  ``--trained-versions 1`` trains one and stores the others as copies of it (a training at
  1M profiles takes minutes). The export and the erasure report the part of their time spent
  in the models (``recommend.subject_data`` / ``erase_subject``, timed by wrapping them).

The events are made and sealed by ``--workers`` forked processes (default 2; each chunk from its
own random stream) while the main process inserts them; every data key is made before, in the
main process, so the workers only read the key store. The cache's name carries
``CACHE_VERSION`` (``privacy-v2-...``): a store built by an older version of this script (no
models) is never reused.

Then, ``--repeat`` times, on a fresh copy of the cached files (data and keys, checkpointed and
synced; one spare subject exported and erased first, unmeasured, as a running server has its
statements compiled), for three kinds of subject, distinct random ones each run:

- typical: a single-profile customer with about ``events / profiles`` events, an order and a
  consent record (most people);
- merged: the same with a second profile merged in (10% of people: ids of several members go
  to the queries as ``IN`` lists, which the planner treats differently from one id);
- heavy: one of the 0.1% with 30 to 100 times the mean number of events, 10 to 30 orders.

For each: the access export (``privacy.access_service.collect`` + ``privacy.access.
build_archive`` in ``Database.read()``), then the erasure (``privacy.erasure_service.erase``,
orders kept under a 10-year hold, in ``Database.write()``, then ``Database.purge_deleted()``:
reported with and without the purge; the API and the CLI do both, so the target is judged on
the sum). The raw store, the floor, in the same run: the same subject's rows read with plain
``sqlite3`` cursors, and deleted (orders and consent proofs updated) with plain ``sqlite3``
statements in one transaction (``synchronous=FULL``, ``secure_delete=ON``, as consentry's
connections) on a copy of its own; ratios ours/raw.

Targets (the issue): export under 2 s, erasure under 1 s. The store is measured as consentry
keeps it: with the planner's statistics (``Database.optimize()``, which the server runs at start
and every six hours, and the demo after seeding; without them SQLite picked full scans for a
merged person, seconds instead of milliseconds).

The encryption cost on ingestion runs ``bench/ingest_stages.py --baseline 6fa6e43`` (the
commit before sealing: encryption off; ``git archive`` into a temp folder, the working tree is
not touched) in the same run, on SQLite, small (``--ingest-events``); if that fails, the
figures of bench/results/ingest_stages_sealing.json are reported instead, labelled as such,
with the date of that file's commit.

``--profile`` adds, for one more subject of each kind, cProfile's top functions and every SQL
statement of the export and of the erasure replayed with plain ``sqlite3`` on a fresh copy,
timed to its last row, with its query plan (SQLAlchemy's events miss the time a SELECT spends
while its rows are fetched, which is where a scan shows).

Prints the figures with the machine's core count; writes bench/results/privacy.json.

    .venv/bin/python bench/privacy.py [--profiles 100000] [--events 1000000] [--repeat 5]
        [--ingest-events 4000] [--ingest-repeat 3] [--no-ingest] [--profile] [--workers 2]
        [--trained-versions 5] [--in-place] [--out bench/results/privacy.json]

Sizes: ``make bench`` runs the default size (100k profiles, 1M events: ~2 GB cached, plus two
copies while it runs), then 1M/10M with ``--in-place --repeat 2 --trained-versions 1
--no-ingest --out bench/results/privacy_1m.json``: that store is ~20 GB and its copies would
not fit a typical disk, so ``--in-place`` measures on the cached store itself (the subjects
erased, ours and raw, are recorded in its JSON and never picked again; the raw erasures take
other subjects of the same kind). Its build is long (one process makes the profiles, keys and
consent records; the events are split across the workers). The load average before and after
is recorded in the result.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import multiprocessing
import os
import pstats
import random
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from array import array
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import islice
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rich.progress import Progress  # noqa: E402
from sqlalchemy import Table, event, insert, literal, select  # noqa: E402
from sqlalchemy.engine import Engine  # noqa: E402

from consentry.commerce.tables import CartRow, OrderItemRow, OrderRow  # noqa: E402
from consentry.config import CryptoSettings, RecommendSettings, Settings  # noqa: E402
from consentry.consent.ledger import append  # noqa: E402
from consentry.consent.models import ConsentEntry  # noqa: E402
from consentry.ingest.service import PAYLOAD, event_subject, identity_index  # noqa: E402
from consentry.ingest.tables import EventRow, IngestCursorRow  # noqa: E402
from consentry.migrations import upgrade  # noqa: E402
from consentry.platform import keystore as keystore_module  # noqa: E402
from consentry.platform import tenancy  # noqa: E402
from consentry.platform.db import Bulk, Database  # noqa: E402
from consentry.platform.vault import Vault  # noqa: E402
from consentry.privacy.access import build_archive  # noqa: E402
from consentry.privacy.access_service import collect  # noqa: E402
from consentry.privacy.erasure_service import erase  # noqa: E402
from consentry.profiles.models import (  # noqa: E402
    ANONYMOUS_ID,
    EMAIL,
    USER_ID,
    is_personal_trait,
    normalize_email,
    normalize_id,
    trait_field,  # noqa: E402
)
from consentry.profiles.tables import (  # noqa: E402
    CurrentTraitRow,
    IdentifierRow,
    MergeRow,
    ProfileRow,
    TraitHistoryRow,
)
from consentry.recommend import service as recommend  # noqa: E402
from consentry.recommend.tables import RecommendModelBlockRow, RecommendModelRow  # noqa: E402
from consentry.stores import open_database  # noqa: E402

WORKSPACE = "bench-privacy"
SECRET = "bench-privacy-secret"  # fixed: the cached store's keys and indexes derive from it
PURPOSE = "marketing.communications.email"
T0 = datetime(2024, 6, 1, tzinfo=UTC)
SPAN_MINUTES = 540 * 24 * 60  # the events spread over 18 months
ORDER_HOLD = timedelta(days=3650)
TARGET_EXPORT_S = 2.0
TARGET_ERASE_S = 1.0
MODEL_VERSIONS = 5  # recommend.keep_versions: every stored version is searched and erased
BASELINE_REF = "6fa6e43"  # the last commit before personal data was sealed at rest
SEALING_RESULT = "bench/results/ingest_stages_sealing.json"
CUSTOMERS = 0.7  # share of people with a userId and an email
MERGED = 0.1  # share of people with a second member merged in
HEAVY = 1000  # one person in this many is heavy
FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Margaret", "Ken", "Frances"]
LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Hamilton", "Allen"]
COUNTRIES = ["DE", "FR", "US", "US", "GB", "BR", "NL", "ES"]
PAGES = ["Home", "Category", "Product", "Search", "Cart", "Checkout", "Account", "Blog"]
TRACKS = ["Product Viewed", "Product Added", "Products Searched", "Cart Viewed", "Signed In"]
AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Version/17.5 Safari",
]


def settings(url: str) -> Settings:
    """Test settings with fixed development keys (whatever the environment says)."""
    return Settings(
        environment="test", database_url=url, secret_key=SECRET, crypto=CryptoSettings()
    )


def keys_path(path: Path) -> Path:
    """The key store's file beside the data file (``keystore.default_url``)."""
    return path.with_name(path.stem + ".keys" + path.suffix)


def checkpoint(path: Path) -> None:
    """Fold the WAL into the file and truncate it (so copying the file copies everything)."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


# --- the build ----------------------------------------------------------------------------------


@dataclass(slots=True)
class Person:
    """One unified profile as the build plans it (raw ids, their blind indexes, key subjects)."""

    pid: str
    anon: str
    events: int
    user: str | None = None
    email: str | None = None
    member: str | None = None
    member_anon: str | None = None
    anon_index: str = ""
    user_index: str | None = None
    member_anon_index: str | None = None
    user_subject: str = ""  # whose key seals an event with a userId
    anon_subject: str = ""  # ... with only an anonymousId
    member_subject: str = ""  # ... of the merged member (its own anonymousId)
    country: str = "US"
    heavy: bool = False  # one of the few with 30 to 100 times the usual events
    orders: int = 0
    consent: bool = False


def plan_people(rnd: random.Random, profiles: int, events: int) -> list[Person]:
    """People with skewed event counts summing to ``events`` exactly."""
    if events < 2 * profiles:
        raise SystemExit("--events must be at least twice --profiles")
    mean = events / profiles
    heavy = set(rnd.sample(range(profiles), max(1, profiles // HEAVY)))
    counts = [0] * profiles
    for i in heavy:
        counts[i] = rnd.randint(int(30 * mean), int(100 * mean))
    rest = (events - sum(counts)) / (profiles - len(heavy))
    for i in range(profiles):
        if i not in heavy:
            counts[i] = max(1, round(rnd.gammavariate(3.0, rest / 3.0)))
    others = [i for i in range(profiles) if i not in heavy]
    diff = events - sum(counts)
    while diff:
        i = rnd.choice(others)
        if diff > 0:
            counts[i] += 1
            diff -= 1
        elif counts[i] > 1:
            counts[i] -= 1
            diff += 1
    people = []
    for n, count in enumerate(counts):
        person = Person(
            pid=str(uuid.UUID(int=rnd.getrandbits(128), version=4)),
            anon=str(uuid.UUID(int=rnd.getrandbits(128), version=4)),
            events=count,
            country=rnd.choice(COUNTRIES),
            heavy=n in heavy,
        )
        if rnd.random() < CUSTOMERS or n in heavy:
            person.user = f"u-{n:08d}"
            first, last = rnd.choice(FIRST), rnd.choice(LAST)
            person.email = f"{first}.{last}.{n}@Example.com"
        if rnd.random() < MERGED:
            person.member = str(uuid.UUID(int=rnd.getrandbits(128), version=4))
            person.member_anon = str(uuid.UUID(int=rnd.getrandbits(128), version=4))
        people.append(person)
    return people


def _at(rnd: random.Random) -> datetime:
    return T0 + timedelta(minutes=rnd.randrange(SPAN_MINUTES), seconds=rnd.randrange(60))


def _build_people(
    db: Database, vault: Vault, rnd: random.Random, chunk: list[Person], counters: dict[str, int]
) -> None:
    """Profiles, identifiers, traits, merges, orders, carts and consent of ``chunk``."""
    ws = WORKSPACE
    profiles, identifiers, seals = [], [], []
    history, current, trait_seals = [], [], []
    merges, orders, items, carts, entries = [], [], [], [], []
    for p in chunk:
        seen = _at(rnd)
        created = seen - timedelta(days=rnd.randrange(30))
        base = {"workspace_id": ws, "created_at": created, "first_seen": created, "last_seen": seen}
        profiles.append({**base, "id": p.pid, "canonical_id": p.pid, "merged_into": None})
        p.anon_index = cast(str, identity_index(vault, ws, ANONYMOUS_ID, p.anon))
        p.anon_subject = event_subject(vault, ws, None, p.anon, "")
        ids = [(p.pid, ANONYMOUS_ID, normalize_id(p.anon), p.anon_index)]
        if p.user is not None and p.email is not None:
            p.user_index = identity_index(vault, ws, USER_ID, p.user)
            p.user_subject = event_subject(vault, ws, p.user, p.anon, "")
            email = cast(str, normalize_email(p.email))
            ids.append((p.pid, USER_ID, normalize_id(p.user), p.user_index))
            ids.append((p.pid, EMAIL, email, vault.index(ws, EMAIL, email)))
        if p.member is not None:
            profiles.append({**base, "id": p.member, "canonical_id": p.pid, "merged_into": p.pid})
            p.member_anon_index = identity_index(vault, ws, ANONYMOUS_ID, p.member_anon)
            p.member_subject = event_subject(vault, ws, None, p.member_anon, "")
            ids.append((p.member, ANONYMOUS_ID, normalize_id(p.member_anon), p.member_anon_index))
            merges.append(
                {
                    "id": str(uuid.UUID(int=rnd.getrandbits(128), version=4)),
                    "workspace_id": ws,
                    "winner_id": p.pid,
                    "loser_id": p.member,
                    "reason": "shared identifier user_id",
                    "source_message_id": None,
                    "actor": "resolution",
                    "created_at": seen,
                    "undone_at": None,
                    "undone_by": None,
                }
            )
        for owner, kind, value, index in ids:
            identifiers.append(
                {
                    "workspace_id": ws,
                    "profile_id": owner,
                    "type": kind,
                    "value": index,
                    "first_seen": created,
                    "source_message_id": None,
                }
            )
            seals.append((owner, f"identifier:{kind}", value))
        traits: dict[str, Any] = {"country": p.country}
        if p.email is not None:
            first, last = p.email.split("@")[0].split(".")[:2]
            traits |= {"email": p.email, "firstName": first, "lastName": last}
            traits["plan"] = rnd.choice(["free", "plus", "gold"])
        for key, value in traits.items():
            row = {"workspace_id": ws, "key": key, "value": value, "observed_at": created}
            history.append({**row, "profile_id": p.pid, "source_message_id": None})
            current.append({**row, "canonical_id": p.pid})
            if is_personal_trait(key):  # sealed as seal_traits does
                trait_seals.append((len(history) - 1, (p.pid, trait_field(key), value)))
        if p.user is None:
            continue
        p.orders = rnd.randint(10, 30) if p.heavy else rnd.choice([0] * 7 + [1, 2, 3])
        for _ in range(p.orders):
            counters["order"] += 1
            placed = _at(rnd)
            lines = [
                (f"p-{rnd.randrange(5000):05d}", Decimal(rnd.randrange(500, 20000)) / 100)
                for _ in range(rnd.randint(1, 3))
            ]
            total = sum((price for _, price in lines), Decimal("0"))
            orders.append(
                {
                    "id": counters["order"],
                    "workspace_id": ws,
                    "order_id": f"ord-{counters['order']:09d}",
                    "profile_id": p.member if p.member and rnd.random() < 0.2 else p.pid,
                    "status": "completed",
                    "total": total,
                    "revenue": total,
                    "shipping": None,
                    "tax": None,
                    "discount": None,
                    "refunded": Decimal("0"),
                    "coupon": rnd.choice([None, None, "WELCOME10"]),
                    "currency": "EUR",
                    "channel": "web",
                    "source": "event",
                    "placed_at": placed,
                    "updated_at": placed,
                }
            )
            for product, price in lines:
                items.append(
                    {
                        "order_pk": counters["order"],
                        "workspace_id": ws,
                        "product_id": product,
                        "sku": product.upper(),
                        "name": f"Product {product}",
                        "category": "Shoes",
                        "price": price,
                        "quantity": rnd.randint(1, 2),
                    }
                )
        if rnd.random() < 0.05:
            counters["cart"] += 1
            carts.append(
                {
                    "workspace_id": ws,
                    "cart_id": f"cart-{counters['cart']:09d}",
                    "profile_id": p.pid,
                    "status": "open",
                    "items": [{"product_id": "p-00001", "quantity": 1, "price": "19.90"}],
                    "value": Decimal("19.90"),
                    "currency": "EUR",
                    "order_id": None,
                    "created_at": seen,
                    "updated_at": seen,
                }
            )
        if p.heavy or rnd.random() < 0.4:
            p.consent = True
            entries.append(
                ConsentEntry(
                    profile_id=p.pid,
                    purpose=PURPOSE,
                    channel="email",
                    state=rnd.choice(["granted", "granted", "denied", "withdrawn"]),
                    source="web_form",
                    occurred_at=created,
                    actor="bench",
                    proof={
                        "email": cast(str, normalize_email(p.email)),
                        "ip": f"203.0.113.{rnd.randrange(256)}",
                        "user_agent": rnd.choice(AGENTS),
                        "page_url": "https://shop.example/account/newsletter?ref=footer",
                    },
                )
            )
    # the keys of the events' subjects are made here, as sealing would make them (the event
    # workers only read the key store: one writer of each database at a time)
    subjects = [s for p in chunk for s in (p.user_subject, p.anon_subject, p.member_subject) if s]
    vault.keystore.data_keys(ws, subjects, create=True)
    tokens = vault.seal_many(ws, seals)
    for row, token in zip(identifiers, tokens, strict=True):
        row["sealed"] = token
    tokens = vault.seal_many(ws, [item for _, item in trait_seals])
    for (at, _), token in zip(trait_seals, tokens, strict=True):
        history[at]["value"] = token
        current[at]["value"] = token  # history and current rows were appended in step
    with db.write(durable=False) as session:
        conn = session.connection()
        _bulk(ProfileRow).run(conn, profiles)
        _bulk(IdentifierRow).run(conn, identifiers)
        _bulk(TraitHistoryRow).run(conn, history)
        _bulk(CurrentTraitRow).run(conn, current)
        for table, rows in ((MergeRow, merges), (OrderRow, orders), (OrderItemRow, items)):
            if rows:
                _bulk(table).run(conn, rows)
        if carts:
            session.execute(insert(CartRow), carts)
        if entries:
            append(session=session, workspace_id=ws, entries=entries)


_BULKS: dict[str, Bulk] = {}


def _bulk(table: Any) -> Bulk:
    name = table.__tablename__
    if name not in _BULKS:
        _BULKS[name] = Bulk(insert(cast(Table, table.__table__)))
    return _BULKS[name]


def _message(
    rnd: random.Random, message_id: str, user: str | None, anon: str, ts: datetime
) -> dict[str, Any]:
    """A Segment message as ingestion stores it (the sealed payload)."""
    stamp = ts.isoformat().replace("+00:00", "Z")
    received = (ts + timedelta(milliseconds=rnd.randrange(50, 900))).isoformat()
    msg: dict[str, Any] = {"messageId": message_id, "anonymousId": anon, "timestamp": stamp}
    if user is not None:
        msg["userId"] = user
    roll = rnd.random()
    if user is not None and roll < 0.05:
        msg["type"] = "identify"
        msg["traits"] = {"plan": rnd.choice(["free", "plus", "gold"])}
    elif roll < 0.6:
        name = rnd.choice(PAGES)
        msg |= {
            "type": "page",
            "name": name,
            "properties": {
                "path": f"/{name.lower()}",
                "url": f"https://shop.example/{name.lower()}?utm_source=newsletter",
                "referrer": "https://www.google.com/",
                "title": f"{name} | Shop",
            },
        }
    else:
        msg |= {
            "type": "track",
            "event": rnd.choice(TRACKS),
            "properties": {
                "product_id": f"p-{rnd.randrange(5000):05d}",
                "price": rnd.randrange(500, 20000) / 100,
                "currency": "EUR",
            },
        }
    msg["context"] = {
        "ip": f"198.51.100.{rnd.randrange(256)}",
        "userAgent": rnd.choice(AGENTS),
        "locale": "de-DE",
        "library": {"name": "analytics.js", "version": "5.2.0"},
    }
    msg |= {"integrations": {}, "receivedAt": received, "originalTimestamp": stamp}
    return msg


EVENT_CHUNK = 20_000


def _event_rows(
    vault: Vault, people: list[Person], owners: array[int], seed: int, k: int
) -> list[dict[str, Any]]:
    """The sealed rows of the events of ``owners`` (chunk ``k`` of the shuffled event list),
    drawn from the chunk's own random stream (so any process can make any chunk)."""
    rnd = random.Random(seed * 1_000_003 + k)
    rows, seals = [], []
    for n in owners:
        p = people[n]
        ts = _at(rnd)
        message_id = f"{rnd.getrandbits(128):032x}"
        if p.member is not None and rnd.random() < 0.2:  # the merged member's device
            profile_id, user, anon = p.member, None, cast(str, p.member_anon)
            user_index, anon_index, subject = None, p.member_anon_index, p.member_subject
        elif p.user is not None and rnd.random() < 0.6:  # signed in
            profile_id, user, anon = p.pid, p.user, p.anon
            user_index, anon_index, subject = p.user_index, p.anon_index, p.user_subject
        else:
            profile_id, user, anon = p.pid, None, p.anon
            user_index, anon_index, subject = None, p.anon_index, p.anon_subject
        msg = _message(rnd, message_id, user, anon, ts)
        seals.append((subject, PAYLOAD, msg))
        rows.append(
            {
                "workspace_id": WORKSPACE,
                "message_id": message_id,
                "type": msg["type"],
                "event": msg.get("event") or msg.get("name"),
                "user_id": user_index,
                "anonymous_id": anon_index,
                "profile_id": profile_id,
                "original_timestamp": ts,
                "sent_at": None,
                "received_at": ts + timedelta(seconds=1),
                "timestamp": ts,
            }
        )
    for row, token in zip(rows, vault.seal_many(WORKSPACE, seals), strict=True):
        row["payload"] = token
    return rows


# What a forked event worker inherits (people, the shuffled owners, the store's URL) and the
# vault it opens on the same key store (read only: every key exists before the events).
_SHARED: dict[str, Any] = {}


def _worker_start() -> None:
    _SHARED["db"] = open_database(settings(_SHARED["url"]))


def _worker_chunk(k: int, seed: int) -> list[dict[str, Any]]:
    owners = _SHARED["owners"][k * EVENT_CHUNK : (k + 1) * EVENT_CHUNK]
    return _event_rows(cast(Vault, _SHARED["db"].vault), _SHARED["people"], owners, seed, k)


def _build_events(
    db: Database,
    vault: Vault,
    url: str,
    people: list[Person],
    owners: array[int],
    seed: int,
    workers: int,
) -> Iterator[int]:
    """Insert the events of ``owners`` (person indexes, in id order), a chunk at a time, in
    order; yields how many were written after each chunk. With ``workers`` > 1 the rows are
    made and sealed by that many forked processes (a few chunks ahead, no more, so memory stays
    bounded) while this one inserts them: the build's slowest part split across the cores."""
    insert_events = _bulk(EventRow)
    chunks = range((len(owners) + EVENT_CHUNK - 1) // EVENT_CHUNK)

    def store(rows: list[dict[str, Any]]) -> int:
        with db.write(durable=False) as session:
            insert_events.run(session.connection(), rows)
        return len(rows)

    if workers <= 1:
        for k in chunks:
            part = owners[k * EVENT_CHUNK : (k + 1) * EVENT_CHUNK]
            yield store(_event_rows(vault, people, part, seed, k))
        return
    _SHARED.update(people=people, owners=owners, url=url)
    try:
        with multiprocessing.get_context("fork").Pool(workers, _worker_start) as pool:
            todo = iter(chunks)
            pending = deque(
                pool.apply_async(_worker_chunk, (k, seed)) for k in islice(todo, 2 * workers)
            )
            while pending:
                rows = pending.popleft().get()
                following = next(todo, None)
                if following is not None:
                    pending.append(pool.apply_async(_worker_chunk, (following, seed)))
                yield store(rows)
    finally:
        _SHARED.clear()


def build(
    path: Path,
    profiles: int,
    events: int,
    seed: int = 17,
    workers: int = 2,
    trained_versions: int = MODEL_VERSIONS,
) -> dict[str, Any]:
    """The store at ``path`` (and its key store beside it); returns what the runs need."""
    started = time.perf_counter()
    url = f"sqlite:///{path}"
    upgrade(url)
    db = open_database(settings(url), sqlite_synchronous="OFF")

    @event.listens_for(db.engine, "connect")
    def _big_cache(dbapi_conn: Any, _record: Any) -> None:  # random message ids: a big cache
        dbapi_conn.execute("PRAGMA cache_size=-1000000")

    vault = cast(Vault, db.vault)
    # every data key made stays unwrapped in memory for the build (the events need them again)
    keystore_module.CACHE_SIZE = max(keystore_module.CACHE_SIZE, 6 * profiles)
    keystore_module.CACHE_SECONDS = 24 * 3600.0
    rnd = random.Random(seed)
    with db.write() as session:
        tenancy.create_workspace(session=session, workspace_id=WORKSPACE, name="Bench Shop")
    people = plan_people(rnd, profiles, events)
    counters = {"order": 0, "cart": 0}
    chunk = 5000
    with Progress() as progress:
        task = progress.add_task("profiles, identifiers, traits, orders, consent", total=profiles)
        for start in range(0, profiles, chunk):
            _build_people(db, vault, rnd, people[start : start + chunk], counters)
            progress.advance(task, min(chunk, profiles - start))
        owners = array("I", (n for n, p in enumerate(people) for _ in range(p.events)))
        rnd.shuffle(owners)  # event ids interleave people, as arrival order does
        task = progress.add_task("events (sealed)", total=events)
        for written in _build_events(db, vault, url, people, owners, seed, workers):
            progress.advance(task, written)
    sealed = time.perf_counter()
    with db.write() as session:
        last = session.connection().exec_driver_sql("SELECT max(id) FROM events").scalar_one()
        session.add(IngestCursorRow(workspace_id=WORKSPACE, last_event_id=last, updated_at=T0))
    models = train_models(db, trained_versions)
    db.dispose()
    # typical: a customer with about the mean number of events, an order and a consent record
    target = events / profiles
    typical = [
        p.pid
        for p in people
        if p.orders and p.consent and not p.heavy and 0.8 * target <= p.events <= 1.2 * target
    ]
    heavy = [p.pid for p in people if p.heavy]
    rnd.shuffle(typical)
    rnd.shuffle(heavy)
    by_id = {p.pid: p.events for p in people}
    return {
        "profiles": profiles,
        "events": events,
        "seed": seed,
        "build_seconds": time.perf_counter() - started,
        "rows_seconds": sealed - started,
        "build_workers": workers,
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "models": models,
        "typical": {pid: by_id[pid] for pid in typical[:500]},  # in a random order
        "heavy": {pid: by_id[pid] for pid in heavy[:500]},
        "orders": counters["order"],
        "carts": counters["cart"],
    }


def train_models(db: Database, trained_versions: int = MODEL_VERSIONS) -> dict[str, Any]:
    """``MODEL_VERSIONS`` recommendation models, as a server's daily runs leave them: the first
    ``trained_versions`` trained through ``recommend.service.train`` on the built store (its
    purchases and the browsing of the whole span of its events: every customer who bought or
    viewed a product is in each version), the others stored as copies of the last trained one
    (the same artefact and manifest, the next version numbers, the newest active: a training
    at 1M profiles takes minutes, and an export or an erasure reads every version alike).
    Returns their sizes and training times."""
    days = min((datetime.now(UTC) - T0).days + 1, 3650)
    config = RecommendSettings(browsing_days=days, evaluate=False, keep_versions=MODEL_VERSIONS)
    trained: list[dict[str, Any]] = []
    for _ in range(max(1, min(trained_versions, MODEL_VERSIONS))):
        report = recommend.train(db, WORKSPACE, config)
        trained.append({"version": report.version, "seconds": report.seconds})
        print(f"  model version {report.version}: {sum(report.seconds.values()):.1f} s", flush=True)
    with db.write() as session:
        last = session.scalars(
            select(RecommendModelRow)
            .where(RecommendModelRow.workspace_id == WORKSPACE)
            .order_by(RecommendModelRow.version.desc())
        ).first()
        assert last is not None
        for version in range(last.version + 1, MODEL_VERSIONS + 1):
            last.active = False
            copied = last.id
            last = RecommendModelRow(
                id=str(uuid.uuid4()),
                workspace_id=WORKSPACE,
                version=version,
                revision=0,
                trained_at=last.trained_at + timedelta(days=1),
                as_of=last.as_of + timedelta(days=1),
                active=True,
                manifest={**last.manifest, "version": version},
                artefact=None,  # its arrays: the member rows copied below
            )
            session.add(last)
            session.flush()
            b = RecommendModelBlockRow  # its member rows too (the arrays of a version)
            session.execute(
                insert(b).from_select(
                    ["model_id", "member", "block", "workspace_id", "data"],
                    select(literal(last.id), b.member, b.block, b.workspace_id, b.data).where(
                        b.model_id == copied
                    ),
                )
            )
    with db.read() as session:
        stored = recommend.models(session=session, workspace_id=WORKSPACE)
        manifest = session.scalar(
            select(RecommendModelRow.manifest).where(RecommendModelRow.workspace_id == WORKSPACE)
        )
    assert manifest is not None
    return {
        "versions": len(stored),
        "users": manifest["extra"]["profile_ids"]["shape"][0],
        "items": manifest["extra"]["product_ids"]["shape"][0],
        "counts": stored[0]["counts"],
        "top_n": stored[0]["parameters"].get("top_n"),
        "artefact_bytes": [m["bytes"] for m in stored],
        "trained": len(trained),
        "train_seconds": [round(sum(t["seconds"].values()), 2) for t in trained],
        "browsing_days": days,
    }


CACHE_VERSION = "v2"  # v2: events sealed by worker processes, 5 recommendation model versions


def cache_path(cache: Path, profiles: int, events: int) -> Path:
    """The cached store of a size. The name carries ``CACHE_VERSION``: a store cached by an
    older build (no models) is never taken for the current one."""
    return cache / f"privacy-{CACHE_VERSION}-{profiles}-{events}.db"


def cached_store(
    cache: Path,
    profiles: int,
    events: int,
    workers: int = 2,
    trained_versions: int = MODEL_VERSIONS,
) -> tuple[Path, dict[str, Any]]:
    """The cached store of this size (built when missing) and its description."""
    path = cache_path(cache, profiles, events)
    meta_path = path.with_suffix(".json")
    if not (path.exists() and keys_path(path).exists() and meta_path.exists()):
        stem = path.stem
        partial = cache / f"{stem}.partial.db"
        for leftover in cache.glob(f"{stem}.partial*"):
            leftover.unlink()
        meta = build(partial, profiles, events, workers=workers, trained_versions=trained_versions)
        for f in (partial, keys_path(partial)):
            checkpoint(f)
        partial.rename(path)
        keys_path(partial).rename(keys_path(path))
        for leftover in cache.glob(f"{stem}.partial*"):
            leftover.unlink()
        meta_path.write_text(json.dumps(meta) + "\n")
    # a store cached by an older version gets the new indexes (sealing with the bench's keys)
    upgrade(f"sqlite:///{path}", settings=settings(f"sqlite:///{path}"))
    # the planner's statistics, as the server refreshes them at start and every six hours
    # (and the demo after seeding): Database.optimize()
    store = Database.from_url(f"sqlite:///{path}")
    try:
        store.optimize()
    finally:
        store.dispose()
    for f in (path, keys_path(path)):
        checkpoint(f)
    return path, json.loads(meta_path.read_text())


def copy_store(src: Path, dst: Path) -> None:
    """Copy the (checkpointed) data file and its key store, synced to the disk (else the first
    fsync of a measure, the purge's checkpoint, would write out the whole copy)."""
    for a, b in ((src, dst), (keys_path(src), keys_path(dst))):
        shutil.copyfile(a, b)
        fd = os.open(b, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def counts(path: Path) -> dict[str, int]:
    tables = [
        "profiles",
        "identifiers",
        "trait_history",
        "profile_traits",
        "profile_merges",
        "events",
        "orders",
        "order_items",
        "carts",
        "consent_records",
    ]
    with closing(sqlite3.connect(path)) as conn:
        out = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}
        out["unified_profiles"] = conn.execute(
            "SELECT count(*) FROM profiles WHERE merged_into IS NULL"
        ).fetchone()[0]
    with closing(sqlite3.connect(keys_path(path))) as conn:
        out["data_keys"] = conn.execute("SELECT count(*) FROM subject_keys").fetchone()[0]
    return out


# --- the measures -------------------------------------------------------------------------------


# The seconds the export and the erasure spend in the recommendation models (reading every
# stored version for the person; blanking them in every version), measured by wrapping the two
# functions of recommend.service that access_service and erasure_service call.
MODEL_SECONDS: dict[str, float] = {}
SOURCE = "recommendations"  # the source of a model's entry in the archive's computed data


def _timed(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    def timed(**kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return function(**kwargs)
        finally:
            MODEL_SECONDS[name] = MODEL_SECONDS.get(name, 0.0) + time.perf_counter() - start

    return timed


recommend.subject_data = _timed("subject_data", recommend.subject_data)
recommend.erase_subject = _timed("erase_subject", recommend.erase_subject)


def export(db: Database, pid: str) -> dict[str, Any]:
    """One access archive: collect + build_archive in a read unit of work."""
    MODEL_SECONDS.clear()
    start = time.perf_counter()
    with db.read() as session:
        data = collect(session=session, workspace_id=WORKSPACE, profile_id=pid)
        collected = time.perf_counter()
        archive = build_archive(data)
    end = time.perf_counter()
    return {
        "seconds": end - start,
        "collect_seconds": collected - start,
        "archive_seconds": end - collected,
        "models_seconds": MODEL_SECONDS.get("subject_data", 0.0),
        "model_entries": sum(
            1 for row in data.categories.get("computed", []) if row.get("source") == SOURCE
        ),
        "bytes": len(archive),
        "counts": {c: len(rows) for c, rows in data.categories.items()},
    }


def erasure(db: Database, pid: str) -> dict[str, Any]:
    """One erasure in a write unit of work (commit included), then the purge of the files."""
    MODEL_SECONDS.clear()
    start = time.perf_counter()
    with db.write() as session:
        done = erase(
            session=session,
            workspace_id=WORKSPACE,
            profile_id=pid,
            actor="bench:privacy",
            reason="benchmark",
            order_hold=ORDER_HOLD,
        )
    committed = time.perf_counter()
    db.purge_deleted()
    end = time.perf_counter()
    return {
        "seconds": committed - start,
        "purge_seconds": end - committed,
        "with_purge_seconds": end - start,
        "models_seconds": MODEL_SECONDS.get("erase_subject", 0.0),
        "erased": done.certificate["erased"],
        "keys_destroyed": done.certificate["keys_destroyed"],
    }


def _in(ids: list[str]) -> str:
    return ",".join("?" * len(ids))


def raw_export(path: Path, pid: str) -> dict[str, Any]:
    """The subject's rows read with plain sqlite3 cursors (no opening, no archive)."""
    start = time.perf_counter()
    conn = sqlite3.connect(path)
    ws = WORKSPACE
    members = [
        r[0]
        for r in conn.execute(
            "SELECT id FROM profiles WHERE workspace_id = ? AND canonical_id = ?", (ws, pid)
        )
    ]
    q = _in(members)
    rows = {
        "profiles": conn.execute(f"SELECT * FROM profiles WHERE id IN ({q})", members).fetchall(),
        "identifiers": conn.execute(
            f"SELECT * FROM identifiers WHERE profile_id IN ({q})", members
        ).fetchall(),
        "traits": conn.execute(
            "SELECT * FROM profile_traits WHERE canonical_id = ?", (pid,)
        ).fetchall(),
        "events": conn.execute(
            f"SELECT * FROM events WHERE profile_id IN ({q}) ORDER BY timestamp DESC, id DESC",
            members,
        ).fetchall(),
        "orders": conn.execute(
            f"SELECT * FROM orders WHERE profile_id IN ({q})", members
        ).fetchall(),
        "carts": conn.execute(f"SELECT * FROM carts WHERE profile_id IN ({q})", members).fetchall(),
        "consent": conn.execute(
            f"SELECT * FROM consent_records WHERE workspace_id = ? AND profile_id IN ({q})",
            [ws, *members],
        ).fetchall(),
        "merges": conn.execute(
            f"SELECT * FROM profile_merges WHERE winner_id IN ({q}) OR loser_id IN ({q})",
            members * 2,
        ).fetchall(),
    }
    order_pks = [r[0] for r in rows["orders"]]
    rows["order_items"] = conn.execute(
        f"SELECT * FROM order_items WHERE order_pk IN ({_in(order_pks)})", order_pks
    ).fetchall()
    conn.close()
    return {"seconds": time.perf_counter() - start, "rows": {k: len(v) for k, v in rows.items()}}


def raw_erasure(path: Path, pid: str) -> dict[str, Any]:
    """The subject's rows deleted (orders and consent proofs kept, unlinked) with plain sqlite3
    statements in one transaction, as durable as consentry's; then the WAL truncated."""
    start = time.perf_counter()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA secure_delete=ON")
    conn.execute("BEGIN IMMEDIATE")
    members = [
        r[0]
        for r in conn.execute(
            "SELECT id FROM profiles WHERE workspace_id = ? AND canonical_id = ?",
            (WORKSPACE, pid),
        )
    ]
    q = _in(members)
    deleted = {}
    for name, sql, params in (
        ("events", f"DELETE FROM events WHERE profile_id IN ({q})", members),
        ("trait_history", f"DELETE FROM trait_history WHERE profile_id IN ({q})", members),
        ("current_traits", f"DELETE FROM profile_traits WHERE canonical_id IN ({q})", members),
        ("identifiers", f"DELETE FROM identifiers WHERE profile_id IN ({q})", members),
        (
            "merges",
            f"DELETE FROM profile_merges WHERE winner_id IN ({q}) OR loser_id IN ({q})",
            members * 2,
        ),
        ("carts", f"DELETE FROM carts WHERE profile_id IN ({q})", members),
        (
            "orders",
            f"UPDATE orders SET profile_id = NULL, coupon = NULL WHERE profile_id IN ({q})",
            members,
        ),
        (
            "consent_states",
            f"DELETE FROM consent_state WHERE workspace_id = ? AND profile_id IN ({q})",
            [WORKSPACE, *members],
        ),
        (
            "consent_proofs",
            'UPDATE consent_records SET proof = \'{"erased_at": "now"}\' '
            f"WHERE workspace_id = ? AND profile_id IN ({q}) AND proof IS NOT NULL",
            [WORKSPACE, *members],
        ),
        ("profiles", f"DELETE FROM profiles WHERE id IN ({q})", members),
    ):
        deleted[name] = conn.execute(sql, params).rowcount
    conn.execute("COMMIT")
    committed = time.perf_counter()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    end = time.perf_counter()
    return {
        "seconds": committed - start,
        "with_purge_seconds": end - start,
        "rows": deleted,
    }


# --- profiling ----------------------------------------------------------------------------------


class StatementRecorder:
    """Every SQL statement an engine runs, with its parameters (as the driver gets them)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.statements: list[tuple[str, Any, bool]] = []
        event.listen(engine, "before_cursor_execute", self._record)

    def close(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._record)

    def _record(
        self, _conn: Any, _cursor: Any, statement: str, params: Any, _ctx: Any, many: bool
    ) -> None:
        self.statements.append((statement, params, many))


def _shape(statement: str) -> str:
    """A statement with its IN lists folded, to group its calls."""
    return re.sub(r"\(\?(, \?)+\)", "(?...)", re.sub(r"\s+", " ", statement))


def replay(path: Path, statements: list[tuple[str, Any, bool]]) -> list[dict[str, Any]]:
    """Run ``statements`` again on ``path`` (a copy in the state before them) with plain sqlite3,
    each timed to its last row and with its query plan, in one transaction rolled back at the
    end: where the time of a call went, statement by statement (a SELECT does most of its work
    while its rows are fetched, which SQLAlchemy's events do not see)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA secure_delete=ON")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("BEGIN")
    shapes: dict[str, dict[str, Any]] = {}
    try:
        for statement, params, many in statements:
            if not statement.lstrip().upper().startswith(("SELECT", "INSERT", "UPDATE", "DELETE")):
                continue
            one = params[0] if many and params else params
            plan = [r[-1] for r in conn.execute("EXPLAIN QUERY PLAN " + statement, one or ())]
            start = time.perf_counter()
            if many:
                conn.executemany(statement, params)
            else:
                conn.execute(statement, params or ()).fetchall()
            elapsed = time.perf_counter() - start
            entry = shapes.setdefault(
                _shape(statement), {"ms": 0.0, "calls": 0, "slowest_ms": 0.0, "plan": plan}
            )
            entry["ms"] += 1000 * elapsed
            entry["calls"] += 1
            if 1000 * elapsed >= entry["slowest_ms"]:
                entry["slowest_ms"], entry["plan"] = 1000 * elapsed, plan
    finally:
        conn.execute("ROLLBACK")
        conn.close()
    ranked = sorted(shapes.items(), key=lambda kv: -kv[1]["ms"])
    return [{"sql": sql, **entry} for sql, entry in ranked]


def profiled(db: Database, fresh: Path, call: Callable[[], Any]) -> dict[str, Any]:
    """cProfile's top functions of ``call``, and its statements replayed on ``fresh`` (a copy
    of the store as it was before: an export changes nothing, an erasure is rolled back)."""
    recorder = StatementRecorder(db.engine)
    profiler = cProfile.Profile()
    start = time.perf_counter()
    try:
        profiler.runcall(call)
    finally:
        recorder.close()
    elapsed = time.perf_counter() - start
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(20)
    return {
        "seconds": elapsed,
        "statements": replay(fresh, recorder.statements)[:8],
        "cprofile": text.getvalue(),
    }


# --- encryption on ingestion --------------------------------------------------------------------


def _ab_summary(stages: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for backend, workloads in stages["results"].items():
        for workload, pair in workloads.items():
            off, on = pair["baseline"], pair["current"]
            total_off = off["parse_us"] + off["store_us"] + off["process_us"]
            total_on = on["parse_us"] + on["store_us"] + on["process_us"]
            out[f"{backend}/{workload}"] = {
                "off_us_per_event": total_off,
                "on_us_per_event": total_on,
                "off_events_per_s": 1e6 / total_off,
                "on_events_per_s": 1e6 / total_on,
                "time_ratio_on_off": total_on / total_off,
                "throughput_ratio_on_off": total_off / total_on,
                "store_ratio_on_off": on["store_us"] / off["store_us"],
                "process_ratio_on_off": on["process_us"] / off["process_us"],
                "same_rows_written": off["fingerprint"] == on["fingerprint"],
            }
    return out


def encryption_cost(events: int, repeat: int) -> dict[str, Any]:
    """ingest_stages.py A/B against the commit before sealing, run now; else the stored file.
    Its temp folder (the baseline's sources, the stores) is made in one of ours, removed after."""
    folder = Path(tempfile.mkdtemp(prefix="privacy-ingest-"))
    out = folder / "ingest_stages.json"
    command = [
        sys.executable,
        str(ROOT / "bench/ingest_stages.py"),
        "--baseline",
        BASELINE_REF,
        "--events",
        str(events),
        "--repeat",
        str(repeat),
        "--no-postgres",
        "--out",
        str(out),
    ]
    print(f"encryption on ingestion: {' '.join(command[1:])}", flush=True)
    try:
        subprocess.run(command, check=True, cwd=ROOT, env={**os.environ, "TMPDIR": str(folder)})
        stages = json.loads(out.read_text())
        source = {
            "source": "measured in this run: bench/ingest_stages.py "
            f"--baseline {BASELINE_REF} --events {events} --repeat {repeat} --no-postgres",
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    except (subprocess.CalledProcessError, OSError, ValueError) as exc:
        print(f"  the A/B run failed ({exc}); reporting {SEALING_RESULT} instead", flush=True)
        stages = json.loads((ROOT / SEALING_RESULT).read_text())
        dated = subprocess.run(
            ["git", "-C", str(ROOT), "log", "-1", "--format=%cI", "--", SEALING_RESULT],
            capture_output=True,
            text=True,
        ).stdout.strip()
        source = {
            "source": f"NOT measured in this run: taken from {SEALING_RESULT} "
            f"(committed {dated or 'date unknown'})",
            "measured_at": dated or None,
        }
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {
        **source,
        "baseline": f"{stages['baseline']} (before sealing: encryption off)",
        "events": stages["events"],
        "repeat": stages["repeat"],
        "cores": stages["cores"],
        "by_workload": _ab_summary(stages),
    }


# --- the run ------------------------------------------------------------------------------------


def _stats(values: list[float]) -> dict[str, float]:
    return {
        "median_ms": 1000 * statistics.median(values),
        "min_ms": 1000 * min(values),
        "max_ms": 1000 * max(values),
    }


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians (min, max) of one kind of subject's runs, raw baselines, ratios, targets."""
    exports = [r["export"]["seconds"] for r in runs]
    raw_exports = [r["raw_export"]["seconds"] for r in runs]
    erases = [r["erase"]["seconds"] for r in runs]
    erase_purge = [r["erase"]["with_purge_seconds"] for r in runs]
    raw_erases = [r["raw_erase"]["seconds"] for r in runs]
    raw_purge = [r["raw_erase"]["with_purge_seconds"] for r in runs]
    return {
        "events_per_subject": [r["events"] for r in runs],
        "members_per_subject": [r["members"] for r in runs],
        "export": _stats(exports),
        "export_collect": _stats([r["export"]["collect_seconds"] for r in runs]),
        "export_archive": _stats([r["export"]["archive_seconds"] for r in runs]),
        "export_models": _stats([r["export"]["models_seconds"] for r in runs]),
        "export_archive_bytes": statistics.median(r["export"]["bytes"] for r in runs),
        "model_entries_exported": [r["export"]["model_entries"] for r in runs],
        "raw_export": _stats(raw_exports),
        "export_ratio_to_raw": statistics.median(exports) / statistics.median(raw_exports),
        "erase": _stats(erases),
        "erase_with_purge": _stats(erase_purge),
        "purge": _stats([r["erase"]["purge_seconds"] for r in runs]),
        "erase_models": _stats([r["erase"]["models_seconds"] for r in runs]),
        "model_entries_erased": [r["erase"]["erased"].get("recommendations", 0) for r in runs],
        "raw_erase": _stats(raw_erases),
        "raw_erase_with_checkpoint": _stats(raw_purge),
        "erase_ratio_to_raw": statistics.median(erases) / statistics.median(raw_erases),
        "erase_with_purge_ratio_to_raw": statistics.median(erase_purge)
        / statistics.median(raw_purge),
        "export_target_met": statistics.median(exports) < TARGET_EXPORT_S,
        "erase_target_met": statistics.median(erase_purge) < TARGET_ERASE_S,
        "last_certificate": {
            "erased": runs[-1]["erase"]["erased"],
            "keys_destroyed": runs[-1]["erase"]["keys_destroyed"],
        },
        "runs": [
            {
                "events": r["events"],
                "export_ms": round(1000 * r["export"]["seconds"], 1),
                "raw_export_ms": round(1000 * r["raw_export"]["seconds"], 2),
                "erase_ms": round(1000 * r["erase"]["seconds"], 1),
                "purge_ms": round(1000 * r["erase"]["purge_seconds"], 1),
                "raw_erase_ms": round(1000 * r["raw_erase"]["seconds"], 2),
            }
            for r in runs
        ],
    }


def measure_subject(
    db: Database,
    path: Path,
    raw_path: Path,
    pid: str,
    n_events: int,
    raw_first: bool,
    raw_other: tuple[str, int] | None = None,
) -> dict[str, Any]:
    """Export then erase ``pid`` in our store, and the same on the raw store (``raw_other``:
    the raw erasure takes that subject of the same kind instead, when the raw store is ours:
    measured in place)."""
    if raw_first:
        raw = raw_export(path, pid)
        ours = export(db, pid)
    else:
        ours = export(db, pid)
        raw = raw_export(path, pid)
    assert ours["counts"]["events"] == raw["rows"]["events"] == n_events, (ours, raw, n_events)
    gone = erasure(db, pid)
    raw_pid, raw_n = raw_other or (pid, n_events)
    raw_gone = raw_erasure(raw_path, raw_pid)
    assert gone["erased"]["events"] == n_events and raw_gone["rows"]["events"] == raw_n
    return {
        "events": n_events,
        "export": ours,
        "raw_export": raw,
        "erase": gone,
        "raw_erase": raw_gone,
        "members": raw["rows"]["profiles"],
    }


def warm_up(db: Database, pid: str) -> None:
    """Export and erase a spare subject, not measured: a server's engine has its statements
    compiled and its connections open before the request that is timed."""
    export(db, pid)
    erasure(db, pid)


def _ms(stat: dict[str, float]) -> str:
    return f"{stat['median_ms']:8.1f} ms (min {stat['min_ms']:.1f}, max {stat['max_ms']:.1f})"


def member_counts(path: Path, pids: list[str]) -> dict[str, int]:
    """How many profiles each unified profile has."""
    with closing(sqlite3.connect(path)) as conn:
        return {
            pid: conn.execute(
                "SELECT count(*) FROM profiles WHERE workspace_id = ? AND canonical_id = ?",
                (WORKSPACE, pid),
            ).fetchone()[0]
            for pid in pids
        }


KINDS = {
    "typical": "a customer with about the mean number of events, an order and a consent record",
    "merged": "the same, with a second profile merged in (10% of people)",
    "heavy": "one of the 0.1% with 30 to 100 times the mean number of events, orders, consent",
}


def subject_pools(path: Path, meta: dict[str, Any]) -> dict[str, list[tuple[str, int]]]:
    """Candidates of each kind, in the build's random order."""
    gone = set(meta.get("consumed", []))  # erased by an --in-place run
    typical = [(pid, n) for pid, n in meta["typical"].items() if pid not in gone]
    heavy = [(pid, n) for pid, n in meta["heavy"].items() if pid not in gone]
    members = member_counts(path, [pid for pid, _ in typical + heavy])
    return {
        "typical": [(pid, n) for pid, n in typical if members[pid] == 1],
        "merged": [(pid, n) for pid, n in typical if members[pid] > 1],
        "heavy": [(pid, n) for pid, n in heavy if members[pid] == 1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Access export, erasure and encryption cost.")
    parser.add_argument("--profiles", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--ingest-events", type=int, default=4000, help="per ingest A/B run")
    parser.add_argument("--ingest-repeat", type=int, default=3)
    parser.add_argument("--no-ingest", action="store_true", help="skip the encryption A/B")
    parser.add_argument(
        "--profile", action="store_true", help="cProfile and SQL plans of one more of each kind"
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="processes sealing the events of a build"
    )
    parser.add_argument(
        "--trained-versions",
        type=int,
        default=MODEL_VERSIONS,
        help=f"of the {MODEL_VERSIONS} model versions of a build, how many are trained (the "
        "others are copies of the last trained one)",
    )
    parser.add_argument(
        "--in-place",
        action="store_true",
        help="measure on the cached store itself, not on copies (a big store's copies do not "
        "fit the disk): the subjects erased are recorded beside it and never picked again",
    )
    parser.add_argument("--out", default="bench/results/privacy.json")
    args = parser.parse_args()
    if args.in_place and args.profile:
        raise SystemExit("--profile replays on a fresh copy: not with --in-place")
    load_before = os.getloadavg()
    cache = ROOT / "bench/.cache"
    cache.mkdir(parents=True, exist_ok=True)
    path, meta = cached_store(
        cache, args.profiles, args.events, args.workers, args.trained_versions
    )
    sizes = counts(path)
    pools = subject_pools(path, meta)
    wanted = args.repeat + int(args.profile)
    if len(pools["typical"]) < 2 * wanted or len(pools["heavy"]) < wanted:
        raise SystemExit(f"this size has too few subjects for {wanted} runs; use fewer")
    kinds = [k for k in KINDS if len(pools[k]) >= wanted * (2 if args.in_place else 1)]
    print(
        f"store {path.relative_to(ROOT)}: {sizes['unified_profiles']:,} unified profiles, "
        f"{sizes['events']:,} events, {sizes['data_keys']:,} data keys "
        f"(built in {meta['build_seconds']:.0f} s on {meta['built_at']})",
        flush=True,
    )
    work = Path(tempfile.mkdtemp(prefix="privacy-runs-", dir=cache))
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    profile: dict[str, Any] = {}
    spare = pools["typical"][::-1]  # warm-up subjects, from the other end of the pool
    meta_path = path.with_suffix(".json")

    def consumed(*pids: str) -> None:  # --in-place: erased in the cached store, never again
        if args.in_place:
            meta["consumed"] = [*meta.get("consumed", []), *pids]
            meta_path.write_text(json.dumps(meta) + "\n")

    try:
        raw_path = path if args.in_place else work / "raw.db"
        if not args.in_place:
            copy_store(path, raw_path)  # the raw erasures: distinct subjects, one copy for all
        with Progress() as progress:
            task = progress.add_task("export + erase (ours and raw)", total=args.repeat)
            for i in range(args.repeat):
                copy = path if args.in_place else work / f"run{i}.db"
                if not args.in_place:
                    copy_store(path, copy)
                db = open_database(settings(f"sqlite:///{copy}"))
                try:
                    consumed(spare[i][0])
                    warm_up(db, spare[i][0])
                    for kind in kinds:
                        pid, n = pools[kind][i]
                        other = pools[kind][wanted + i] if args.in_place else None
                        consumed(pid, *([other[0]] if other else []))
                        r = measure_subject(
                            db, copy, raw_path, pid, n, raw_first=bool(i % 2), raw_other=other
                        )
                        runs[kind].append(r)
                        progress.console.print(
                            f"run {i + 1} {kind:<7} {n:4d} events {r['members']} profile(s): "
                            f"export {1000 * r['export']['seconds']:7.1f} ms (raw "
                            f"{1000 * r['raw_export']['seconds']:.2f}), erase "
                            f"{1000 * r['erase']['seconds']:7.1f} ms + purge "
                            f"{1000 * r['erase']['purge_seconds']:.1f} (raw "
                            f"{1000 * r['raw_erase']['seconds']:.2f})",
                            soft_wrap=True,
                        )
                finally:
                    db.dispose()
                if not args.in_place:
                    for f in (copy, keys_path(copy)):
                        f.unlink()
                progress.advance(task)
        if args.profile:
            copy, fresh = work / "profile.db", work / "replay.db"
            copy_store(path, copy)
            copy_store(path, fresh)
            db = open_database(settings(f"sqlite:///{copy}"))
            try:
                warm_up(db, spare[args.repeat][0])
                for kind in kinds:
                    pid, n = pools[kind][args.repeat]
                    profile[kind] = {
                        "events": n,
                        "export": profiled(db, fresh, lambda pid=pid: export(db, pid)),
                        "erase": profiled(db, fresh, lambda pid=pid: erasure(db, pid)),
                    }
            finally:
                db.dispose()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    result: dict[str, Any] = {
        "benchmark": "privacy",
        "cores": os.cpu_count(),
        "profiles": args.profiles,
        "events": args.events,
        "store": sizes,
        "store_build_seconds": meta["build_seconds"],
        "store_build_workers": meta.get("build_workers", 1),
        "store_rows_seconds": meta.get("rows_seconds"),
        "store_built_at": meta["built_at"],
        "models": meta.get("models"),
        "measured_in_place": args.in_place,
        "load_average": {
            "before": [round(x, 2) for x in load_before],
            "after": [round(x, 2) for x in os.getloadavg()],
        },
        "repeat": args.repeat,
        "targets": {"export_seconds": TARGET_EXPORT_S, "erase_seconds": TARGET_ERASE_S},
        "subjects": {kind: {"who": KINDS[kind], **summarise(r)} for kind, r in runs.items()},
    }
    if profile:
        result["profile"] = {
            kind: {
                "events": p["events"],
                **{
                    k: {"seconds": p[k]["seconds"], "statements": p[k]["statements"]}
                    for k in ("export", "erase")
                },
            }
            for kind, p in profile.items()
        }
    if not args.no_ingest:
        result["encryption_on_ingestion"] = encryption_cost(args.ingest_events, args.ingest_repeat)
    out = ROOT / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    report(result)
    shown = out.resolve().relative_to(ROOT) if out.resolve().is_relative_to(ROOT) else out
    print(f"written to {shown}")


def report(result: dict[str, Any]) -> None:
    load = result["load_average"]
    print(
        f"\ncores={result['cores']} profiles={result['profiles']:,} "
        f"events={result['events']:,} (median of {result['repeat']}, distinct subjects each run"
        f"{', in place' if result['measured_in_place'] else ''}); load average "
        f"{' '.join(map(str, load['before']))} before, {' '.join(map(str, load['after']))} after"
    )
    models = result.get("models")
    if models:
        print(
            f"recommendation models: {models['versions']} versions of {models['users']:,} "
            f"customers x {models['items']:,} products (top {models['top_n']}), "
            f"{statistics.median(models['artefact_bytes']) / 1e6:.1f} MB each; "
            f"{models.get('trained', models['versions'])} trained, in "
            f"{', '.join(f'{t:.1f}' for t in models['train_seconds'])} s"
        )
    for kind, s in result["subjects"].items():
        sizes = ", ".join(str(n) for n in s["events_per_subject"])
        print(f"{kind} subject: {s['who']} ({sizes} events):")
        print(
            f"  access export  {_ms(s['export'])}  target < {TARGET_EXPORT_S:.0f} s: "
            f"{'PASS' if s['export_target_met'] else 'FAIL'}"
        )
        print(
            f"    collect {s['export_collect']['median_ms']:.1f} ms + archive "
            f"{s['export_archive']['median_ms']:.1f} ms, {s['export_archive_bytes']:,.0f} B; "
            f"models {s['export_models']['median_ms']:.1f} ms of it "
            f"({'/'.join(map(str, s['model_entries_exported']))} model entries)"
        )
        print(f"    raw sqlite3 read {_ms(s['raw_export'])}  ratio {s['export_ratio_to_raw']:.0f}x")
        print(
            f"  erasure+purge  {_ms(s['erase_with_purge'])}  target < {TARGET_ERASE_S:.0f} s: "
            f"{'PASS' if s['erase_target_met'] else 'FAIL'}"
        )
        print(
            f"    erase (commit) {_ms(s['erase'])}, purge {s['purge']['median_ms']:.1f} ms; "
            f"models {s['erase_models']['median_ms']:.1f} ms of it "
            f"({'/'.join(map(str, s['model_entries_erased']))} model entries blanked)"
        )
        print(
            f"    raw sqlite3 delete {_ms(s['raw_erase'])}, with checkpoint "
            f"{s['raw_erase_with_checkpoint']['median_ms']:.1f} ms; ratio "
            f"{s['erase_ratio_to_raw']:.0f}x ({s['erase_with_purge_ratio_to_raw']:.0f}x with "
            "the purge)"
        )
    for kind, p in result.get("profile", {}).items():
        for k in ("export", "erase"):
            print(
                f"\nprofile: {k} of one more {kind} subject ({p['events']} events), "
                f"{1000 * p[k]['seconds']:.0f} ms under cProfile; its statements replayed with "
                "sqlite3, slowest first:"
            )
            for st in p[k]["statements"][:6]:
                print(f"  {st['ms']:8.1f} ms {st['calls']:3d}x  {st['sql'][:160]}")
                print(f"                     plan: {' | '.join(st['plan'])[:150]}")
    if "encryption_on_ingestion" in result:
        enc = result["encryption_on_ingestion"]
        print(f"\nencryption on ingestion ({enc['source']}; baseline {enc['baseline']}):")
        for workload, w in enc["by_workload"].items():
            print(
                f"  {workload:<13} off {w['off_us_per_event']:6.1f} µs/event "
                f"({w['off_events_per_s']:,.0f}/s), on {w['on_us_per_event']:6.1f} µs/event "
                f"({w['on_events_per_s']:,.0f}/s): {w['time_ratio_on_off']:.2f}x the time, "
                f"throughput {100 * w['throughput_ratio_on_off']:.0f}% (store "
                f"{w['store_ratio_on_off']:.2f}x, process {w['process_ratio_on_off']:.2f}x)"
            )


if __name__ == "__main__":
    main()

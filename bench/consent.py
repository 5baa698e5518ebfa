"""Consent benchmark: the policy's decisions, one at a time and over a whole audience.

Builds (once, cached in bench/.cache/) an SQLite shop of ``--subjects`` unified profiles — some
merged from two members, countries spread over opt-in, opt-out and unknown regimes — with
consent records appended through the real ledger for part of them. Then measures, on that store:

- ``can_use``: single decisions per second in-process (random subjects, one read session);
- ``can_use_many``: one call over every subject (the audience form), seconds and subjects/s;
- the raw store: the same rows (profiles, the purpose's consent states, the country traits)
  read with plain ``sqlite3`` cursors — the floor no policy can beat — and the ratio to it;
- with ``--preference-center``, the page latency of ``GET /p/{token}`` under concurrent load.

With ``--backend postgresql`` the same shop (the cached SQLite file's rows: profiles, country
traits, consent states) is copied with ``COPY`` into a throwaway PostgreSQL server
(``tests.support.postgres``) and measured there; the raw read then uses a plain psycopg cursor.

Prints the figures with the machine's core count, load average and backend, and writes
bench/results/consent.json (``consent_postgresql.json`` with ``--backend postgresql``).

    .venv/bin/python bench/consent.py [--subjects 1000000] [--repeat 3] [--preference-center]
        [--backend sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rich.progress import Progress  # noqa: E402
from sqlalchemy import insert  # noqa: E402

from consentry.config import Settings  # noqa: E402
from consentry.consent import service as consent  # noqa: E402
from consentry.consent.ledger import append  # noqa: E402
from consentry.consent.models import ConsentEntry  # noqa: E402
from consentry.migrations import upgrade  # noqa: E402
from consentry.platform import tenancy  # noqa: E402
from consentry.platform.db import Database, utcnow  # noqa: E402
from consentry.profiles.tables import CurrentTraitRow, ProfileRow  # noqa: E402
from consentry.stores import open_database  # noqa: E402

WORKSPACE = "bench-consent"
PURPOSE = "marketing.communications.email"
CHANNEL = "email"
COUNTRIES = ["DE", "FR", "US", "US", "GB", "BR", None]
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def build(path: Path, subjects: int, seed: int = 11) -> None:
    """Profiles, countries and consent records for ``subjects`` unified profiles."""
    url = f"sqlite:///{path}"
    upgrade(url)
    db = open_database(Settings(environment="test", database_url=url), sqlite_synchronous="OFF")
    rnd = random.Random(seed)
    with db.write() as session:
        tenancy.create_workspace(session=session, workspace_id=WORKSPACE)
    chunk = 20_000
    with Progress() as progress:
        task = progress.add_task("building the shop", total=subjects)
        for start in range(0, subjects, chunk):
            profiles, traits, entries = [], [], []
            for _ in range(min(chunk, subjects - start)):
                canonical = str(uuid.UUID(int=rnd.getrandbits(128)))
                seen = T0 + timedelta(minutes=rnd.randrange(500_000))
                row = {"workspace_id": WORKSPACE, "created_at": seen, "first_seen": seen}
                profiles.append(
                    {
                        **row,
                        "id": canonical,
                        "canonical_id": canonical,
                        "merged_into": None,
                        "last_seen": seen,
                    }
                )
                if rnd.random() < 0.1:  # a second member, merged into the first
                    member = str(uuid.UUID(int=rnd.getrandbits(128)))
                    profiles.append(
                        {
                            **row,
                            "id": member,
                            "canonical_id": canonical,
                            "merged_into": canonical,
                            "last_seen": seen,
                        }
                    )
                if (country := rnd.choice(COUNTRIES)) is not None:
                    traits.append(
                        {
                            "canonical_id": canonical,
                            "key": "country",
                            "workspace_id": WORKSPACE,
                            "value": country,
                            "observed_at": seen,
                        }
                    )
                if rnd.random() < 0.4:
                    state = rnd.choice(["granted", "granted", "denied", "withdrawn"])
                    entries.append(
                        ConsentEntry(
                            profile_id=canonical,
                            purpose=PURPOSE,
                            channel=CHANNEL,
                            state=state,
                            legal_basis="consent",
                            source="web_form",
                            notice_version=None,
                            occurred_at=seen,
                            actor="bench",
                            expires_at=None,
                            proof=None,
                        )
                    )
            with db.write() as session:
                session.execute(insert(ProfileRow), profiles)
                if traits:
                    session.execute(insert(CurrentTraitRow), traits)
                append(session=session, workspace_id=WORKSPACE, entries=entries)
            progress.advance(task, min(chunk, subjects - start))
    db.dispose()


# the tables a decision reads (and the workspace they belong to), copied in this order
COPIED = ("workspaces", "profiles", "profile_traits", "consent_state")


def copy_to_postgresql(path: Path, url: str) -> None:
    """The SQLite shop's rows, copied with COPY into the (migrated) PostgreSQL store ``url``."""
    import psycopg

    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    lite = sqlite3.connect(path)
    with psycopg.connect(dsn) as pg, pg.cursor() as cursor:
        cursor.execute("SET TIME ZONE 'UTC'")  # SQLite's timestamps are naive UTC text
        for table in COPIED:
            columns = [
                r[1] for r in lite.execute(f"PRAGMA table_info({table})")
            ]  # the names are the schema's, not input
            names = ", ".join(f'"{c}"' for c in columns)
            rows = lite.execute(f"SELECT {names} FROM {table}")
            with cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                while part := rows.fetchmany(50_000):
                    for row in part:
                        copy.write_row(row)
        pg.commit()
        pg.autocommit = True
        cursor.execute("VACUUM ANALYZE")
    lite.close()


def canonical_ids(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [r[0] for r in conn.execute("SELECT id FROM profiles WHERE id = canonical_id")]


def raw_read(path: Path, url: str) -> float:
    """Seconds to read what an audience decision needs with the plain driver: ``sqlite3`` on
    the shop at ``path``, or psycopg on the PostgreSQL store ``url``."""
    start = time.perf_counter()
    conn: Any
    if url.startswith("sqlite"):
        conn, mark = sqlite3.connect(path), "?"
    else:
        import psycopg

        conn, mark = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")), "%s"
    try:
        owner = dict(
            conn.execute(
                f"SELECT id, canonical_id FROM profiles WHERE workspace_id = {mark}", (WORKSPACE,)
            ).fetchall()
        )
        states = conn.execute(
            "SELECT profile_id, state, occurred_at, expires_at FROM consent_state "
            f"WHERE workspace_id = {mark} AND purpose = {mark} AND channel IN ({mark}, 'any')",
            (WORKSPACE, PURPOSE, CHANNEL),
        ).fetchall()
        countries = conn.execute(
            "SELECT canonical_id, value FROM profile_traits "
            f"WHERE workspace_id = {mark} AND key = 'country'",
            (WORKSPACE,),
        ).fetchall()
    finally:
        conn.close()
    assert owner and states and countries
    return time.perf_counter() - start


def single_decisions(db: Database, ids: list[str], n: int = 3000) -> float:
    """can_use decisions per second for random subjects."""
    rnd = random.Random(5)
    sample = [rnd.choice(ids) for _ in range(n)]
    with db.read() as session:
        start = time.perf_counter()
        for pid in sample:
            consent.can_use(
                session=session,
                workspace_id=WORKSPACE,
                profile_id=pid,
                purpose=PURPOSE,
                channel=CHANNEL,
            )
        return n / (time.perf_counter() - start)


def audience(db: Database, ids: list[str]) -> tuple[float, dict[str, int]]:
    """Seconds for one can_use_many over every subject, and how the decisions fell."""
    with db.read() as session:
        start = time.perf_counter()
        decisions = consent.can_use_many(
            session=session,
            workspace_id=WORKSPACE,
            profile_ids=ids,
            purpose=PURPOSE,
            channel=CHANNEL,
        )
        elapsed = time.perf_counter() - start
    reasons: dict[str, int] = {}
    for d in decisions.values():
        reasons[d.reason] = reasons.get(d.reason, 0) + 1
    assert len(decisions) == len(ids)
    return elapsed, reasons


def preference_center(path: Path, clients: int = 8, requests: int = 400) -> dict[str, float]:
    """p50/p99 of GET /p/{token} against a live server, ``clients`` concurrent connections."""
    import http.client
    import subprocess
    import threading

    from tests.support.postgres import free_port

    from consentry.config import Settings
    from consentry.consent import links

    ids = canonical_ids(path)[:requests]
    secret = Settings().secret_key
    key = links.link_key(secret, WORKSPACE)
    tokens = [
        links.sign(
            key, workspace_id=WORKSPACE, profile_id=pid, kind=links.PREFERENCES, now=utcnow()
        )
        for pid in ids
    ]
    port = free_port()
    env = {**os.environ, "CONSENTRY_DATABASE_URL": f"sqlite:///{path}"}
    server = subprocess.Popen(
        [str(ROOT / ".venv/bin/consentry"), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                conn.request("GET", "/health")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        latencies: list[float] = []
        lock = threading.Lock()

        def worker(part: list[str]) -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            for token in part:
                start = time.perf_counter()
                conn.request("GET", f"/p/{token}")
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    raise RuntimeError(f"preference page answered {response.status}")
                with lock:
                    latencies.append(time.perf_counter() - start)

        threads = [
            threading.Thread(target=worker, args=(tokens[i::clients],)) for i in range(clients)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        server.terminate()
        server.wait(30)
    latencies.sort()
    return {
        "requests": len(latencies),
        "clients": clients,
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[max(0, int(len(latencies) * 0.99) - 1)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Consent policy benchmark.")
    parser.add_argument("--subjects", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--preference-center", action="store_true")
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    args = parser.parse_args()
    if args.preference_center and args.backend != "sqlite":  # before minutes of measuring
        parser.error("--preference-center runs on the SQLite shop only")
    cache = ROOT / "bench/.cache"
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"consent-{args.subjects}.db"
    if not path.exists():
        partial = path.with_suffix(".partial")
        for leftover in cache.glob(partial.name + "*"):
            leftover.unlink()
        build(partial, args.subjects)
        partial.rename(path)
    upgrade(f"sqlite:///{path}")  # a store cached by an older version gets the new indexes
    url = f"sqlite:///{path}"
    postgres = None
    if args.backend == "postgresql":
        from tests.support.postgres import started_postgres

        postgres = started_postgres()
        url = postgres.create_database()
        upgrade(url)
        started = time.perf_counter()
        copy_to_postgresql(path, url)
        print(f"copied the shop into PostgreSQL in {time.perf_counter() - started:.0f} s")
    try:
        result = measure(path, url, args)
    finally:
        if postgres is not None:
            postgres.stop()
    suffix = "" if args.backend == "sqlite" else f"_{args.backend}"
    out = ROOT / f"bench/results/consent{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"cores={result['cores']} subjects={result['subjects']:,} backend={args.backend} "
        f"load average {result['load_average']} (median of {args.repeat})"
    )
    print(f"can_use: {result['can_use_per_s']:,.0f} decisions/s (one subject at a time)")
    print(
        f"can_use_many: {result['can_use_many_seconds']:.2f} s for every subject "
        f"({result['can_use_many_subjects_per_s']:,.0f}/s); raw read of the same rows "
        f"{result['raw_read_seconds']:.2f} s; ratio {result['ratio_to_raw']:.1f}x; target < 5 s"
    )
    if "preference_center" in result:
        p = result["preference_center"]
        print(
            f"preference center GET /p/{{token}}: p50 {p['p50_ms']:.1f} ms, "
            f"p99 {p['p99_ms']:.1f} ms ({p['clients']} clients)"
        )
    print(f"written to {out.relative_to(ROOT)}")


def measure(path: Path, url: str, args: argparse.Namespace) -> dict[str, Any]:
    """The figures on the store ``url`` (the shop at ``path``, or its copy)."""
    db = open_database(Settings(environment="test", database_url=url))
    ids = canonical_ids(path)
    raw, batch, singles = [], [], []
    reasons: dict[str, int] = {}
    for i in range(args.repeat):
        raw.append(raw_read(path, url))
        seconds, reasons = audience(db, ids)
        batch.append(seconds)
        singles.append(single_decisions(db, ids))
        print(
            f"run {i + 1}: can_use_many {seconds:.2f} s, raw read {raw[-1]:.2f} s, "
            f"can_use {singles[-1]:,.0f}/s",
            flush=True,
        )
    result: dict[str, Any] = {
        "benchmark": "consent",
        "backend": args.backend,
        "cores": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "subjects": len(ids),
        "repeat": args.repeat,
        "can_use_per_s": statistics.median(singles),
        "can_use_many_seconds": statistics.median(batch),
        "can_use_many_subjects_per_s": len(ids) / statistics.median(batch),
        "raw_read_seconds": statistics.median(raw),
        "ratio_to_raw": statistics.median(batch) / statistics.median(raw),
        "decisions_by_reason": reasons,
    }
    db.dispose()
    if args.preference_center:
        result["preference_center"] = preference_center(path)
    return result


if __name__ == "__main__":
    main()

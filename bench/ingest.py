"""Ingestion benchmark: Segment track events over HTTP to `consentry serve`.

Sends N events in batches of 100 from concurrent client processes to a live server on SQLite
(and then PostgreSQL), and measures, in the same run, the raw rate of inserting the same rows
with ``sqlite3.executemany`` (one transaction per batch, WAL, the same synchronous setting).
Prints events/s, p50/p99 batch latency, peak server RSS, the ratio to the raw store, and the
machine's core count; writes bench/results/ingest.json. Medians over ``--repeat`` runs.

    .venv/bin/python bench/ingest.py [--events 200000] [--clients 4] [--repeat 3] [--no-postgres]

The server runs without its schedule (analytics, audiences, journeys, ...): it measures
ingestion, storing and applying events, and nothing else. ``CONSENTRY_BENCH_WORKERS=N``
serves with ``consentry serve --workers N`` (default 1). On SQLite two processes acknowledged
less than one, with a p99 of seconds, when this was last tried (docs/ARCHITECTURE.md,
"Ingestion").
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import multiprocessing as mp
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.postgres import ThrowawayPostgres, find_bindir, free_port  # noqa: E402
from tests.support.server import SWEEPING_SCHEDULES  # noqa: E402

from consentry.config import Settings  # noqa: E402
from consentry.migrations import upgrade  # noqa: E402
from consentry.platform import tenancy  # noqa: E402

BATCH = 100
WORKERS = int(os.environ.get("CONSENTRY_BENCH_WORKERS", "1"))
EVENTS = ["Product Viewed", "Product List Viewed", "Page Scrolled", "Video Played", "Signed In"]


def make_batches(n_events: int, seed: int = 7) -> list[bytes]:
    """Pre-encoded batch bodies with unique messageIds and a realistic spread of users."""
    rnd = random.Random(seed)
    now = datetime.now(UTC).isoformat()
    bodies = []
    for _ in range(n_events // BATCH):
        batch = []
        for _ in range(BATCH):
            user = rnd.randrange(20_000)
            msg: dict[str, Any] = {
                "type": "track",
                "event": rnd.choice(EVENTS),
                "messageId": str(uuid.UUID(int=rnd.getrandbits(128))),
                "anonymousId": f"anon-{user}",
                "timestamp": now,
                "properties": {
                    "product_id": f"p-{rnd.randrange(500)}",
                    "price": 19.99,
                    "category": "shoes",
                    "path": "/products/p",
                },
                "context": {
                    "library": {"name": "bench", "version": "1"},
                    "userAgent": "Mozilla/5.0 (X11; Linux x86_64)",
                    "ip": "203.0.113.7",
                },
            }
            if user % 5 == 0:
                msg["userId"] = f"user-{user}"
            batch.append(msg)
        bodies.append(json.dumps({"batch": batch, "sentAt": now}).encode())
    return bodies


def _client(port: int, key: str, bodies: list[bytes], out: Any) -> None:
    auth = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    latencies = []
    for body in bodies:
        start = time.perf_counter()
        conn.request(
            "POST",
            "/v1/batch",
            body=body,
            headers={"Authorization": auth, "Content-Type": "application/json"},
        )
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"batch refused: {response.status}")
        latencies.append(time.perf_counter() - start)
    out.put(latencies)


def _client_proc(port: int, key: str, bodies: list[bytes], threads: int, out: Any) -> None:
    parts = [bodies[i::threads] for i in range(threads)]
    workers = [threading.Thread(target=_client, args=(port, key, p, out)) for p in parts]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def _workspace(url: str) -> tuple[str, str]:
    """A fresh workspace: its write key and an analyst token."""
    upgrade(url)
    from consentry.stores import open_database  # here: bench/ingest_stages imports this module

    db = open_database(Settings(environment="test", database_url=url))
    with db.write() as session:
        ws = f"bench-{uuid.uuid4().hex[:8]}"
        tenancy.create_workspace(session=session, workspace_id=ws)
        key = tenancy.issue_key(session=session, workspace_id=ws, kind="write", name="bench")
        token = tenancy.issue_key(
            session=session, workspace_id=ws, kind="token", name="bench", role=tenancy.Role.ANALYST
        )
    db.dispose()
    return key.secret, token.secret


def _wait_applied(port: int, token: str, timeout: float = 1800) -> None:
    """Poll ``/v1/ingest/status`` until every stored event is applied to profiles."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/v1/ingest/status", headers={"Authorization": f"Bearer {token}"})
        response = conn.getresponse()
        if response.status != 200:
            raise RuntimeError(f"status refused: {response.status}")
        if json.loads(response.read())["pending"] == 0:
            return
        time.sleep(0.2)
    raise RuntimeError("events were not applied in time")


# The server's scheduled work, switched off: a fresh server runs analytics one minute after it
# starts (then every few hours), which would land inside the load and measure DuckDB instead.
UNSCHEDULED = {f"CONSENTRY_{name.upper()}__SCHEDULED": "false" for name in SWEEPING_SCHEDULES}


def _serve(url: str, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CONSENTRY_DATABASE_URL": url, **UNSCHEDULED}
    proc = subprocess.Popen(
        [
            str(ROOT / ".venv/bin/consentry"),
            "serve",
            "--port",
            str(port),
            "--workers",
            str(WORKERS),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not start")


def _peak_rss(pid: int, stop: threading.Event, out: list[int]) -> None:
    """Sample the RSS of the server and its worker processes, summed."""
    proc = psutil.Process(pid)
    while not stop.is_set():
        try:
            family = [proc, *proc.children(recursive=True)]
            out.append(sum(p.memory_info().rss for p in family))
        except psutil.Error:
            return
        time.sleep(0.05)


def run_http(url: str, bodies: list[bytes], clients: int) -> dict[str, float]:
    """One load of every body against a fresh server on ``url``."""
    key, token = _workspace(url)
    port = free_port()
    server = _serve(url, port)
    rss: list[int] = []
    stop = threading.Event()
    sampler = threading.Thread(target=_peak_rss, args=(server.pid, stop, rss))
    sampler.start()
    procs_n = max(1, clients // 2)
    threads = max(1, clients // procs_n)
    out: Any = mp.Queue()
    parts = [bodies[i::procs_n] for i in range(procs_n)]
    start = time.perf_counter()
    procs = [mp.Process(target=_client_proc, args=(port, key, p, threads, out)) for p in parts]
    for p in procs:
        p.start()
    latencies: list[float] = []
    for _ in range(procs_n * threads):
        latencies.extend(out.get(timeout=900))
    for p in procs:
        p.join()
    elapsed = time.perf_counter() - start
    _wait_applied(port, token)
    applied = time.perf_counter() - start
    stop.set()
    sampler.join()
    server.terminate()
    server.wait(30)
    latencies.sort()
    return {
        "events_per_s": len(bodies) * BATCH / elapsed,
        "applied_events_per_s": len(bodies) * BATCH / applied,
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[max(0, int(len(latencies) * 0.99) - 1)],
        "peak_rss_mb": max(rss, default=0) / 2**20,
        "seconds": elapsed,
    }


def run_raw_sqlite(bodies: list[bytes], folder: Path) -> float:
    """The same rows inserted with sqlite3.executemany, one transaction per batch."""
    path = folder / f"raw-{uuid.uuid4().hex[:6]}.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(
        "CREATE TABLE events (id INTEGER PRIMARY KEY, workspace_id TEXT, message_id TEXT, "
        "type TEXT, event TEXT, user_id TEXT, anonymous_id TEXT, profile_id TEXT, "
        "original_timestamp TEXT, sent_at TEXT, received_at TEXT, timestamp TEXT, payload TEXT, "
        "UNIQUE (workspace_id, message_id))"
    )
    conn.execute("CREATE INDEX ix_ts ON events (workspace_id, timestamp)")
    start = time.perf_counter()
    for body in bodies:
        batch = json.loads(body)["batch"]
        rows = [
            (
                "ws",
                m["messageId"],
                m["type"],
                m["event"],
                m.get("userId"),
                m["anonymousId"],
                None,
                m["timestamp"],
                m["timestamp"],
                m["timestamp"],
                m["timestamp"],
                json.dumps(m),
            )
            for m in batch
        ]
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO events (workspace_id, message_id, type, event, user_id, anonymous_id, "
            "profile_id, original_timestamp, sent_at, received_at, timestamp, payload) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            rows,
        )
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return len(bodies) * BATCH / elapsed


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description="Ingestion benchmark over HTTP.")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    bodies = make_batches(args.events)
    folder = Path(tempfile.mkdtemp(prefix="consentry-bench-"))
    try:
        result = _measure(args, bodies, folder)
    finally:  # the stores of a 200k run take about 2 GB
        shutil.rmtree(folder, ignore_errors=True)
    _report(result, args)


def _measure(args: argparse.Namespace, bodies: list[bytes], folder: Path) -> dict[str, Any]:
    sqlite_runs, raw_runs = [], []
    for i in range(args.repeat):
        raw_runs.append(run_raw_sqlite(bodies, folder))
        sqlite_runs.append(run_http(f"sqlite:///{folder}/run{i}.db", bodies, args.clients))
        print(
            f"run {i + 1}: consentry {sqlite_runs[-1]['events_per_s']:,.0f} ev/s "
            f"(p99 {sqlite_runs[-1]['p99_ms']:.1f} ms), raw sqlite3 {raw_runs[-1]:,.0f} rows/s",
            flush=True,
        )
    result: dict[str, Any] = {
        "benchmark": "ingest",
        "cores": os.cpu_count(),
        "events": len(bodies) * BATCH,
        "batch_size": BATCH,
        "clients": args.clients,
        "repeat": args.repeat,
        "sqlite": _median(sqlite_runs),
        "sqlite_runs": sqlite_runs,
        "raw_sqlite_executemany_rows_per_s": statistics.median(raw_runs),
    }
    raw = result["raw_sqlite_executemany_rows_per_s"]
    result["ratio_to_raw"] = result["sqlite"]["events_per_s"] / raw
    if not args.no_postgres and (bindir := find_bindir()) is not None:
        server = ThrowawayPostgres(bindir)
        try:
            server.start()
            result["postgresql"] = run_http(server.create_database(), bodies, args.clients)
        finally:
            server.stop()
    return result


def _report(result: dict[str, Any], args: argparse.Namespace) -> None:
    out = ROOT / "bench/results/ingest.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    raw = result["raw_sqlite_executemany_rows_per_s"]
    s = result["sqlite"]
    print(
        f"cores={result['cores']} events={result['events']} clients={args.clients} "
        f"(median of {args.repeat})"
    )
    print(
        f"SQLite: {s['events_per_s']:,.0f} events/s acknowledged "
        f"({s['applied_events_per_s']:,.0f}/s applied to profiles), p50 {s['p50_ms']:.1f} ms, "
        f"p99 {s['p99_ms']:.1f} ms, peak RSS {s['peak_rss_mb']:.0f} MB"
    )
    print(
        f"raw sqlite3.executemany: {raw:,.0f} rows/s; "
        f"ratio consentry/raw = {result['ratio_to_raw']:.2f}"
    )
    if "postgresql" in result:
        p = result["postgresql"]
        print(
            f"PostgreSQL: {p['events_per_s']:,.0f} events/s acknowledged "
            f"({p['applied_events_per_s']:,.0f}/s applied), p50 {p['p50_ms']:.1f} ms, "
            f"p99 {p['p99_ms']:.1f} ms, peak RSS {p['peak_rss_mb']:.0f} MB"
        )
    print(f"written to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

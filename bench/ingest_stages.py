"""In-process ingestion benchmark, per stage: parse, store and process, in µs per event.

parse:   ``orjson.loads`` + ``ingest.models.parse_batch`` of each body of 100 messages.
store:   ``ingest.service.store`` of each parsed batch, one ``Database.write()`` (a durable
         commit) per batch, as the writer does for one request.
process: ``ingest.service.process_pending(limit=--chunk)`` in ``Database.write(durable=False)``
         until nothing is pending, as the writer thread does when it catches up a backlog.

Two workloads: ``track`` (``bench.ingest.make_batches``: track calls of 20,000 visitors, the HTTP
benchmark's traffic) and ``shop`` (the demo shop generator's first messages: page views,
identify calls with traits, carts, orders and merges). Each run is a fresh subprocess on a fresh
store (SQLite file with WAL and ``synchronous=FULL``; a fresh database on a throwaway PostgreSQL),
and ends with a fingerprint of what it wrote (row counts) so two versions can be checked to do
the same work.

``--baseline REF`` also runs the code of a git revision (``git archive REF src`` into a temp
folder, imported first through PYTHONPATH; the working tree is not touched), interleaved with
the current code run by run, so both see the same machine load. Medians over ``--repeat`` runs.
Prints the machine's core count; writes bench/results/ingest_stages.json.

    .venv/bin/python bench/ingest_stages.py [--events 20000] [--repeat 3] [--chunk 200]
        [--workload track,shop] [--baseline HEAD] [--no-postgres] [--out FILE]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BATCH = 100


# --- one run, in its own process --------------------------------------------------------------


def _shop_bodies(n_events: int) -> list[bytes]:
    import orjson

    from consentry.demo.generator import ShopSpec, generate_shop

    messages: list[dict[str, Any]] = []
    for raw in generate_shop(ShopSpec(customers=2000, months=6, seed=11)):
        messages.append(raw)
        if len(messages) >= n_events:
            break
    sent_at = datetime.now(UTC).isoformat()
    return [
        orjson.dumps({"batch": messages[i : i + BATCH], "sentAt": sent_at})
        for i in range(0, len(messages), BATCH)
    ]


def _bodies(workload: str, n_events: int) -> list[bytes]:
    if workload == "track":
        from bench.ingest import make_batches

        return make_batches(n_events)
    return _shop_bodies(n_events)


def _fingerprint(db: Any, workspace_id: str) -> dict[str, int]:
    from sqlalchemy import text

    queries = {
        "events": "SELECT count(*) FROM events WHERE workspace_id = :w",
        "linked_events": "SELECT count(*) FROM events WHERE workspace_id = :w "
        "AND profile_id IS NOT NULL",
        "profiles": "SELECT count(*) FROM profiles WHERE workspace_id = :w",
        "unified_profiles": "SELECT count(*) FROM profiles WHERE workspace_id = :w "
        "AND merged_into IS NULL",
        "identifiers": "SELECT count(*) FROM identifiers WHERE workspace_id = :w",
        "merges": "SELECT count(*) FROM profile_merges WHERE workspace_id = :w",
        "warnings": "SELECT count(*) FROM identity_warnings WHERE workspace_id = :w",
        "trait_history": "SELECT count(*) FROM trait_history WHERE workspace_id = :w",
        "current_traits": "SELECT count(*) FROM profile_traits WHERE workspace_id = :w",
        "products": "SELECT count(*) FROM products WHERE workspace_id = :w",
        "carts": "SELECT count(*) FROM carts WHERE workspace_id = :w",
        "orders": "SELECT count(*) FROM orders WHERE workspace_id = :w",
        "order_items": "SELECT count(*) FROM order_items WHERE workspace_id = :w",
    }
    with db.read() as session:
        return {
            name: int(session.execute(text(sql), {"w": workspace_id}).scalar_one())
            for name, sql in queries.items()
        }


def run_once(url: str, workload: str, n_events: int, chunk: int) -> dict[str, Any]:
    """Parse, store and process ``n_events`` of ``workload`` on a fresh store at ``url``."""
    import orjson

    import consentry
    from consentry.config import Settings
    from consentry.ingest import service
    from consentry.ingest.models import parse_batch
    from consentry.migrations import upgrade
    from consentry.platform import tenancy
    from consentry.platform.db import Database, utcnow

    bodies = _bodies(workload, n_events)
    upgrade(url)
    settings = Settings(environment="test", database_url=url)
    try:  # sealing at rest (a --baseline from before it opens a plain store)
        from consentry.stores import open_database

        db = open_database(settings)
    except ImportError:
        db = Database.from_url(url)
    limits = settings.ingest
    with db.write() as session:
        workspace_id = f"bench-{uuid.uuid4().hex[:8]}"
        tenancy.create_workspace(session=session, workspace_id=workspace_id)

    gc.collect()
    start, cpu = time.perf_counter(), time.process_time()
    parsed = []
    for body in bodies:
        envelopes, errors = parse_batch(
            orjson.loads(body),
            received_at=utcnow(),
            max_messages=limits.max_batch_messages,
            max_message_bytes=limits.max_message_bytes,
            body_bytes=len(body),
            may_hold_nul=b"\\u0000" in body,
        )
        assert not errors, errors
        parsed.append(envelopes)
    parse_s, parse_cpu = time.perf_counter() - start, time.process_time() - cpu
    events = sum(len(p) for p in parsed)

    start, cpu = time.perf_counter(), time.process_time()
    accepted = 0
    for envelopes in parsed:
        with db.write() as session:
            accepted += service.store(
                session=session, workspace_id=workspace_id, envelopes=envelopes
            ).accepted
    store_s, store_cpu = time.perf_counter() - start, time.process_time() - cpu

    start, cpu = time.perf_counter(), time.process_time()
    processed = 0
    while True:
        with db.write(durable=False) as session:
            done = service.process_pending(
                session=session,
                workspace_id=workspace_id,
                identity=settings.identity,
                default_region=settings.default_phone_region,
                limit=chunk,
            ).processed
        if done == 0:
            break
        processed += done
    process_s, process_cpu = time.perf_counter() - start, time.process_time() - cpu

    fingerprint = _fingerprint(db, workspace_id)
    db.dispose()
    assert accepted == events == processed, (accepted, events, processed)
    return {
        "code": str(Path(consentry.__file__).resolve().parent.parent),
        "events": events,
        "parse_us": 1e6 * parse_s / events,
        "store_us": 1e6 * store_s / events,
        "process_us": 1e6 * process_s / events,
        "parse_cpu_us": 1e6 * parse_cpu / events,
        "store_cpu_us": 1e6 * store_cpu / events,
        "process_cpu_us": 1e6 * process_cpu / events,
        "fingerprint": fingerprint,
    }


# --- the driver ---------------------------------------------------------------------------------


def _spawn(src: Path, url: str, workload: str, events: int, chunk: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), str(ROOT)])}
    out = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--one",
            url,
            "--workload",
            workload,
            "--events",
            str(events),
            "--chunk",
            str(chunk),
        ],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    if Path(result["code"]) != src.resolve():
        raise RuntimeError(f"ran {result['code']}, not {src}")
    return result


def _export(ref: str, folder: Path) -> Path:
    """The ``src`` folder of git revision ``ref``, unpacked into ``folder``."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref, "src"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder / "src"


_MEASURES = (
    "parse_us",
    "store_us",
    "process_us",
    "parse_cpu_us",
    "store_cpu_us",
    "process_cpu_us",
)


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {k: statistics.median(r[k] for r in runs) for k in _MEASURES}
    out["runs"] = [{k: round(r[k], 1) for k in _MEASURES} for r in runs]
    out["fingerprint"] = runs[0]["fingerprint"]
    out["same_fingerprint_every_run"] = all(
        r["fingerprint"] == runs[0]["fingerprint"] for r in runs
    )
    return out


def _row(label: str, m: dict[str, Any], cpu: bool = False) -> str:
    k = "_cpu_us" if cpu else "_us"
    total = m["parse" + k] + m["store" + k] + m["process" + k]
    return (
        f"  {label:<8} {'cpu ' if cpu else 'wall'}  parse {m['parse' + k]:7.1f}  "
        f"store {m['store' + k]:7.1f}  process {m['process' + k]:7.1f}  "
        f"total {total:7.1f} µs/event (~{1e6 / total:,.0f} events/s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="Ingestion cost per stage, in µs per event.")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=200, help="process_pending limit")
    parser.add_argument("--workload", default="track,shop")
    parser.add_argument("--baseline", help="git revision to compare with, e.g. HEAD")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--out", default="bench/results/ingest_stages.json", help="result file")
    parser.add_argument("--one", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        sys.path.append(str(ROOT))  # for bench.ingest; the consentry imported stays the first
        print(json.dumps(run_once(args.one, args.workload, args.events, args.chunk)))
        return

    sys.path.insert(0, str(ROOT))
    from tests.support.postgres import ThrowawayPostgres, find_bindir

    folder = Path(tempfile.mkdtemp(prefix="consentry-stages-"))
    variants = {"current": ROOT / "src"}
    if args.baseline:
        variants = {"baseline": _export(args.baseline, folder), **variants}
    workloads = args.workload.split(",")
    backends = ["sqlite"]
    server = None
    if not args.no_postgres and (bindir := find_bindir()) is not None:
        server = ThrowawayPostgres(bindir)
        server.start()
        backends.append("postgresql")
    runs: dict[str, list[dict[str, Any]]] = {}
    try:
        for i in range(args.repeat):
            for backend in backends:
                for workload in workloads:
                    order = list(variants.items())
                    if i % 2:  # alternate who goes first
                        order.reverse()
                    for name, src in order:
                        if backend == "sqlite":
                            url = f"sqlite:///{folder}/{uuid.uuid4().hex[:8]}.db"
                        else:
                            assert server is not None
                            url = server.create_database()
                        r = _spawn(src, url, workload, args.events, args.chunk)
                        runs.setdefault(f"{backend}/{workload}/{name}", []).append(r)
                        print(
                            f"run {i + 1} {backend:<10} {workload:<5} {name:<8} "
                            f"parse {r['parse_us']:6.1f} store {r['store_us']:6.1f} "
                            f"process {r['process_us']:6.1f} µs/event wall; cpu "
                            f"{r['parse_cpu_us']:6.1f} {r['store_cpu_us']:6.1f} "
                            f"{r['process_cpu_us']:6.1f}",
                            flush=True,
                        )
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(folder, ignore_errors=True)  # its stores: hundreds of MB a run

    result: dict[str, Any] = {
        "benchmark": "ingest_stages",
        "cores": os.cpu_count(),
        "events": args.events,
        "batch_size": BATCH,
        "chunk": args.chunk,
        "repeat": args.repeat,
        "baseline": args.baseline,
        "results": {},
    }
    print(
        f"\ncores={result['cores']} events={args.events} chunk={args.chunk} "
        f"(median of {args.repeat}; µs per event, lower is better; wall = elapsed time, "
        f"cpu = this process's CPU time, without the PostgreSQL server's)"
    )
    for backend in backends:
        for workload in workloads:
            print(f"{backend} / {workload}:")
            for name in variants:
                m = _median(runs[f"{backend}/{workload}/{name}"])
                result["results"].setdefault(backend, {}).setdefault(workload, {})[name] = m
            for cpu in (False, True):
                for name in variants:
                    print(_row(name, result["results"][backend][workload][name], cpu))
            pair = result["results"][backend][workload]
            if "baseline" in pair:
                same = pair["baseline"]["fingerprint"] == pair["current"]["fingerprint"]
                print(f"  same rows written by both versions: {same}")
    out = ROOT / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    shown = out.resolve().relative_to(ROOT) if out.resolve().is_relative_to(ROOT) else out
    print(f"written to {shown}")


if __name__ == "__main__":
    main()

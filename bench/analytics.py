"""Analytics benchmark: CLV accuracy on CDNOW against lifetimes, and the scale of a full run.

1. CDNOW (sample and master): runs ``bench/cdnow.py`` (BG/NBD, Pareto/NBD and Gamma-Gamma fitted
   by consentry and by lifetimes side by side: parameters, fit time, holdout MAE) and prints its
   table again here. ``--skip-cdnow`` leaves it out.
2. Scale: a synthetic shop of ``--customers`` unified profiles with ``--orders`` orders in total
   (default 1,000,000 and 10,000,000) over three years, written once into an embedded store
   (SQLite, as ``make demo`` uses) cached in ``bench/.cache/``. Then, in a fresh process each
   time, what ``consentry analytics run`` does (read the orders from the store once, RFM and the
   cohort retention table on DuckDB, BG/NBD + Gamma-Gamma + CLV + churn risk, write 1M
   computed-trait rows), timed per step; peak RSS of that process. Baseline in the same run: the raw
   store, i.e. reading the same three columns of every order with the ``sqlite3`` module alone.
   Targets: full RFM + CLV + cohorts under 60 s on 2 cores, peak RSS under 4 GB.

Prints the figures (medians of ``--repeat``) with the core count, and writes
bench/results/analytics.json.

    .venv/bin/python bench/analytics.py [--customers 1000000] [--orders 10000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.postgres import started_postgres  # noqa: E402

CACHE = ROOT / "bench" / ".cache"
RESULTS = ROOT / "bench" / "results"
WORKSPACE = "bench-shop"
START = datetime(2023, 1, 1, tzinfo=UTC)
AS_OF = datetime(2026, 1, 1, tzinfo=UTC)
SPAN_DAYS = (AS_OF - START).days
CHUNK = 200_000


def store_path(customers: int, orders: int) -> Path:
    return CACHE / f"analytics-v2-{customers}-{orders}.db"


def _ids(prefix: str, numbers: np.ndarray[Any, Any]) -> list[str]:
    return [f"{prefix}{n:010d}" for n in numbers.tolist()]


def _text(seconds: np.ndarray[Any, Any], suffix: str) -> list[str]:
    """Epoch seconds as timestamp text the store reads (``YYYY-MM-DD HH:MM:SS`` + suffix)."""
    stamps = seconds.astype("datetime64[s]").astype(str)
    return [s.replace("T", " ") + suffix for s in stamps.tolist()]


def shop(customers: int, orders: int, seed: int = 7) -> Iterator[tuple[str, list[tuple[Any, ...]]]]:
    """The synthetic shop as ``(table, rows)`` chunks, timestamps as epoch seconds.

    Customers arrive uniformly over the three years; each buys a number of orders drawn so the
    total is ``orders`` (a skewed spread: many one-off buyers, a loyal tail), on random days of
    their active span (60 % stop buying at some point), of log-normal amounts; 2 % of orders
    are refunded in part, 1 % cancelled, 5 % in EUR (converted at the configured rate)."""
    rng = np.random.default_rng(seed)
    first = START.timestamp() + rng.uniform(0, SPAN_DAYS * 86_400, customers)
    propensity = rng.gamma(0.6, 1.0, customers)
    counts = 1 + rng.poisson(propensity / propensity.mean() * (orders / customers - 1))
    excess = int(counts.sum()) - orders  # trim or pad to exactly ``orders``
    order = rng.permutation(customers)
    i = 0
    while excess != 0:
        c = order[i % customers]
        if excess > 0 and counts[c] > 1:
            counts[c] -= 1
            excess -= 1
        elif excess < 0:
            counts[c] += 1
            excess += 1
        i += 1
    for lo in range(0, customers, CHUNK):
        hi = min(customers, lo + CHUNK)
        ids = _ids("p", np.arange(lo, hi))
        yield "profiles", list(zip(ids, ids, first[lo:hi].tolist(), strict=True))
    # each customer buys while active: 60 % leave at some point (as BG/NBD assumes), the rest
    # stay to the end; orders fall uniformly within the active span
    remaining = AS_OF.timestamp() - first
    active = remaining * np.where(rng.random(customers) < 0.6, rng.beta(1.2, 2.0, customers), 1.0)
    owner = np.repeat(np.arange(customers), counts)
    seconds = first[owner] + rng.uniform(0, 1, orders) * active[owner]
    is_first = np.r_[True, owner[1:] != owner[:-1]]
    seconds = np.where(is_first, first[owner], seconds)
    totals = np.round(np.exp(rng.normal(3.8, 0.7, orders)), 2)
    status = np.where(rng.random(orders) < 0.01, "cancelled", "completed")
    refunded = np.where(rng.random(orders) < 0.02, np.round(totals * 0.3, 2), 0.0)
    currency = np.where(rng.random(orders) < 0.05, "EUR", "USD")
    for lo in range(0, orders, CHUNK):
        hi = min(orders, lo + CHUNK)
        rows = zip(
            _ids("o", np.arange(lo, hi)),
            _ids("p", owner[lo:hi]),
            status[lo:hi].tolist(),
            totals[lo:hi].tolist(),
            refunded[lo:hi].tolist(),
            currency[lo:hi].tolist(),
            seconds[lo:hi].tolist(),
            strict=True,
        )
        yield "orders", list(rows)


PROFILE_SQL = (
    "INSERT INTO profiles (id, workspace_id, canonical_id, merged_into, created_at, first_seen, "
    "last_seen) VALUES (?, '{ws}', ?, NULL, ?, ?, ?)"
)
ORDER_SQL = (
    "INSERT INTO orders (workspace_id, order_id, profile_id, status, total, refunded, currency, "
    "channel, source, placed_at, updated_at) "
    "VALUES ('{ws}', ?, ?, ?, ?, ?, ?, 'web', 'import', ?, ?)"
)


def build_sqlite(customers: int, orders: int) -> str:
    """The shop in an SQLite file cached in bench/.cache (written once)."""
    path = store_path(customers, orders)
    if path.exists():
        return f"sqlite:///{path}"
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    con = sqlite3.connect(partial)

    def write(table: str, rows: list[tuple[Any, ...]]) -> None:
        if table == "profiles":
            stamps = _text(np.array([r[2] for r in rows]), ".000000")
            con.executemany(
                PROFILE_SQL.format(ws=WORKSPACE),
                [(r[0], r[1], t, t, t) for r, t in zip(rows, stamps, strict=True)],
            )
        else:
            stamps = _text(np.array([r[6] for r in rows]), ".000000")
            con.executemany(
                ORDER_SQL.format(ws=WORKSPACE),
                [(*r[:6], t, t) for r, t in zip(rows, stamps, strict=True)],
            )
        con.commit()

    from consentry.migrations import upgrade

    upgrade(f"sqlite:///{partial}")
    con.execute("PRAGMA synchronous=OFF")
    con.execute(
        "INSERT INTO workspaces (id, name, created_at) VALUES (?, ?, ?)",
        (WORKSPACE, WORKSPACE, AS_OF.strftime("%Y-%m-%d %H:%M:%S.000000")),
    )
    for table, rows in shop(customers, orders):
        write(table, rows)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.execute("ANALYZE")
    con.close()
    partial.rename(path)
    return f"sqlite:///{path}"


def build_postgresql(url: str, customers: int, orders: int) -> str:
    """The shop in a (throwaway) PostgreSQL database, written with COPY."""
    import psycopg

    from consentry.migrations import upgrade

    upgrade(url)
    plain = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain) as con, con.cursor() as cur:
        cur.execute(
            "INSERT INTO workspaces (id, name, created_at) VALUES (%s, %s, %s)",
            (WORKSPACE, WORKSPACE, AS_OF),
        )
        written = 0
        for table, rows in shop(customers, orders):
            if table == "profiles":
                stamps = _text(np.array([r[2] for r in rows]), "+00")
                sql = (
                    "COPY profiles (id, workspace_id, canonical_id, created_at, first_seen, "
                    "last_seen) FROM STDIN"
                )
                with cur.copy(sql) as copy:
                    for r, t in zip(rows, stamps, strict=True):
                        copy.write_row((r[0], WORKSPACE, r[1], t, t, t))
            else:
                stamps = _text(np.array([r[6] for r in rows]), "+00")
                sql = (
                    "COPY orders (workspace_id, order_id, profile_id, status, total, refunded, "
                    "currency, channel, source, placed_at, updated_at) FROM STDIN"
                )
                with cur.copy(sql) as copy:
                    for r, t in zip(rows, stamps, strict=True):
                        copy.write_row((WORKSPACE, *r[:6], "web", "import", t, t))
                written += len(rows)
                print(f"  orders written: {written:,}/{orders:,}", end="\r", flush=True)
        print()
        con.commit()
        cur.execute("ANALYZE")
    return url


RAW_SQL = (
    "SELECT profile_id, placed_at, total, refunded, status, currency FROM orders "
    "WHERE workspace_id = '" + WORKSPACE + "'"
)


def raw_scan(url: str) -> float:
    """Baseline: the order columns a run needs, read with the bare driver (``sqlite3`` rows;
    PostgreSQL's ``COPY ... TO STDOUT`` into a byte sink), converted to nothing."""
    started = time.perf_counter()
    if url.startswith("sqlite"):
        con = sqlite3.connect(url.removeprefix("sqlite:///"))
        cur = con.execute(RAW_SQL)
        while cur.fetchmany(100_000):
            pass
        con.close()
    else:
        import psycopg

        plain = url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(plain) as pg, pg.cursor() as cursor:
            with cursor.copy(f"COPY ({RAW_SQL}) TO STDOUT (FORMAT csv)") as copy:
                for _ in copy:
                    pass
    return time.perf_counter() - started


def worker(url: str) -> None:
    """One full run in this (fresh) process: what ``consentry analytics run`` does (RFM, CLV,
    churn, the cohort table of the whole history, scores written); prints timings as JSON."""
    from consentry.analytics import service
    from consentry.config import AnalyticsSettings, Settings
    from consentry.stores import close_database, open_database

    settings = Settings(database_url=url)
    options = AnalyticsSettings(currency="USD", fx_rates={"EUR": 1.08})
    db = open_database(settings)
    started = time.perf_counter()
    report = service.run(db, WORKSPACE, options, as_of=AS_OF)  # cohorts included
    done = time.perf_counter()
    close_database(db)
    print(
        json.dumps(
            {
                "steps": report.seconds,
                "total": done - started,
                "customers": report.customers,
                "orders": report.orders,
                "fitted": report.models.get("fitted"),
                "fitted_on": report.models.get("fitted_on"),
                "cohort_rows": len(report.cohorts),
                "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


def measure(store: str, url: str, repeat: int) -> dict[str, Any]:
    """``repeat`` runs, each in a fresh process after a baseline scan; medians."""
    runs, baselines = [], []
    for i in range(repeat):
        baselines.append(raw_scan(url))
        out = subprocess.run(
            [sys.executable, __file__, "--worker", url], check=True, capture_output=True, text=True
        )
        found = json.loads(out.stdout.strip().splitlines()[-1])
        runs.append(found)
        print(
            f"  {store} run {i + 1}: total {found['total']:.1f} s, steps {found['steps']}, "
            f"peak RSS "
            f"{found['peak_rss_mib']:.0f} MiB; raw scan {baselines[-1]:.1f} s"
        )
    total = statistics.median(r["total"] for r in runs)
    raw = statistics.median(baselines)
    rss = max(r["peak_rss_mib"] for r in runs)
    return {
        "customers": runs[0]["customers"],
        "orders": runs[0]["orders"],
        "models_fitted": runs[0]["fitted"],
        "models_fitted_on": runs[0]["fitted_on"],
        "cohorts": runs[0]["cohort_rows"],
        "total_s": round(total, 2),
        "steps_s": {k: statistics.median(r["steps"][k] for r in runs) for k in runs[0]["steps"]},
        "raw_scan_s": round(raw, 2),
        "ratio_to_raw_scan": round(total / raw, 2),
        "peak_rss_mib": round(rss),
        "runs": runs,
        "met": total < 60 and rss < 4096,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--orders", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--stores", default="postgresql,sqlite")
    parser.add_argument("--skip-cdnow", action="store_true")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker)
        return
    result: dict[str, Any] = {
        "cores": os.cpu_count(),
        "date": datetime.now(UTC).isoformat(),
        "targets": {"total_s": 60, "peak_rss_mib": 4096},
    }
    if not args.skip_cdnow:
        subprocess.run([sys.executable, str(ROOT / "bench" / "cdnow.py")], check=True)
        result["cdnow"] = json.loads((RESULTS / "cdnow.json").read_text())
    stores = args.stores.split(",")
    print(f"scale: {args.customers:,} customers, {args.orders:,} orders; stores {stores}")
    if "postgresql" in stores:
        server = started_postgres()
        try:
            t = time.perf_counter()
            url = build_postgresql(server.create_database(), args.customers, args.orders)
            print(f"  PostgreSQL store written in {time.perf_counter() - t:.0f} s")
            result["postgresql"] = measure("postgresql", url, args.repeat)
        finally:
            server.stop()
    if "sqlite" in stores:
        t = time.perf_counter()
        url = build_sqlite(args.customers, args.orders)
        print(f"  SQLite store ready in {time.perf_counter() - t:.0f} s")
        result["sqlite"] = measure("sqlite", url, args.repeat)
    print(f"\n{os.cpu_count()} cores; full RFM + CLV + cohorts, medians of {args.repeat}:")
    for store in ("postgresql", "sqlite"):
        if store in result:
            r = result[store]
            print(
                f"  {store:10} {r['customers']:,} customers, {r['orders']:,} orders: "
                f"{r['total_s']} s (target < 60), {r['ratio_to_raw_scan']}x the raw scan "
                f"({r['raw_scan_s']} s); peak RSS {r['peak_rss_mib']} MiB (< 4096): "
                f"{'met' if r['met'] else 'NOT met'}"
            )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "analytics.json").write_text(json.dumps(result, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()

"""Recommendation serving benchmark: a generated shop trained, then ``GET /v1/recommendations/
{profile}`` timed through a real ``consentry serve`` process (uvicorn, one worker) over HTTP,
beside baselines measured in the same run.

Data: ``tests.recommend.test_service.shop_messages`` (customers who like one or two of six
categories, view and add their products and re-order staples; a third of them in opt-in
countries) for ``--customers`` customers (default 20,000: about 400,000 events), ingested
through ``ingest.ingest`` in chunks as ``consentry demo`` does; half of the customers in opt-in
countries grant ``personalize``. Then an analytics run (RFM segments) and a training run
(``recommend.service.train``), both timed.

Serving: a ``consentry serve`` subprocess on 127.0.0.1 with the scheduled jobs switched off
(none runs during the timing), one keep-alive HTTP client (httpx), requests one at a time.
After a warm-up, each round asks in turn:

- ``GET /health`` (baseline: routing, a database dependency, no query);
- ``GET /v1/profiles/{id}`` (baseline: a raw profile read, the 360 view with its audit entry);
- ``GET /v1/recommendations/{id}?count=10`` for a random customer (personalised or not, as
  their consent says: both kinds are counted apart too);
- ``GET /v1/recommendations/item/{product}?count=10``.

Wall-clock latency per request as the client sees it: p50 / p99 / mean per endpoint, with the
machine's cores and load average. Target: p99 of the customer recommendations < 20 ms. Before
the server starts, the statements one recommendation request sends are counted in process
(``statements_per_request``).

    .venv/bin/python bench/recommend_serving.py [--customers 20000] [--rounds 2000]
        [--backend sqlite|postgresql]

Writes bench/results/recommend_serving.json (``_postgresql.json`` with ``--backend postgresql``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from sqlalchemy import event

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from tests.recommend.test_service import COUNTRIES, catalogue, shop_messages  # noqa: E402
from tests.support.postgres import started_postgres  # noqa: E402
from tests.support.server import LiveServer  # noqa: E402

from consentry.analytics import service as analytics  # noqa: E402
from consentry.config import IdentitySettings, Settings  # noqa: E402
from consentry.consent import service as consent  # noqa: E402
from consentry.consent.models import ConsentIn  # noqa: E402
from consentry.ingest import service as ingest  # noqa: E402
from consentry.ingest.models import parse_message  # noqa: E402
from consentry.migrations import upgrade  # noqa: E402
from consentry.platform import tenancy  # noqa: E402
from consentry.platform.db import Database, utcnow  # noqa: E402
from consentry.profiles import service as profiles  # noqa: E402
from consentry.recommend import service as recommend  # noqa: E402
from consentry.stores import close_database, open_database  # noqa: E402

WORKSPACE = "bench-shop"
IDENTITY = IdentitySettings()
CHUNK = 2000
OPT_IN = {"DE", "GB", "FR"}
QUIET = {  # no scheduled job may run while the latency is measured
    f"CONSENTRY_{section}__SCHEDULED": "false"
    for section in ("ANALYTICS", "RECOMMEND", "RETENTION", "QUALITY", "DEDUPE")
}


def seed(db: Database, customers: int, seed_value: int) -> dict[str, Any]:
    """Ingest the shop in chunks; half of the opt-in customers grant personalisation."""
    start = time.perf_counter()
    batch: list[Any] = []
    stored = 0
    for index, message in enumerate(shop_messages(customers=customers, seed=seed_value)):
        parsed = parse_message(message, index=index, received_at=utcnow())
        assert not isinstance(parsed, list), parsed
        batch.append(parsed)
        if len(batch) == CHUNK:
            stored += _ingest(db, batch)
            batch = []
    stored += _ingest(db, batch)
    ingest_s = time.perf_counter() - start
    grants = [
        ConsentIn(user_id=f"c{i}", purpose="personalize", state="granted", source="web_form")
        for i in range(customers)
        if COUNTRIES[i % len(COUNTRIES)] in OPT_IN and i % 2 == 0
    ]
    for first in range(0, len(grants), CHUNK):
        with db.write() as session:
            consent.record_requests(
                session=session,
                workspace_id=WORKSPACE,
                items=grants[first : first + CHUNK],
                actor="bench",
            )
    db.optimize()
    return {"events": stored, "ingest_s": round(ingest_s, 1), "grants": len(grants)}


def _ingest(db: Database, batch: list[Any]) -> int:
    if not batch:
        return 0
    with db.write() as session:
        ingest.ingest(session=session, workspace_id=WORKSPACE, envelopes=batch, identity=IDENTITY)
    return len(batch)


@contextmanager
def server(database_url: str, log_dir: Path) -> Iterator[str]:
    """``consentry serve`` (``tests.support.server.LiveServer``) with the schedules off: they
    are set in a ``.env`` file in its working folder, as it passes no CONSENTRY_* variable on;
    its URL."""
    (log_dir / ".env").write_text("".join(f"{k}={v}\n" for k, v in QUIET.items()))
    live = LiveServer(database_url, log_dir).start()
    try:
        yield live.url
    finally:
        live.close()


def stats(values: list[float]) -> dict[str, float]:
    ms = np.asarray(values, dtype=np.float64) * 1000
    return {
        "requests": int(ms.size),
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "mean_ms": round(float(ms.mean()), 3),
        "max_ms": round(float(ms.max()), 3),
    }


def statements_per_request(db: Database, settings: Settings, people: list[str]) -> dict[str, Any]:
    """The statements one ``GET /v1/recommendations/{profile}`` sends in its transaction (the
    service call the route makes, counted with SQLAlchemy's ``before_cursor_execute``), median
    per kind of answer; the server adds the token check (one more statement in a transaction
    of its own), and on PostgreSQL each transaction's BEGIN and ROLLBACK."""
    counted: list[int] = [0]

    def count(*_args: Any) -> None:
        counted[0] += 1

    event.listen(db.engine, "before_cursor_execute", count)
    found: dict[str, list[int]] = {}
    try:
        rng = random.Random(3)
        for _ in range(300):
            with db.read() as session:
                counted[0] = 0
                answer = recommend.for_profile(
                    session=session,
                    workspace_id=WORKSPACE,
                    profile_id=rng.choice(people),
                    settings=settings.recommend,
                )
                found.setdefault(f"{answer['kind']}/{answer['reason']}", []).append(counted[0])
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    return {kind: statistics.median(n) for kind, n in sorted(found.items())}


def measure(url: str, token: str, people: list[str], products: list[str], rounds: int) -> Any:
    rng = random.Random(7)
    timings: dict[str, list[float]] = {
        "health": [],
        "profile_read": [],
        "recommendations": [],
        "recommendations_personalized": [],
        "recommendations_non_personalized": [],
        "item": [],
    }
    kinds: dict[str, int] = {}
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=10) as client:

        def timed(path: str, **params: Any) -> tuple[float, httpx.Response]:
            start = time.perf_counter()
            response = client.get(path, params=params)
            elapsed = time.perf_counter() - start
            response.raise_for_status()
            return elapsed, response

        for _ in range(200):  # warm-up: the model loaded, connections and caches warm
            timed(f"/v1/recommendations/{rng.choice(people)}", count=10)
            timed(f"/v1/recommendations/item/{rng.choice(products)}", count=10)
            timed(f"/v1/profiles/{rng.choice(people)}")
        for _ in range(rounds):
            timings["health"].append(timed("/health")[0])
            timings["profile_read"].append(timed(f"/v1/profiles/{rng.choice(people)}")[0])
            elapsed, response = timed(f"/v1/recommendations/{rng.choice(people)}", count=10)
            kind = response.json()["kind"]
            kinds[kind] = kinds.get(kind, 0) + 1
            timings["recommendations"].append(elapsed)
            timings[f"recommendations_{kind}"].append(elapsed)
            timings["item"].append(timed(f"/v1/recommendations/item/{rng.choice(products)}")[0])
    return {name: stats(values) for name, values in timings.items() if values}, kinds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=2_000, help="timed rounds (4 requests)")
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="consentry-bench-") as tmp:
        postgres = None
        if args.backend == "postgresql":
            postgres = started_postgres()
            url = postgres.create_database()
        else:
            url = f"sqlite:///{tmp}/bench.db"
        try:
            result = run(url, Path(tmp), args)
        finally:
            if postgres is not None:
                postgres.stop()
    result.update(
        benchmark="recommend_serving",
        backend=args.backend,
        cores=os.cpu_count(),
        load_average=os.getloadavg(),
        python=platform.python_version(),
    )
    suffix = "" if args.backend == "sqlite" else f"_{args.backend}"
    out = ROOT / f"bench/results/recommend_serving{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


def run(url: str, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    upgrade(url)
    settings = Settings(environment="test", database_url=url)
    db = open_database(settings)
    try:
        with db.write() as session:
            tenancy.create_workspace(session=session, workspace_id=WORKSPACE)
            token = tenancy.issue_key(
                session=session,
                workspace_id=WORKSPACE,
                kind="token",
                name="bench",
                role=tenancy.Role.ADMIN,
            ).secret
        print(f"seeding {args.customers} customers ({args.backend}) ...", flush=True)
        data = seed(db, args.customers, args.seed)
        print(f"  {data['events']} events in {data['ingest_s']} s", flush=True)
        start = time.perf_counter()
        analytics.run(db, WORKSPACE, settings.analytics)
        data["analytics_s"] = round(time.perf_counter() - start, 1)
        start = time.perf_counter()
        report = recommend.train(db, WORKSPACE, settings.recommend)
        data["train_s"] = round(time.perf_counter() - start, 1)
        print(
            f"  analytics {data['analytics_s']} s, training {data['train_s']} s: "
            f"{report.seconds}, metrics {report.metrics}",
            flush=True,
        )
        with db.read() as session:
            people = [
                p
                for p, _ in profiles.list_profiles(
                    session=session, workspace_id=WORKSPACE, limit=5000
                )
            ]
            size = recommend.models(session=session, workspace_id=WORKSPACE)[0]["bytes"]
        statements = statements_per_request(db, settings, people)
        print(f"  statements per recommendation request (its own transaction): {statements}")
    finally:
        close_database(db)
    products = [p["product_id"] for items in catalogue().values() for p in items]
    with server(url, tmp) as base:
        latency, kinds = measure(base, token, people, products, args.rounds)
    for name, figures in latency.items():
        print(
            f"  {name:<34} p50 {figures['p50_ms']:7.2f} ms  p99 {figures['p99_ms']:7.2f} ms  "
            f"mean {figures['mean_ms']:7.2f} ms  ({figures['requests']})"
        )
    p99 = latency["recommendations"]["p99_ms"]
    print(f"kinds {kinds}; target p99 < 20 ms: {p99 < 20} ({p99} ms); cores {os.cpu_count()}")
    return {
        "customers": args.customers,
        "data": data,
        "training": report.document(),
        "artefact_bytes": size,
        "rounds": args.rounds,
        "latency": latency,
        "kinds": kinds,
        "statements_per_request": statements,
        "target_p99_ms": 20,
        "target_met": p99 < 20,
    }


if __name__ == "__main__":
    main()

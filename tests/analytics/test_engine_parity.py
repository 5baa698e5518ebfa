"""The same metric expressions on DuckDB and on Apache Spark (local mode) give the same tables:
the analytics are written once and run on either engine."""

from __future__ import annotations

import random
import shutil
from datetime import timedelta

import pyarrow as pa
import pytest

from consentry.analytics import metrics
from consentry.analytics.engine import DuckDBEngine, SparkEngine
from consentry.analytics.extract import CARTS, EVENTS, ORDERS
from consentry.analytics.periods import day_of
from tests.analytics.shop import AS_OF, START, buyer, generate

pytestmark = [
    pytest.mark.skipif(shutil.which("java") is None, reason="Spark needs Java 17+"),
    # PySpark's own use of pandas and py4j's sockets, not ours
    pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


def _inputs() -> dict[str, pa.Table]:
    shop = generate(customers=120, seed=21)
    orders = pa.table(
        {
            "customer": [buyer(o) for o in shop.orders],
            "order_id": [o.order_id for o in shop.orders],
            "placed_at": [o.at for o in shop.orders],
            "cents": [o.cents for o in shop.orders],
            "channel": ["web" if i % 3 else "store" for i in range(len(shop.orders))],
        },
        schema=ORDERS,
    )
    rng = random.Random(5)
    visitors, times, ordered = [], [], []
    for v in range(60):
        t = START + timedelta(days=rng.randrange(300))
        for _ in range(rng.randrange(1, 25)):
            t += timedelta(seconds=rng.choice([30, 300, 1_500, 4_000, 90_000]))
            visitors.append(f"v{v}")
            times.append(t)
            ordered.append(int(rng.random() < 0.1))
    events = pa.table({"visitor": visitors, "ts": times, "ordered": ordered}, schema=EVENTS)
    created = [START + timedelta(hours=rng.randrange(9_000)) for _ in range(200)]
    carts = pa.table(
        {
            "created_at": created,
            "updated_at": [c + timedelta(minutes=rng.randrange(600)) for c in created],
            "converted": [int(rng.random() < 0.4) for _ in created],
        },
        schema=CARTS,
    )
    return {"orders": orders, "events": events, "carts": carts}


def _all_metrics(engine: DuckDBEngine | SparkEngine) -> dict[str, list[dict[str, object]]]:
    for name, table in _inputs().items():
        engine.load(name, table)
    as_of = day_of(AS_OF)
    cutoff = int(AS_OF.timestamp())
    built = {
        "rfm": lambda t: metrics.rfm_scores(metrics.customer_summary(t["orders"], as_of), as_of),
        "cohorts": lambda t: metrics.cohorts(t["orders"], as_of),
        "orders_month": lambda t: metrics.order_kpis(t["orders"], "month", as_of),
        "orders_week": lambda t: metrics.order_kpis(t["orders"], "week", as_of),
        "sessions": lambda t: metrics.session_kpis(t["events"], "day"),
        "carts": lambda t: metrics.cart_kpis(t["carts"], "week", cutoff),
    }
    found = {}
    for name, build in built.items():
        table = engine.run(build)
        keys = [(c, "ascending") for c in table.column_names]
        found[name] = table.sort_by(keys).to_pylist()
    return found


def test_duckdb_and_spark_compute_the_same_metrics() -> None:
    with DuckDBEngine() as duck:
        expected = _all_metrics(duck)
    spark = SparkEngine()
    try:
        found = _all_metrics(spark)
    finally:
        spark.close()
        spark.session.stop()
    for name, rows in expected.items():
        assert len(found[name]) == len(rows) > 0, name
        for mine, theirs in zip(rows, found[name], strict=True):
            assert mine.keys() == theirs.keys()
            for key, value in mine.items():
                if isinstance(value, float):
                    assert theirs[key] == pytest.approx(value, rel=1e-12), (name, key)
                else:
                    assert theirs[key] == value, (name, key, mine)

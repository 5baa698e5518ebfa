"""Where the analytics expressions run: DuckDB in-process (the default) or Apache Spark.

The metrics in ``analytics.metrics`` are Ibis expressions written once over named input tables;
an engine loads those tables (Arrow, read from the operational store by ``analytics.extract``)
and executes the expressions, always handing back Arrow. Nothing here knows what a metric is.

- ``DuckDBEngine`` registers the Arrow tables without copying them; memory is capped by
  ``memory_limit`` and DuckDB spills to disk past it.
- ``SparkEngine`` stages each table as Parquet in a temporary directory (Spark reads files in
  parallel; nothing goes through pandas) and runs on the session it is given, or on a local
  one (``local[*]``, UTC). A shop on a cluster passes its own session.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self

import ibis
import pyarrow as pa
import pyarrow.parquet as pq
from ibis.expr.types import Table

Build = Callable[[Mapping[str, Table]], Table]


class Engine(Protocol):
    """Runs Ibis expressions over tables it was given."""

    name: str

    def load(self, name: str, data: pa.Table) -> None:
        """Make ``data`` available to expressions as the table ``name``."""

    def run(self, build: Build) -> pa.Table:
        """Build an expression over the loaded tables and execute it."""

    def close(self) -> None:
        """Release the engine's memory and files."""


class _Tables:
    """What both engines share: an Ibis connection (``con``, set by each engine), the tables
    loaded into it, execution to Arrow, and context-manager plumbing."""

    name = "engine"
    con: Any

    def __init__(self) -> None:
        self._tables: dict[str, Table] = {}

    def run(self, build: Build) -> pa.Table:
        return self.con.to_pyarrow(build(dict(self._tables)))

    def close(self) -> None:
        """Nothing to release by default."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        _kind: type[BaseException] | None,
        _error: BaseException | None,
        _trace: TracebackType | None,
    ) -> None:
        self.close()


class DuckDBEngine(_Tables):
    """DuckDB in this process, over Arrow tables registered without a copy."""

    name = "duckdb"

    def __init__(self, *, threads: int | None = None, memory_limit: str = "2GB") -> None:
        super().__init__()
        self._spill = tempfile.mkdtemp(prefix="consentry-duckdb-")
        self.con = ibis.duckdb.connect(
            threads=threads or os.cpu_count() or 1,
            memory_limit=memory_limit,
            temp_directory=self._spill,
        )

    def load(self, name: str, data: pa.Table) -> None:
        self.con.con.register(name, data)
        self._tables[name] = self.con.table(name)

    def close(self) -> None:
        self.con.disconnect()
        shutil.rmtree(self._spill, ignore_errors=True)


def local_spark_session(cores: int | None = None) -> Any:
    """A local Spark session in UTC, quiet and without its web UI (needs Java 17+)."""
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master(f"local[{cores or '*'}]")
        .appName("consentry-analytics")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", str(max(2, 2 * (cores or os.cpu_count() or 1))))
        .config("spark.driver.memory", "2g")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    return spark


class SparkEngine(_Tables):
    """Apache Spark through Ibis; tables are staged as Parquet files Spark reads itself."""

    name = "spark"

    def __init__(self, session: Any | None = None) -> None:
        super().__init__()
        self.session = session if session is not None else local_spark_session()
        self.con = ibis.pyspark.connect(self.session)
        self._staging = Path(tempfile.mkdtemp(prefix="consentry-spark-"))

    def load(self, name: str, data: pa.Table) -> None:
        path = self._staging / f"{name}.parquet"
        # Spark reads timestamps in microseconds; coerce so nanosecond columns never fail
        pq.write_table(data, path, coerce_timestamps="us", allow_truncated_timestamps=True)
        self.session.read.parquet(str(path)).createOrReplaceTempView(name)
        self._tables[name] = self.con.table(name)

    def close(self) -> None:
        for name in self._tables:
            self.session.catalog.dropTempView(name)
        self._tables.clear()
        shutil.rmtree(self._staging, ignore_errors=True)


ENGINES = ("duckdb", "spark")


def open_engine(name: str, *, memory_limit: str = "2GB") -> DuckDBEngine | SparkEngine:
    """An engine by name: ``duckdb`` (default) or ``spark`` (local session)."""
    if name == "spark":
        return SparkEngine()
    if name == "duckdb":
        return DuckDBEngine(memory_limit=memory_limit)
    raise ValueError(f"unknown analytics engine {name!r}; choose one of {', '.join(ENGINES)}")

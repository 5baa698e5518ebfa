"""Cohort retention rows from ``metrics.cohorts``: shared by the on-request cohort table
(``kpi_service.cohorts``) and the analytics run, which stores the whole history's table."""

from __future__ import annotations

from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the table's type only: the run and the KPIs load pyarrow
    import pyarrow as pa

EPOCH = date(1970, 1, 1)


def month_of_day(day: int) -> int:
    """The month number (``year * 12 + month - 1``, as ``metrics`` numbers months) of a day."""
    d = EPOCH + timedelta(days=day)
    return d.year * 12 + d.month - 1


def month_key(month: int) -> str:
    """``YYYY-MM`` of a month number."""
    return f"{month // 12:04d}-{month % 12 + 1:02d}"


def cohort_rows(table: pa.Table, first_month: int, last_month: int) -> list[dict[str, Any]]:
    """``metrics.cohorts`` as one row per cohort that started from ``first_month`` on: its size,
    customers active in each month since (through ``last_month``) and that as a share."""
    sizes: dict[int, int] = {}
    active: dict[int, dict[int, int]] = {}
    for row in table.to_pylist():
        if row["cohort"] < first_month:
            continue
        active.setdefault(row["cohort"], {})[row["offset"]] = row["customers"]
        if row["offset"] == 0:
            sizes[row["cohort"]] = row["customers"]
    result = []
    for cohort in sorted(sizes):
        size = sizes[cohort]
        span = last_month - cohort
        result.append(
            {
                "cohort": month_key(cohort),
                "customers": size,
                "active": [active[cohort].get(i, 0) for i in range(span + 1)],
                "retention": [active[cohort].get(i, 0) / size for i in range(span + 1)],
            }
        )
    return result

"""Admin routes of the audit trail: list (paged), verify, export. All need ``audit:read``.

Reading the trail shows no personal data (targets are pseudonymous ids), so it is not itself
recorded.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from consentry.deps import AuditRead, DbDep
from consentry.errors import FieldError, Invalid
from consentry.platform import audit
from consentry.platform.db import Database

router = APIRouter(prefix="/v1/audit", tags=["audit"])

Action = Annotated[str | None, Query(max_length=64, description="Exact action, e.g. profile.read")]
TargetId = Annotated[str | None, Query(max_length=audit.MAX_TARGET_ID)]
Since = Annotated[datetime | None, Query(description="From this time (inclusive, ISO 8601).")]
Until = Annotated[datetime | None, Query(description="Before this time (exclusive).")]


def _window(since: datetime | None, until: datetime | None) -> tuple[datetime | None, ...]:
    """The bounds in UTC (a naive time is UTC); Invalid when ``until`` is not after ``since``."""
    bounds = tuple(
        None if t is None else t.replace(tzinfo=UTC) if t.tzinfo is None else t
        for t in (since, until)
    )
    low, high = bounds
    if low is not None and high is not None and high <= low:
        raise Invalid("empty time window", [FieldError("until", "must be after since")])
    return bounds


@router.get("")
def list_entries(
    principal: AuditRead,
    db: DbDep,
    since: Since = None,
    until: Until = None,
    action: Action = None,
    target_id: TargetId = None,
    after_seq: Annotated[int, Query(ge=0, description="The last seq of the previous page.")] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    """A page of the workspace's trail in seq order; ``next_after_seq`` fetches the next page."""
    low, high = _window(since, until)
    with db.read() as session:
        page = audit.entries(
            session=session,
            workspace_id=principal.workspace_id,
            since=low,
            until=high,
            action=action,
            target_id=target_id,
            after_seq=after_seq,
            limit=limit,
        )
    return {
        "entries": [audit.entry_json(e) for e in page],
        "next_after_seq": page[-1].seq if len(page) == limit else None,
    }


@router.post("/verify")
def verify_trail(principal: AuditRead, db: DbDep) -> dict[str, Any]:
    """Walk the workspace's hash chain and name the first edited, deleted or reordered entry."""
    with db.read() as session:
        report = audit.verify(session=session, workspace_id=principal.workspace_id)
    return asdict(report)


@router.get("/export")
def export_trail(
    principal: AuditRead,
    db: DbDep,
    format: Annotated[Literal["jsonl", "csv"], Query()] = "jsonl",
    since: Since = None,
    until: Until = None,
    action: Action = None,
    target_id: TargetId = None,
) -> StreamingResponse:
    """The matching entries, streamed: JSON Lines (every field, to recompute the hashes) or CSV."""
    low, high = _window(since, until)
    filters = {"since": low, "until": high, "action": action, "target_id": target_id}
    lines = _stream(db, principal.workspace_id, format, filters)
    media = "application/x-ndjson" if format == "jsonl" else "text/csv; charset=utf-8"
    name = f"audit-{principal.workspace_id}.{format}"
    return StreamingResponse(
        lines, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )


def _stream(db: Database, workspace_id: str, kind: str, filters: dict[str, Any]) -> Iterator[str]:
    with db.read() as session:
        found = audit.iter_entries(session=session, workspace_id=workspace_id, **filters)
        yield from audit.jsonl_lines(found) if kind == "jsonl" else audit.csv_lines(found)

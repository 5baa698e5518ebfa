"""Routes of probabilistic de-duplication: run it, read the latest run, and the review queue.

Reading needs ``profiles:read``; running and deciding need ``profiles:write``. The review
queue shows both profiles' traits, so each read is recorded in the audit trail under the
profiles' ids (never a value). A decision on a pair already decided is a 409.
"""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from consentry.deps import (
    DbDep,
    ProfilesRead,
    ProfilesWrite,
    ReadAudit,
    ReadRecorder,
    SettingsDep,
)
from consentry.errors import NotFound
from consentry.platform.db import Database
from consentry.platform.tenancy import Principal
from consentry.profiles import dedupe_service as service
from consentry.profiles.dedupe_service import Candidate
from consentry.stores import open_database

router = APIRouter(prefix="/v1/identity", tags=["identity"])


class RunIn(BaseModel):
    """A batch run (trains a model) or an incremental one (new and changed profiles only)."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["batch", "incremental"] = "batch"
    dry_run: bool = Field(False, description="Score and count, but merge and queue nothing.")


class DecisionIn(BaseModel):
    """An optional note with a decision (no personal data, please: it is kept)."""

    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(None, max_length=500)


Sides = list[dict[str, Any] | None]  # both profiles' summaries (None: erased)


def review_queue(
    db: Database,
    principal: Principal,
    reads: ReadRecorder,
    *,
    status: str,
    limit: int,
    via: str | None = None,
) -> tuple[int, list[tuple[Candidate, Sides]]]:
    """Candidate pairs of a status, the most probable first, each with both profiles'
    summaries, and how many pairs there are; the read is recorded under the profiles' ids
    (and ``via``: "dashboard" from the dashboard). The API and the dashboard both read it."""
    workspace = principal.workspace_id
    with db.read() as session:
        total, found = service.list_candidates(
            session=session, workspace_id=workspace, status=status, limit=limit
        )
    details = {"via": via} if via else {}
    with reads.reading(principal, "identity.review", lookup="queue", **details) as note:
        with db.read() as session:
            shown = service.summaries(
                session=session,
                workspace_id=workspace,
                profile_ids=[p for c in found for p in (c.profile_a, c.profile_b)],
            )
        note.found(s["id"] for s in shown.values())
    return total, [(c, [shown.get(c.profile_a), shown.get(c.profile_b)]) for c in found]


@router.post("/dedupe")
def run(
    principal: ProfilesWrite, db: DbDep, settings: SettingsDep, body: RunIn | None = None
) -> dict[str, Any]:
    """Find duplicate profiles: merge the clear ones, queue the grey ones for review."""
    body = body or RunIn()
    report = service.run(
        db,
        principal.workspace_id,
        settings.dedupe,
        cap=settings.identity.cap,
        default_region=settings.default_phone_region,
        mode=body.mode,
        dry_run=body.dry_run,
        open_store=partial(open_database, settings),
    )
    return report.document()


@router.get("/dedupe/runs/latest")
def latest(principal: ProfilesRead, db: DbDep) -> dict[str, Any]:
    """The latest run's report and trained parameters (404 before the first run)."""
    with db.read() as session:
        found = service.latest_run(session=session, workspace_id=principal.workspace_id)
    if found is None:
        raise NotFound("no dedupe run yet; POST /v1/identity/dedupe")
    return found


@router.get("/review")
def review(
    principal: ProfilesRead,
    db: DbDep,
    reads: ReadAudit,
    status: Annotated[str, Query(max_length=16)] = "pending",
    limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 50,
) -> dict[str, Any]:
    """Candidate pairs (pending by default), the most probable first, with both profiles'
    names, emails, phones, birthdays and addresses and the weight each field contributed."""
    total, pairs = review_queue(db, principal, reads, status=status, limit=limit)
    return {
        "total": total,
        "status": status,
        "pairs": [{**c.document(), "profiles": sides} for c, sides in pairs],
    }


@router.post("/review/{candidate_id}/approve")
def approve(
    candidate_id: str, principal: ProfilesWrite, db: DbDep, settings: SettingsDep
) -> dict[str, Any]:
    """The pair is one person: merge them (undo with POST /v1/merges/{merge_id}/undo)."""
    with db.write() as session:
        found = service.approve(
            session=session,
            workspace_id=principal.workspace_id,
            candidate_id=candidate_id,
            actor=principal.actor,
            cap=settings.identity.cap,
        )
    return found.document()


@router.post("/review/{candidate_id}/reject")
def reject(
    candidate_id: str, principal: ProfilesWrite, db: DbDep, body: DecisionIn | None = None
) -> dict[str, Any]:
    """The pair are two people: recorded, and never proposed again."""
    with db.write() as session:
        found = service.reject(
            session=session,
            workspace_id=principal.workspace_id,
            candidate_id=candidate_id,
            actor=principal.actor,
            note=body.note if body else None,
        )
    return found.document()

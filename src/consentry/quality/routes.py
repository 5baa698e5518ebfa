"""Data-quality audit routes: run an audit now, read the latest, one, or the recent ones.

Reading needs ``quality:read``; running needs ``quality:write``. A report holds counts, field
names, problem codes and a few profile ids per problem, never a value (docs/quality.md).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from consentry.deps import DbDep, QualityRead, QualityWrite, SettingsDep
from consentry.errors import NotFound
from consentry.quality import service

router = APIRouter(prefix="/v1/quality", tags=["quality"])


class AuditIn(BaseModel):
    """Options of one audit (default: the settings')."""

    model_config = ConfigDict(extra="forbid")

    stale_days: int | None = Field(
        None, ge=1, le=36500, description="A profile not seen for this many days is stale."
    )


@router.post("/audits")
def run_audit(
    principal: QualityWrite, db: DbDep, settings: SettingsDep, body: AuditIn | None = None
) -> dict[str, Any]:
    """Audit every unified profile of the workspace now and store the report."""
    options = settings.quality
    if body is not None and body.stale_days is not None:
        options = options.model_copy(update={"stale_days": body.stale_days})
    found = service.run(
        db,
        principal.workspace_id,
        options,
        default_country=settings.default_phone_region,
        actor=principal.actor,
    )
    return found.document()


@router.get("/audits/latest")
def latest_audit(principal: QualityRead, db: DbDep) -> dict[str, Any]:
    """The latest audit's report (404 before the first audit)."""
    with db.read() as session:
        found = service.latest(session=session, workspace_id=principal.workspace_id)
    if found is None:
        raise NotFound("no quality audit yet; POST /v1/quality/audits")
    return found.document()


@router.get("/audits/{audit_id}")
def get_audit(audit_id: str, principal: QualityRead, db: DbDep) -> dict[str, Any]:
    """One audit's report."""
    with db.read() as session:
        found = service.get(session=session, workspace_id=principal.workspace_id, audit_id=audit_id)
    return found.document()


@router.get("/audits")
def list_audits(
    principal: QualityRead,
    db: DbDep,
    limit: Annotated[int, Query(ge=1, le=service.MAX_LIST)] = 20,
) -> dict[str, Any]:
    """The latest audits, newest first, with their totals."""
    with db.read() as session:
        found = service.recent(session=session, workspace_id=principal.workspace_id, limit=limit)
    return {"audits": [a.summary() for a in found]}

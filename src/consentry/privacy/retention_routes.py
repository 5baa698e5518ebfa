"""Retention routes: read and change the workspace's policy, see what a run would delete, run it.

Reading needs ``privacy:read``; changing and running need ``privacy:write``. The server also runs
every workspace's policy once a day (``CONSENTRY_RETENTION__INTERVAL_HOURS``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from consentry.deps import DbDep, PrivacyRead, PrivacyWrite, SettingsDep
from consentry.platform.db import utcnow
from consentry.privacy import retention_service
from consentry.privacy.retention import report

router = APIRouter(prefix="/v1/privacy/retention", tags=["privacy"])


class PolicyIn(BaseModel):
    """Days to keep each category (null: until erased); categories left out do not change."""

    model_config = ConfigDict(extra="forbid")

    policies: dict[str, int | None] = Field(
        ..., max_length=20, examples=[{"events": 395, "abandoned_carts": 90}]
    )


@router.get("")
def read_policy(principal: PrivacyRead, db: DbDep) -> dict[str, Any]:
    """The workspace's policy and its last run."""
    with db.read() as session:
        policy = retention_service.get_policy(session=session, workspace_id=principal.workspace_id)
        last = retention_service.last_run(session=session, workspace_id=principal.workspace_id)
    return {**policy.document(), "last_run": last}


@router.put("")
def change_policy(body: PolicyIn, principal: PrivacyWrite, db: DbDep) -> dict[str, Any]:
    """Change some categories' periods; each bad one is named (400) and nothing changes."""
    with db.write() as session:
        policy = retention_service.set_policy(
            session=session,
            workspace_id=principal.workspace_id,
            changes=body.policies,
            actor=principal.actor,
        )
    return policy.document()


@router.get("/plan")
def dry_run(principal: PrivacyRead, db: DbDep) -> dict[str, Any]:
    """What a run now would delete, per category (nothing is deleted)."""
    now = utcnow()
    with db.read() as session:
        found = retention_service.plan(
            session=session, workspace_id=principal.workspace_id, now=now
        )
    return report(found, dry_run=True, at=now)


@router.post("/run")
def run_now(principal: PrivacyWrite, db: DbDep, settings: SettingsDep) -> dict[str, Any]:
    """Delete now what the policy no longer keeps; recorded in the audit trail."""
    now = utcnow()
    done = retention_service.run(
        db=db,
        workspace_id=principal.workspace_id,
        now=now,
        order_hold=settings.erasure.order_hold,
    )
    return report(done, dry_run=False, at=now)

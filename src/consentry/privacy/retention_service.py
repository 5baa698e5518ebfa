"""Retention: each workspace's policy, what a run would delete, and the run itself.

:func:`run` is a job (it takes the store, not a session): it deletes in chunks, each in its own
transaction, so a long run never holds the store and can be interrupted and started again; a
person inactive past the period is erased as by a request (:func:`erasure_service.erase`, one
transaction each: their keys destroyed, invoices kept under the legal hold). Every run that
deleted something, and every change of a policy, is recorded in the audit trail.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy.orm import Session

from consentry.commerce import service as commerce
from consentry.errors import Invalid
from consentry.ingest import service as ingest
from consentry.platform import audit, tenancy
from consentry.platform.db import Database, utcnow
from consentry.privacy import erasure_service
from consentry.privacy.retention import (
    CATEGORIES,
    CategoryRun,
    Policy,
    changed,
    policy_of,
    report,
)
from consentry.privacy.tables import RetentionRow
from consentry.profiles import service as profiles

ACTOR = "system:retention"
ROW_CHUNK = 5000  # rows deleted per transaction
PEOPLE_CHUNK = 50

Progress = Callable[[str, int], None]  # (category, rows done so far)


def get_policy(*, session: Session, workspace_id: str) -> Policy:
    """The workspace's policy (the defaults for what it never set)."""
    tenancy.get_workspace(session=session, workspace_id=workspace_id)
    row = session.get(RetentionRow, workspace_id)
    return policy_of(row.policies if row is not None else None)


def set_policy(
    *, session: Session, workspace_id: str, changes: Mapping[str, Any], actor: str
) -> Policy:
    """Change some categories' periods (days, or None to keep until erased); Invalid names
    each bad one and nothing changes. Recorded in the audit trail."""
    current = get_policy(session=session, workspace_id=workspace_id)
    wanted, errors = changed(current, changes)
    if errors:
        raise Invalid("the retention policy was not changed", errors)
    now = utcnow()
    row = session.get(RetentionRow, workspace_id)
    stored = {c: wanted.days.get(c) for c in CATEGORIES}
    if row is None:
        session.add(
            RetentionRow(
                workspace_id=workspace_id, policies=stored, updated_at=now, updated_by=actor
            )
        )
    else:
        row.policies, row.updated_at, row.updated_by = stored, now, actor
    audit.record(
        session=session,
        workspace_id=workspace_id,
        actor=actor,
        action="privacy.retention_policy",
        target_type="workspace",
        target_id=workspace_id,
        reason="retention policy changed",
        details={c: -1 if d is None else d for c, d in stored.items()},
        at=now,
    )
    return wanted


def plan(*, session: Session, workspace_id: str, now: datetime | None = None) -> list[CategoryRun]:
    """What a run at ``now`` would delete, per category (the dry run)."""
    at = now or utcnow()
    policy = get_policy(session=session, workspace_id=workspace_id)
    out = []
    for category in CATEGORIES:
        cutoff = policy.cutoff(category, at)
        count = 0 if cutoff is None else _count(session, workspace_id, category, cutoff)
        out.append(CategoryRun(category, policy.days.get(category), cutoff, count))
    return out


class _Expiring(Protocol):
    """A capability's count (``remove_up_to`` 0) or removal of the rows of a category."""

    def __call__(
        self, *, session: Session, workspace_id: str, before: datetime, remove_up_to: int = 0
    ) -> int: ...


# the categories whose rows are simply deleted, each by its own capability (inactive customers
# are erased instead: :func:`_erase_inactive`)
_EXPIRING: dict[str, _Expiring] = {
    "events": ingest.expired_events,
    "abandoned_carts": commerce.abandoned_carts,
    "identity_warnings": profiles.expired_warnings,
}


def _count(session: Session, workspace_id: str, category: str, cutoff: datetime) -> int:
    if category == "inactive_customers":
        return profiles.count_inactive_people(
            session=session, workspace_id=workspace_id, before=cutoff
        )
    return _EXPIRING[category](session=session, workspace_id=workspace_id, before=cutoff)


def run(
    *,
    db: Database,
    workspace_id: str,
    now: datetime | None = None,
    order_hold: timedelta | None = None,
    on_progress: Progress | None = None,
) -> list[CategoryRun]:
    """Delete what the policy no longer keeps; returns what went, per category."""
    at = now or utcnow()
    with db.read() as session:
        policy = get_policy(session=session, workspace_id=workspace_id)
    done: list[CategoryRun] = []
    for category in CATEGORIES:
        cutoff = policy.cutoff(category, at)
        count = 0
        if cutoff is not None:
            count = _delete(db, workspace_id, category, cutoff, order_hold, on_progress)
        done.append(CategoryRun(category, policy.days.get(category), cutoff, count))
    with db.write() as session:
        row = session.get(RetentionRow, workspace_id)
        if row is None:
            row = RetentionRow(
                workspace_id=workspace_id, policies={}, updated_at=at, updated_by=ACTOR
            )
            session.add(row)
        row.last_run_at, row.last_run = at, report(done, dry_run=False, at=at)
        if any(r.count for r in done):
            audit.record(
                session=session,
                workspace_id=workspace_id,
                actor=ACTOR,
                action="privacy.retention",
                target_type="workspace",
                target_id=workspace_id,
                reason="retention policy run",
                details={r.category: r.count for r in done},
            )
    if any(r.count for r in done):
        db.purge_deleted()
    return done


def _delete(
    db: Database,
    workspace_id: str,
    category: str,
    cutoff: datetime,
    order_hold: timedelta | None,
    on_progress: Progress | None,
) -> int:
    chunk = PEOPLE_CHUNK if category == "inactive_customers" else ROW_CHUNK
    total = 0
    while True:
        with db.write() as session:
            if category == "inactive_customers":
                step = _erase_inactive(session, workspace_id, cutoff, order_hold)
            else:
                step = _EXPIRING[category](
                    session=session, workspace_id=workspace_id, before=cutoff, remove_up_to=chunk
                )
        total += step
        if on_progress is not None and step:
            on_progress(category, total)
        if step < chunk:
            return total


def _erase_inactive(
    session: Session, workspace_id: str, cutoff: datetime, order_hold: timedelta | None
) -> int:
    people = profiles.inactive_people(
        session=session, workspace_id=workspace_id, before=cutoff, limit=PEOPLE_CHUNK
    )
    for profile_id in people:
        erasure_service.erase(
            session=session,
            workspace_id=workspace_id,
            profile_id=profile_id,
            actor=ACTOR,
            reason="retention: not seen within the period",
            order_hold=order_hold,
            suppress=False,
        )
    return len(people)


def last_run(*, session: Session, workspace_id: str) -> dict[str, Any] | None:
    """The report of the workspace's last run, if any."""
    row = session.get(RetentionRow, workspace_id)
    return row.last_run if row is not None else None

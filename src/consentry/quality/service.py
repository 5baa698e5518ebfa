"""Data-quality audits of a workspace's unified profiles, stored as reports (``quality_audits``).

An audit reads every unified profile through the profiles capability's read paths: the ids of
the workspace's unified profiles (``profiles.inactive_people`` with no cut-off: every unified
profile, oldest activity first), then their current traits a page at a time
(``profiles.current_traits_many``, which opens the sealed personal traits). Each page goes
through the pure :class:`~consentry.quality.audit.Auditor`; nothing of a value is kept, and the
stored report holds counts, field names, problem codes and a few profile ids per problem.

- Stale: no member of the unified profile was seen for ``stale_days`` (the same rule as
  retention's inactivity, ``profiles.inactive_people``).
- Likely duplicates: unified profiles that share an email, a phone, a name with a birth date
  or a name with a postcode, compared in normalised form (``quality.duplicates``).
- Erased people are not in the store any more (an erasure deletes their profiles in the
  transaction that destroys their keys), and a suppressed identity never becomes a profile
  again, so neither is counted. Example ids of profiles erased after an audit are left out
  when its report is read.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from consentry.config import QualitySettings
from consentry.errors import NotFound
from consentry.platform.db import Database, utcnow
from consentry.profiles import service as profiles
from consentry.quality import spellings
from consentry.quality.audit import Auditor, default_fields
from consentry.quality.duplicates import RULES as DUPLICATE_RULES
from consentry.quality.tables import QualityAuditRow

Progress = Callable[[int, int], None]  # (profiles audited so far, profiles in all)
PAGE = 1000
MAX_LIST = 100
EVERY_PROFILE = datetime(9999, 12, 31, tzinfo=UTC)  # a cut-off no profile is active after

# The trait names the audit reads, as words (``quality.spellings``, shared with
# de-duplication): every usual spelling of each is fetched ("first_name", "firstName",
# "FirstName", "first-name", "First Name", "FIRST_NAME", ...). Their slugs are the default
# fields' keys (tests check it) and "address", whose object holds the country, postcode and city.
TRAIT_WORDS: tuple[tuple[str, ...], ...] = tuple(w for field in spellings.AUDIT for w in field)
TRAIT_KEYS: tuple[str, ...] = spellings.trait_keys(spellings.AUDIT)


@dataclass(frozen=True, slots=True)
class AuditRun:
    """One stored audit: when, who ran it, how many unified profiles, and the report."""

    id: str
    workspace_id: str
    started_at: datetime
    finished_at: datetime
    profiles: int
    actor: str
    report: dict[str, Any]

    def document(self) -> dict[str, Any]:
        """The audit as JSON-ready data: its own fields, then the report's."""
        return {
            "id": self.id,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "seconds": round((self.finished_at - self.started_at).total_seconds(), 3),
            "profiles": self.profiles,
            "actor": self.actor,
            **self.report,
        }

    def summary(self) -> dict[str, Any]:
        """The audit without its per-field detail (for lists)."""
        return {
            "id": self.id,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "profiles": self.profiles,
            "actor": self.actor,
            "totals": self.report.get("totals", {}),
        }


def _pages(ids: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def run(
    db: Database,
    workspace_id: str,
    settings: QualitySettings,
    *,
    default_country: str | None,
    actor: str,
    as_of: datetime | None = None,
    progress: Progress | None = None,
) -> AuditRun:
    """Audit every unified profile of the workspace as of ``as_of`` (default: now) and store
    the report. ``default_country`` judges phones and postcodes of profiles without a country
    (the phone region identity resolution uses). ``progress`` is called after each page."""
    as_of = (as_of or utcnow()).astimezone(UTC)
    started = utcnow()
    auditor = Auditor(
        as_of=as_of,
        stale_after_days=settings.stale_days,
        default_country=default_country,
        fields=default_fields(default_country=default_country),
        find_duplicates=True,
    )
    with_traits = 0
    with db.read() as session:
        ids = profiles.inactive_people(
            session=session, workspace_id=workspace_id, before=EVERY_PROFILE
        )
        stale = set(
            profiles.inactive_people(
                session=session,
                workspace_id=workspace_id,
                before=as_of - timedelta(days=settings.stale_days),
            )
        )
        total, done = len(ids), 0
        if progress is not None:
            progress(0, total)
        for page in _pages(ids, PAGE):
            traits = profiles.current_traits_many(
                session=session, workspace_id=workspace_id, canonical_ids=page, keys=TRAIT_KEYS
            )
            for profile_id in page:
                values = traits.get(profile_id, {})
                with_traits += any(v is not None for v in values.values())
                auditor.add({"id": profile_id, "traits": values, "stale": profile_id in stale})
            done += len(page)
            if progress is not None:
                progress(done, total)
    report = auditor.report().to_dict()
    report["totals"]["profiles_with_traits"] = with_traits
    report["duplicates"]["rules"] = [name for name, _ in DUPLICATE_RULES]
    report["default_country"] = default_country
    found = AuditRun(
        id=str(uuid.uuid4()),
        workspace_id=workspace_id,
        started_at=started,
        finished_at=utcnow(),
        profiles=total,
        actor=actor[:200],
        report=report,
    )
    with db.write() as session:
        session.add(
            QualityAuditRow(
                id=found.id,
                workspace_id=workspace_id,
                started_at=found.started_at,
                finished_at=found.finished_at,
                profiles=found.profiles,
                actor=found.actor,
                report=found.report,
            )
        )
        _prune(session, workspace_id, settings.keep_audits)
    return found


def _prune(session: Session, workspace_id: str, keep: int) -> None:
    """Delete the workspace's reports older than the latest ``keep``."""
    session.flush()
    old = session.scalars(
        select(QualityAuditRow.id)
        .where(QualityAuditRow.workspace_id == workspace_id)
        .order_by(QualityAuditRow.started_at.desc(), QualityAuditRow.id)
        .offset(keep)
    ).all()
    for start in range(0, len(old), 500):
        session.execute(
            delete(QualityAuditRow).where(QualityAuditRow.id.in_(old[start : start + 500]))
        )


def _run_of(row: QualityAuditRow) -> AuditRun:
    return AuditRun(
        id=row.id,
        workspace_id=row.workspace_id,
        started_at=row.started_at,
        finished_at=row.finished_at,
        profiles=row.profiles,
        actor=row.actor,
        report=copy.deepcopy(row.report),  # the caller may trim it; the row stays as stored
    )


def _example_lists(report: dict[str, Any]) -> Iterator[list[Any]]:
    """Every list of example profile ids in a report."""
    for field in report.get("fields", {}).values():
        for kind in ("invalid", "warnings"):
            for count in field.get(kind, {}).values():
                yield count["examples"]
    for section in ("stale", "duplicates"):
        if isinstance(report.get(section), dict):
            yield report[section]["examples"]


def _without_erased(session: Session, workspace_id: str, run: AuditRun) -> AuditRun:
    """The run with the example ids of profiles no longer in the store left out (an erasure
    after the audit); counts stay as they were at the audit."""
    lists = list(_example_lists(run.report))
    ids = {i for examples in lists for i in examples}
    if not ids:
        return run
    known = profiles.canonical_map_many(session=session, workspace_id=workspace_id, profile_ids=ids)
    for examples in lists:
        examples[:] = [i for i in examples if i in known]
    return run


def latest(*, session: Session, workspace_id: str) -> AuditRun | None:
    """The workspace's latest audit, or None before the first."""
    row = session.scalars(
        select(QualityAuditRow)
        .where(QualityAuditRow.workspace_id == workspace_id)
        .order_by(QualityAuditRow.started_at.desc(), QualityAuditRow.id)
        .limit(1)
    ).first()
    return None if row is None else _without_erased(session, workspace_id, _run_of(row))


def get(*, session: Session, workspace_id: str, audit_id: str) -> AuditRun:
    """One audit of the workspace (NotFound for an unknown id or another workspace's)."""
    row = session.scalars(
        select(QualityAuditRow).where(
            QualityAuditRow.workspace_id == workspace_id, QualityAuditRow.id == audit_id
        )
    ).first()
    if row is None:
        raise NotFound(f"no quality audit {audit_id!r} in this workspace")
    return _without_erased(session, workspace_id, _run_of(row))


def recent(*, session: Session, workspace_id: str, limit: int = 20) -> list[AuditRun]:
    """The workspace's latest audits, newest first (at most ``MAX_LIST``)."""
    rows = session.scalars(
        select(QualityAuditRow)
        .where(QualityAuditRow.workspace_id == workspace_id)
        .order_by(QualityAuditRow.started_at.desc(), QualityAuditRow.id)
        .limit(max(1, min(limit, MAX_LIST)))
    )
    return [_run_of(r) for r in rows]


def due(*, session: Session, workspace_id: str, every: timedelta, now: datetime) -> bool:
    """Whether the schedule should audit the workspace: no audit yet, or the latest started
    at least ``every`` before ``now`` (a restart of the server does not audit again)."""
    started = session.scalar(
        select(QualityAuditRow.started_at)
        .where(QualityAuditRow.workspace_id == workspace_id)
        .order_by(QualityAuditRow.started_at.desc())
        .limit(1)
    )
    return started is None or started <= now - every

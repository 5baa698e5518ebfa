"""The review queue of probabilistic de-duplication: candidate pairs, their statuses, and the
decisions staff take on them (approve: merge, recorded; reject: recorded, never proposed
again); and the merge both the runs and the approvals go through (``merge_pair``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from consentry.errors import Conflict, FieldError, Invalid, NotFound
from consentry.platform.db import lock_workspace, utcnow
from consentry.profiles import dedupe_records as dr
from consentry.profiles.bulk import canonical_map_many, current_traits_many
from consentry.profiles.dedupe_tables import MatchCandidateRow
from consentry.profiles.graph import blocks_between, canonical_of, identifier_counts, members_query
from consentry.profiles.merging import CapFn, merge_canonicals
from consentry.profiles.models import merge_allowed
from consentry.profiles.tables import MergeBlockRow, ProfileRow

PENDING, MERGED, APPROVED, REJECTED, UNIFIED = (
    "pending",
    "merged",
    "approved",
    "rejected",
    "unified",
)
STATUSES: tuple[str, ...] = (PENDING, MERGED, APPROVED, REJECTED, UNIFIED)
MAX_PAGE = 200


def merge_pair(
    session: Session,
    workspace_id: str,
    first: str,
    second: str,
    *,
    reason: str,
    actor: str,
    cap: CapFn,
) -> tuple[str, str | None]:
    """Merge two profiles like ``merging.merge_profiles`` with a reason of our own: an explicit
    merge, so the unmerge blocks between them are cleared. (A run's merges keep the blocks and
    answer these checks from memory: ``dedupe_service._Merger``.)

    Returns ``("merged", merge id)``, ``("unified", None)`` when they are one already, or
    ``("refused", reason)`` when the union would break an identifier cap.
    """
    a = canonical_of(session=session, workspace_id=workspace_id, profile_id=first)
    b = canonical_of(session=session, workspace_id=workspace_id, profile_id=second)
    if a == b:
        return UNIFIED, None
    refused = merge_allowed(
        identifier_counts(session, workspace_id, a),
        identifier_counts(session, workspace_id, b),
        cap,
    )
    if refused is not None:
        return "refused", refused
    between = blocks_between(members_query(workspace_id, a), members_query(workspace_id, b))
    session.execute(
        delete(MergeBlockRow).where(MergeBlockRow.workspace_id == workspace_id, between)
    )
    record = merge_canonicals(session, workspace_id, a, b, reason, actor, None)
    return MERGED, record.id


# --- the review queue -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Candidate:
    """A pair of profiles found by a run, and what became of it."""

    id: str
    profile_a: str
    profile_b: str
    probability: float
    match_weight: float
    explanation: dict[str, Any]
    status: str
    run_id: str
    found_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    note: str | None

    @property
    def merge_id(self) -> str | None:
        """The merge that joined the pair (auto-merged or approved), to undo it."""
        if self.note and self.note.startswith("merge:"):
            return self.note[len("merge:") :]
        return None

    def document(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "profile_a": self.profile_a,
            "profile_b": self.profile_b,
            "probability": self.probability,
            "match_weight": self.match_weight,
            "explanation": self.explanation,
            "status": self.status,
            "run_id": self.run_id,
            "found_at": self.found_at.isoformat(),
            "decided_at": self.decided_at.isoformat() if self.decided_at else None,
            "decided_by": self.decided_by,
            "merge_id": self.merge_id,
            "note": None if self.merge_id else self.note,
        }


def _candidate(row: MatchCandidateRow) -> Candidate:
    return Candidate(
        id=row.id,
        profile_a=row.profile_a,
        profile_b=row.profile_b,
        probability=row.probability,
        match_weight=row.match_weight,
        explanation=dict(row.explanation),
        status=row.status,
        run_id=row.run_id,
        found_at=row.found_at,
        decided_at=row.decided_at,
        decided_by=row.decided_by,
        note=row.note,
    )


def _check_status(status: str) -> None:
    if status not in (*STATUSES, "all"):
        raise Invalid("unknown status", [FieldError("status", ", ".join((*STATUSES, "all")))])


def list_candidates(
    *, session: Session, workspace_id: str, status: str = PENDING, limit: int = 50, offset: int = 0
) -> tuple[int, list[Candidate]]:
    """Candidate pairs of a status (``all``: any), the most probable first; and how many."""
    _check_status(status)
    if not 1 <= limit <= MAX_PAGE:
        raise Invalid("limit out of range", [FieldError("limit", f"1 to {MAX_PAGE}")])
    where = [MatchCandidateRow.workspace_id == workspace_id]
    if status != "all":
        where.append(MatchCandidateRow.status == status)
    total = int(
        session.scalar(select(func.count()).select_from(MatchCandidateRow).where(*where)) or 0
    )
    rows = session.scalars(
        select(MatchCandidateRow)
        .where(*where)
        .order_by(MatchCandidateRow.probability.desc(), MatchCandidateRow.id)
        .limit(limit)
        .offset(offset)
    )
    return total, [_candidate(r) for r in rows]


def _row(session: Session, workspace_id: str, candidate_id: str) -> MatchCandidateRow:
    row = session.get(MatchCandidateRow, candidate_id)
    if row is None or row.workspace_id != workspace_id:
        raise NotFound(f"no candidate pair {candidate_id!r} in this workspace")
    return row


def _pending(row: MatchCandidateRow) -> None:
    if row.status != PENDING:
        raise Conflict(f"this pair was already decided ({row.status})")


def approve(
    *, session: Session, workspace_id: str, candidate_id: str, actor: str, cap: CapFn
) -> Candidate:
    """A reviewer says the pair is one person: merge them (an explicit merge, so it may join
    profiles an unmerge separated) and record the decision, who and when. Conflict when the
    pair was decided already or the identifier caps refuse the merge."""
    lock_workspace(session, workspace_id)
    row = _row(session, workspace_id, candidate_id)
    _pending(row)
    try:
        outcome, detail = merge_pair(
            session,
            workspace_id,
            row.profile_a,
            row.profile_b,
            reason=f"match approved in review (candidate {row.id})",
            actor=actor,
            cap=cap,
        )
    except NotFound as exc:  # a side was erased since
        raise Conflict("a profile of this pair no longer exists") from exc
    if outcome == "refused":
        raise Conflict(f"merge refused: {detail}")
    row.status = APPROVED
    row.decided_at, row.decided_by = utcnow(), actor[:200]
    row.note = f"merge:{detail}" if detail else "already one profile"
    session.flush()
    return _candidate(row)


def reject(
    *, session: Session, workspace_id: str, candidate_id: str, actor: str, note: str | None = None
) -> Candidate:
    """A reviewer says the pair are two people: recorded, and never proposed again."""
    row = _row(session, workspace_id, candidate_id)
    _pending(row)
    row.status = REJECTED
    row.decided_at, row.decided_by = utcnow(), actor[:200]
    row.note = note[:500] if note else None
    session.flush()
    return _candidate(row)


# --- what a reviewer sees ---------------------------------------------------------------------


def summaries(
    *, session: Session, workspace_id: str, profile_ids: Iterable[str]
) -> dict[str, dict[str, Any]]:
    """For each profile id: the unified profile it is now, its last sighting and the traits a
    reviewer compares (name, email, phone, birthday, address), opened. Ids with no profile
    (erased) are left out."""
    wanted = set(profile_ids)
    canon = canonical_map_many(session=session, workspace_id=workspace_id, profile_ids=wanted)
    unified = sorted(set(canon.values()))
    traits = current_traits_many(
        session=session, workspace_id=workspace_id, canonical_ids=unified, keys=dr.TRAIT_KEYS
    )
    seen: dict[str, datetime] = {}
    for start in range(0, len(unified), 500):
        rows = session.execute(
            select(ProfileRow.id, ProfileRow.last_seen).where(
                ProfileRow.workspace_id == workspace_id,
                ProfileRow.id.in_(unified[start : start + 500]),
            )
        )
        seen.update((pid, last) for pid, last in rows)
    return {
        pid: {
            "id": canonical,
            "requested_id": pid,
            "last_seen": seen.get(canonical),
            **dr.display_summary(traits.get(canonical, {})),
        }
        for pid, canonical in canon.items()
    }


def pairs_of(
    *, session: Session, workspace_id: str, profile_ids: Iterable[str]
) -> list[dict[str, Any]]:
    """The candidate pairs naming any of these profiles, for the person's access request:
    when found, the probability, the fields compared (names, levels and weights; never a
    value), and what became of the pair. The other profile of the pair is not named."""
    wanted = sorted(set(profile_ids))
    found: list[dict[str, Any]] = []
    for start in range(0, len(wanted), 500):
        part = wanted[start : start + 500]
        rows = session.scalars(
            select(MatchCandidateRow).where(
                MatchCandidateRow.workspace_id == workspace_id,
                MatchCandidateRow.profile_a.in_(part) | MatchCandidateRow.profile_b.in_(part),
            )
        ).all()
        found.extend(
            {
                "found_at": row.found_at,
                "probability": row.probability,
                "fields_compared": row.explanation.get("fields", []),
                "status": row.status,
                "decided_at": row.decided_at,
            }
            for row in rows
        )
    return sorted(found, key=lambda p: p["found_at"])

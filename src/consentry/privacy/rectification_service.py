"""Rectification (GDPR Art. 16): correct a person's traits, recorded in the audit trail."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from consentry.errors import FieldError, Invalid
from consentry.platform import audit
from consentry.profiles import service as profiles

MAX_RECTIFIED = 50


def rectify(
    *,
    session: Session,
    workspace_id: str,
    profile_id: str,
    traits: dict[str, Any],
    actor: str,
    reason: str,
    purge_history: bool = False,
) -> tuple[str, list[str], int]:
    """Correct a person's traits (GDPR Art. 16) and record it in the audit trail (the keys,
    never the values). Returns (unified profile id, keys corrected, earlier history rows
    deleted). Invalid names a bad field; NotFound when no such profile."""
    errors: list[FieldError] = []
    if not traits:
        errors.append(FieldError("traits", "name at least one trait to correct"))
    if len(traits) > MAX_RECTIFIED:
        errors.append(FieldError("traits", f"at most {MAX_RECTIFIED} traits at once"))
    for key in traits:
        if not key.strip() or len(key) > 200 or audit.looks_personal(key):
            errors.append(FieldError(f"traits.{key[:40]}", "not a trait name"))
    details: dict[str, audit.DetailValue] = {
        "keys": ",".join(sorted(traits))[:200],
        "purge_history": purge_history,
    }
    errors += audit.entry_problems(
        actor=actor,
        action="privacy.rectification",
        target_type="profile",
        target_ids=[profile_id],
        reason=reason,
        details=details,
    )
    if errors:
        raise Invalid("nothing was corrected", errors)
    person = profiles.person_of(session=session, workspace_id=workspace_id, profile_id=profile_id)
    purged = profiles.rectify_traits(
        session=session,
        workspace_id=workspace_id,
        canonical_id=person.canonical_id,
        member_ids=person.member_ids,
        traits=traits,
        purge_history=purge_history,
        source="rectification",
    )
    audit.record(
        session=session,
        workspace_id=workspace_id,
        actor=actor,
        action="privacy.rectification",
        target_type="profile",
        target_id=person.canonical_id,
        reason=reason,
        details={**details, "history_deleted": purged},
    )
    return person.canonical_id, sorted(traits), purged

"""Helpers of the consent tests: subjects made through ingestion, choices through the service."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from consentry.consent import service as consent
from consentry.platform.db import Database
from tests.support.segment import identify
from tests.support.store import profile_of, send

T0 = datetime(2026, 1, 1, tzinfo=UTC)
EMAIL = "marketing.communications.email"


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def subject(db: Database, workspace: str, user_id: str, **traits: Any) -> str:
    """A profile holding ``user_id`` (and the traits), made the way clients make them."""
    send(db, workspace, identify(userId=user_id, traits=traits, timestamp=T0.isoformat()))
    return profile_of(db, workspace, user_id=user_id).id


def choose(
    db: Database,
    workspace: str,
    profile_id: str,
    state: str,
    minutes: int = 0,
    **fields: Any,
) -> consent.ConsentRecord:
    """Record one choice in its own unit of work."""
    values: dict[str, Any] = {"purpose": EMAIL, "channel": "email", "source": "web_form"}
    values.update(fields)
    with db.write() as session:
        return consent.record(
            session=session,
            workspace_id=workspace,
            profile_id=profile_id,
            state=state,
            occurred_at=at(minutes),
            actor="test",
            **values,
        )


def decision(
    db: Database, workspace: str, profile_id: str, purpose: str = EMAIL, channel: str = "email"
) -> consent.Decision:
    with db.read() as session:
        return consent.can_use(
            session=session,
            workspace_id=workspace,
            profile_id=profile_id,
            purpose=purpose,
            channel=channel,
            at=at(60 * 24 * 30),
        )

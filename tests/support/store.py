"""Helpers that drive the store through the public services, as the API does."""

from __future__ import annotations

from typing import Any

from consentry.config import IdentitySettings
from consentry.ingest import service as ingest
from consentry.ingest.models import parse_message
from consentry.platform.db import Database, utcnow
from consentry.profiles import service as profiles


def send(
    db: Database,
    workspace: str,
    *messages: dict[str, Any],
    identity: IdentitySettings | None = None,
) -> ingest.IngestResult:
    """Validate and ingest messages in one unit of work, like one /v1/batch request."""
    envelopes = []
    for i, raw in enumerate(messages):
        parsed = parse_message(raw, index=i, received_at=utcnow())
        assert not isinstance(parsed, list), parsed
        envelopes.append(parsed)
    with db.write() as session:
        return ingest.ingest(
            session=session,
            workspace_id=workspace,
            envelopes=envelopes,
            identity=identity or IdentitySettings(),
        )


def profile_of(db: Database, workspace: str, **identifier: str) -> profiles.ProfileView:
    """The one unified profile holding an identifier."""
    with db.read() as session:
        ids = profiles.search_identifiers(session=session, workspace_id=workspace, **identifier)
        assert len(ids) == 1, f"expected one profile for {identifier}, found {len(ids)}"
        return profiles.get_profile(session=session, workspace_id=workspace, profile_id=ids[0])


def maybe_profile(db: Database, workspace: str, **identifier: str) -> list[str]:
    with db.read() as session:
        return profiles.search_identifiers(session=session, workspace_id=workspace, **identifier)


def identifier_values(view: profiles.ProfileView, kind: str) -> set[str]:
    return {i["value"] for i in view.identifiers if i["type"] == kind}

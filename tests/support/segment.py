"""Helpers to build Segment-spec messages in tests."""

from __future__ import annotations

import base64
import uuid
from typing import Any

from consentry.ingest.models import Envelope, parse_message
from consentry.platform.db import utcnow


def basic(write_key: str) -> dict[str, str]:
    """HTTP Basic header with the write key as user name, as Segment's SDKs send it."""
    token = base64.b64encode(f"{write_key}:".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def msg(kind: str, **fields: Any) -> dict[str, Any]:
    """A message of ``kind`` with a fresh messageId unless one is given."""
    out: dict[str, Any] = {"type": kind, "messageId": str(uuid.uuid4())}
    out.update(fields)
    return out


def track(event: str, **fields: Any) -> dict[str, Any]:
    return msg("track", event=event, **fields)


def identify(**fields: Any) -> dict[str, Any]:
    return msg("identify", **fields)


def parsed(*messages: dict[str, Any]) -> list[Envelope]:
    """Messages validated as the ingestion API does, received now (for the service layer)."""
    out = []
    for i, raw in enumerate(messages):
        env = parse_message(raw, index=i, received_at=utcnow())
        assert not isinstance(env, list), env
        out.append(env)
    return out

"""Tables of the ingest capability. Only ``ingest.service`` touches them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from consentry.platform.db import Base, JSONType, UTCDateTime
from consentry.profiles.tables import BigId


class EventRow(Base):
    """One accepted message, stored once per ``messageId`` (de-duplication without a window).

    ``user_id`` and ``anonymous_id`` hold blind indexes; ``payload`` holds the message sealed
    under its identity's key (a ``pv1:`` token, see platform.vault)."""

    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("workspace_id", "message_id"),
        Index("ix_events_profile_ts", "profile_id", "timestamp"),
        Index("ix_events_ws_ts", "workspace_id", "timestamp"),
        # segments count a profile's events of one name in a window (covering: no row reads)
        Index("ix_events_ws_event_ts", "workspace_id", "event", "type", "timestamp", "profile_id"),
        # an id is never handed out again once its event is erased (the cursor moves by id)
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"))
    message_id: Mapped[str] = mapped_column(String(128))
    type: Mapped[str] = mapped_column(String(16))
    event: Mapped[str | None] = mapped_column(String(512))
    user_id: Mapped[str | None] = mapped_column(String(512))
    anonymous_id: Mapped[str | None] = mapped_column(String(512))
    profile_id: Mapped[str | None] = mapped_column(String(36))
    original_timestamp: Mapped[datetime | None] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime())
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)


class IngestCursorRow(Base):
    """How far the processor has applied a workspace's events (by event id).

    Writers of a workspace are serialised, so ids are committed in order and nothing is skipped.
    """

    __tablename__ = "ingest_cursors"

    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"), primary_key=True)
    last_event_id: Mapped[int] = mapped_column(BigId, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

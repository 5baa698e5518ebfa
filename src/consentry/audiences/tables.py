"""Tables of the audiences capability (segments, membership, computed traits). Only the
audiences services touch them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from consentry.platform.db import Base, JSONType, UTCDateTime
from consentry.profiles.tables import BigId


class SegmentRow(Base):
    """A segment: its rule (the JSON document), the rule's readable text, the kinds of facts
    it reads (``rules.KINDS``), the segments it reads, and its size at the last refresh."""

    __tablename__ = "segments"
    __table_args__ = (UniqueConstraint("workspace_id", "name"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    rule: Mapped[dict[str, Any]] = mapped_column(JSONType)
    text: Mapped[str] = mapped_column(Text)
    kinds: Mapped[list[str]] = mapped_column(JSONType)
    reads_segments: Mapped[list[str]] = mapped_column(JSONType)
    member_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(200))
    updated_by: Mapped[str] = mapped_column(String(200))
    refreshed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class SegmentMemberRow(Base):
    """A unified profile in a segment now, since when."""

    __tablename__ = "segment_members"
    __table_args__ = (Index("ix_segment_members_ws_profile", "workspace_id", "profile_id"),)

    segment_id: Mapped[str] = mapped_column(ForeignKey("segments.id"), primary_key=True)
    profile_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"))
    since: Mapped[datetime] = mapped_column(UTCDateTime())


class SegmentChangeRow(Base):
    """A unified profile entered (``entered``) or left a segment. Ids only grow and are never
    handed out again (journeys read the changes after a cursor)."""

    __tablename__ = "segment_membership_changes"
    __table_args__ = (
        Index("ix_segment_changes_ws_id", "workspace_id", "id"),
        Index("ix_segment_changes_segment_id", "segment_id", "id"),
        Index("ix_segment_changes_ws_profile", "workspace_id", "profile_id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"))
    segment_id: Mapped[str] = mapped_column(String(36))
    profile_id: Mapped[str] = mapped_column(String(36))
    entered: Mapped[bool] = mapped_column(Boolean)
    at: Mapped[datetime] = mapped_column(UTCDateTime())


class ComputedTraitRow(Base):
    """A computed trait of the workspace: ``op`` over the ``event`` events of the last
    ``window_days`` days (all, when null), of the event's ``property`` (a dotted path inside
    its properties) when given."""

    __tablename__ = "computed_traits"
    __table_args__ = (UniqueConstraint("workspace_id", "name"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"))
    name: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text, default="")
    op: Mapped[str] = mapped_column(String(16))
    event: Mapped[str] = mapped_column(String(512))
    property: Mapped[str | None] = mapped_column(String(200))
    window_days: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(200))
    refreshed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ComputedValueRow(Base):
    """The materialised value of a computed trait for one unified profile (JSON: a number,
    a string, a list for ``unique``; timestamps as ISO text)."""

    __tablename__ = "computed_trait_values"
    __table_args__ = (Index("ix_computed_trait_values_ws_profile", "workspace_id", "profile_id"),)

    trait_id: Mapped[str] = mapped_column(ForeignKey("computed_traits.id"), primary_key=True)
    profile_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"))
    value: Mapped[Any] = mapped_column(JSONType, nullable=True)


class AudienceCursorRow(Base):
    """How far the incremental refresh has read the workspace's applied events (by event id)
    and its consent ledger (by ``seq``), when it last looked for merges and unmerges, and when
    membership was last refreshed in full."""

    __tablename__ = "audience_cursors"

    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"), primary_key=True)
    last_event_id: Mapped[int] = mapped_column(BigId, default=0)
    last_consent_seq: Mapped[int] = mapped_column(BigId, default=0, server_default="0")
    merges_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    refreshed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

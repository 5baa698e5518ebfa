"""Tables of the journeys capability. Only the journeys modules touch them.

Nothing personal is stored here in clear: enrollments name the unified profile by id, and
their trigger context holds ids, names and times only (the event's id, the segment's id).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from consentry.platform.db import Base, JSONType, UTCDateTime
from consentry.profiles.tables import BigId


class JourneyRow(Base):
    """A journey: its current definition (``version``), its status and who changed it.

    ``activated_at`` is when it was last switched on; ``scanned_at`` when the date-trait or
    inactivity scan last looked at it (the next scan starts there)."""

    __tablename__ = "journeys"
    __table_args__ = (
        UniqueConstraint("workspace_id", "name"),
        Index("ix_journeys_ws_status", "workspace_id", "status"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text)
    trigger_type: Mapped[str] = mapped_column(String(32))
    definition: Mapped[dict[str, Any]] = mapped_column(JSONType)
    status: Mapped[str] = mapped_column(String(16))
    version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_by: Mapped[str] = mapped_column(String(200))
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    scanned_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class JourneyVersionRow(Base):
    """Every version of a journey's definition: running enrollments keep the one they entered."""

    __tablename__ = "journey_versions"

    journey_id: Mapped[str] = mapped_column(ForeignKey("journeys.id"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    definition: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(200))


class EnrollmentRow(Base):
    """One profile's way through one journey.

    ``open_profile_id`` equals ``profile_id`` while the enrollment is active and is null after:
    the unique constraint on it keeps one active enrollment per journey and profile (nulls
    never collide, on SQLite and PostgreSQL). ``step`` is the step it is at, ``due_at`` when
    that step runs; ``trigger`` what enrolled it (ids, names and times only)."""

    __tablename__ = "journey_enrollments"
    __table_args__ = (
        UniqueConstraint("journey_id", "open_profile_id"),
        Index("ix_journey_enrollments_due", "workspace_id", "status", "due_at"),
        Index("ix_journey_enrollments_profile", "workspace_id", "profile_id"),
        Index("ix_journey_enrollments_journey", "journey_id", "profile_id", "entered_at"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"))
    journey_id: Mapped[str] = mapped_column(ForeignKey("journeys.id"))
    version: Mapped[int] = mapped_column(Integer)
    profile_id: Mapped[str] = mapped_column(String(36))
    open_profile_id: Mapped[str | None] = mapped_column(String(36))
    status: Mapped[str] = mapped_column(String(16))
    step: Mapped[str | None] = mapped_column(String(64))
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    variant: Mapped[str | None] = mapped_column(String(64))
    trigger: Mapped[dict[str, Any]] = mapped_column(JSONType)
    entered_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    end_reason: Mapped[str | None] = mapped_column(String(200))


class StepRunRow(Base):
    """What one step did for one enrollment: ``outcome`` (sent, skipped, deferred, branched,
    updated, held_out), why (``reason``: never personal data) and the outbox message."""

    __tablename__ = "journey_step_runs"
    __table_args__ = (
        Index("ix_journey_step_runs_journey", "journey_id", "step", "outcome"),
        Index("ix_journey_step_runs_enrollment", "enrollment_id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"))
    journey_id: Mapped[str] = mapped_column(ForeignKey("journeys.id"))
    enrollment_id: Mapped[int] = mapped_column(ForeignKey("journey_enrollments.id"))
    version: Mapped[int] = mapped_column(Integer)
    step: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(300))
    variant: Mapped[str | None] = mapped_column(String(64))
    message_id: Mapped[str | None] = mapped_column(String(36))
    at: Mapped[datetime] = mapped_column(UTCDateTime())


class TriggerCursorRow(Base):
    """How far a workspace's journeys have read their triggers: the last event id (applied
    events only), the last segment membership change id, when the last daily scan ran."""

    __tablename__ = "journey_cursors"

    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"), primary_key=True)
    last_event_id: Mapped[int] = mapped_column(BigId)
    last_change_id: Mapped[int] = mapped_column(BigId)
    last_scan_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

"""Tables of the privacy capability. Only the privacy services touch them.

``privacy_processors`` holds each processor as it stands now; ``privacy_processor_versions`` keeps
every version ever written (append-only, a JSON document per version), so the register, and the
record of processing activities built from it, can be shown as they stood at a past date.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import Boolean, Date, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from consentry.platform.db import Base, JSONType, UTCDateTime


class ProcessorRow(Base):
    """A processor or destination of a workspace, at its latest version."""

    __tablename__ = "privacy_processors"
    __table_args__ = (UniqueConstraint("workspace_id", "name_key"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"))
    version: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(200))
    name_key: Mapped[str] = mapped_column(String(64))  # SHA-256 of the case-folded name
    kind: Mapped[str] = mapped_column(String(32))
    contact: Mapped[str | None] = mapped_column(String(320))
    purposes: Mapped[list[str]] = mapped_column(JSONType)
    categories: Mapped[list[str]] = mapped_column(JSONType)
    dpa_signed_on: Mapped[date | None] = mapped_column(Date)
    transfer_country: Mapped[str] = mapped_column(String(2))
    transfer_safeguard: Mapped[str | None] = mapped_column(String(32))
    retention: Mapped[str | None] = mapped_column(String(1000))
    erasure_webhook_url: Mapped[str | None] = mapped_column(String(2000))
    active: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ProcessorVersionRow(Base):
    """One version of a processor, never changed: what was written, when and by whom."""

    __tablename__ = "privacy_processor_versions"
    __table_args__ = (
        Index("ix_privacy_processor_versions_ws_recorded", "workspace_id", "recorded_at"),
    )

    processor_id: Mapped[str] = mapped_column(ForeignKey("privacy_processors.id"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"))
    change: Mapped[str] = mapped_column(String(16))  # registered, updated, deactivated
    actor: Mapped[str] = mapped_column(String(200))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())
    document: Mapped[dict[str, Any]] = mapped_column(JSONType)


class ErasureRow(Base):
    """One erasure of a person (GDPR Art. 17): what it reached, and its certificate.

    ``profile_id`` is the unified profile's id as it was (a random id, not personal data); the
    certificate says what was erased, when, by whom, what was kept and why.
    """

    __tablename__ = "privacy_erasures"
    __table_args__ = (Index("ix_privacy_erasures_ws_requested", "workspace_id", "requested_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"))
    profile_id: Mapped[str] = mapped_column(String(36), index=True)
    request_id: Mapped[str | None] = mapped_column(String(36))
    status: Mapped[str] = mapped_column(String(16))  # completed
    actor: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(String(200))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    certificate: Mapped[dict[str, Any]] = mapped_column(JSONType)
    certificate_hash: Mapped[str] = mapped_column(String(64))


class NotificationRow(Base):
    """An erasure notification to a processor's webhook (the outbox), retried until delivered.

    ``payload`` is sealed under a key of the erasure's own, shredded once every notification
    of the erasure is settled, so what it names is not kept a moment longer than needed.
    """

    __tablename__ = "privacy_notifications"
    __table_args__ = (Index("ix_privacy_notifications_due", "status", "next_attempt_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"))
    erasure_id: Mapped[str] = mapped_column(ForeignKey("privacy_erasures.id"), index=True)
    processor_id: Mapped[str] = mapped_column(String(36))
    processor_name: Mapped[str] = mapped_column(String(200))
    url: Mapped[str] = mapped_column(String(2000))
    payload: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))  # pending, delivered, failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class RetentionRow(Base):
    """A workspace's retention policy (days per category; a category left out keeps its
    default) and its last run."""

    __tablename__ = "privacy_retention"

    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"), primary_key=True)
    policies: Mapped[dict[str, Any]] = mapped_column(JSONType)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_by: Mapped[str] = mapped_column(String(200))
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_run: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)

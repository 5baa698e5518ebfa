"""Tables of the privacy capability. Only the privacy services touch them.

``privacy_processors`` holds each processor as it stands now; ``privacy_processor_versions`` keeps
every version ever written (append-only, a JSON document per version), so the register, and the
record of processing activities built from it, can be shown as they stood at a past date.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import Boolean, Date, ForeignKey, Index, Integer, String, UniqueConstraint
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

"""Tables of audience exports: each export and its manifest. Only the export service touches
them (docs/audience-exports.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from consentry.platform.db import Base, JSONType, UTCDateTime


class AudienceExportRow(Base):
    """One export: who, when, what for, where to, and what came of it (no personal data)."""

    __tablename__ = "audience_exports"
    __table_args__ = (Index("ix_audience_exports_ws_created", "workspace_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    actor: Mapped[str] = mapped_column(String(200))
    mode: Mapped[str] = mapped_column(String(16))  # download | partner
    delivery: Mapped[str] = mapped_column(String(16))  # csv | json (a file) | push
    platform: Mapped[str | None] = mapped_column(String(16), nullable=True)  # partner layout
    purpose: Mapped[str] = mapped_column(String(100))
    channel: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(100))  # "profiles" or "segment:<id>"
    destination_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    processor_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    fields: Mapped[list[str]] = mapped_column(JSONType)
    status: Mapped[str] = mapped_column(String(16))  # running | completed | failed
    subjects: Mapped[int] = mapped_column(Integer)  # exported (listed in the manifest)
    batches: Mapped[int] = mapped_column(Integer)  # webhook messages queued (push)
    left_out: Mapped[dict[str, int]] = mapped_column(JSONType)  # reason -> subjects
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)


class AudienceExportSubjectRow(Base):
    """One exported subject in an export's manifest: the unified profile and the consent
    decision that let it out (the ledger record, the reason, the regime)."""

    __tablename__ = "audience_export_subjects"

    export_id: Mapped[str] = mapped_column(
        ForeignKey("audience_exports.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    profile_id: Mapped[str] = mapped_column(String(36))
    record_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    reason: Mapped[str] = mapped_column(String(40))
    regime: Mapped[str] = mapped_column(String(16))

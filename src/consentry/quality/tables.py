"""Tables of the quality capability. Only ``quality.service`` touches them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from consentry.platform.db import Base, JSONType, UTCDateTime


class QualityAuditRow(Base):
    """One data-quality audit of a workspace's unified profiles and its report: completeness
    per field, invalid values by reason, likely duplicates, stale records. The report holds
    counts, field names, problem codes and a few profile ids per problem, never a value."""

    __tablename__ = "quality_audits"
    __table_args__ = (Index("ix_quality_audits_ws_started", "workspace_id", "started_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime())
    profiles: Mapped[int] = mapped_column(Integer)
    actor: Mapped[str] = mapped_column(String(200))
    report: Mapped[dict[str, Any]] = mapped_column(JSONType)

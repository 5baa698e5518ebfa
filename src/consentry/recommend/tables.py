"""Tables of the recommend capability. Only ``recommend.service`` touches them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from consentry.platform.db import Base, JSONType, UTCDateTime


class RecommendModelRow(Base):
    """One trained model of a workspace: its number (``version``, 1, 2, ...), whether it is the
    one served, its manifest and the artefact itself (``recommend.service`` writes and reads it).

    ``revision`` is bumped whenever the stored artefact changes after training (an erasure
    removes a person from it), so that a server holding it in memory loads it again."""

    __tablename__ = "recommend_models"
    __table_args__ = (
        UniqueConstraint("workspace_id", "version", name="uq_recommend_models_version"),
        Index("ix_recommend_models_active", "workspace_id", "active"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"))
    version: Mapped[int] = mapped_column(Integer)
    revision: Mapped[int] = mapped_column(Integer, default=0)
    trained_at: Mapped[datetime] = mapped_column(UTCDateTime())
    as_of: Mapped[datetime] = mapped_column(UTCDateTime())
    active: Mapped[bool] = mapped_column(Boolean)
    manifest: Mapped[dict[str, Any]] = mapped_column(JSONType)
    artefact: Mapped[bytes] = mapped_column(LargeBinary)

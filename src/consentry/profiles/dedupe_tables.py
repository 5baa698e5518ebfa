"""Tables of probabilistic de-duplication (migration 0017). Only ``profiles.dedupe_service``
touches them, apart from erasure, which deletes a person's candidate pairs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from consentry.platform.db import Base, JSONType, UTCDateTime


class DedupeRunRow(Base):
    """One batch or incremental run: the trained Fellegi-Sunter parameters it scored with
    (``model``: comparisons, m, u and the prior; never a record's value) and what it did."""

    __tablename__ = "dedupe_runs"
    __table_args__ = (Index("ix_dedupe_runs_ws_started", "workspace_id", "started_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"))
    mode: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime())
    profiles: Mapped[int] = mapped_column(Integer)
    pairs: Mapped[int] = mapped_column(BigInteger)
    auto_merged: Mapped[int] = mapped_column(Integer)
    queued: Mapped[int] = mapped_column(Integer)
    model: Mapped[dict[str, Any]] = mapped_column(JSONType)
    report: Mapped[dict[str, Any]] = mapped_column(JSONType)


class MatchCandidateRow(Base):
    """A pair of profiles that may be one person (``profile_a`` < ``profile_b``, the unified
    profiles they were when found), its match probability and per-field explanation (field
    names, levels and weights only), and its fate: ``merged`` automatically, ``pending`` review,
    ``approved`` (merged by a reviewer), ``rejected`` (never proposed again) or ``unified``
    (the two became one profile some other way before anybody decided)."""

    __tablename__ = "match_candidates"
    __table_args__ = (
        UniqueConstraint("workspace_id", "profile_a", "profile_b", name="uq_match_candidates_pair"),
        Index("ix_match_candidates_queue", "workspace_id", "status", "probability"),
        Index("ix_match_candidates_b", "workspace_id", "profile_b"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"))
    profile_a: Mapped[str] = mapped_column(String(36))
    profile_b: Mapped[str] = mapped_column(String(36))
    probability: Mapped[float] = mapped_column(Float)
    match_weight: Mapped[float] = mapped_column(Float)
    explanation: Mapped[dict[str, Any]] = mapped_column(JSONType)
    status: Mapped[str] = mapped_column(String(16))
    run_id: Mapped[str] = mapped_column(String(36))
    found_at: Mapped[datetime] = mapped_column(UTCDateTime())
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    decided_by: Mapped[str | None] = mapped_column(String(200))
    note: Mapped[str | None] = mapped_column(String(500))

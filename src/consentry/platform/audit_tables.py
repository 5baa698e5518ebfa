"""Tables of the audit trail. Only :mod:`consentry.platform.audit` touches them.

``audit_entries`` is append-only and hash-chained per workspace; ``audit_chain_heads`` holds each
workspace's last seq and hash, so a truncated tail is detected. Neither holds personal data.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from consentry.platform.db import Base, JSONType, UTCDateTime

SeqType = BigInteger().with_variant(Integer(), "sqlite")


class AuditEntryRow(Base):
    """One entry of the trail. Never updated or deleted by the code."""

    __tablename__ = "audit_entries"
    __table_args__ = (
        UniqueConstraint("workspace_id", "seq"),
        Index("ix_audit_entries_ws_target", "workspace_id", "target_id"),
        Index("ix_audit_entries_ws_at", "workspace_id", "at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"))
    seq: Mapped[int] = mapped_column(SeqType)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str] = mapped_column(String(32))
    target_id: Mapped[str | None] = mapped_column(String(100))
    reason: Mapped[str] = mapped_column(String(200))
    details: Mapped[dict[str, str | int | bool]] = mapped_column(JSONType)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditChainHeadRow(Base):
    """The last entry of a workspace's trail: where the next append links to."""

    __tablename__ = "audit_chain_heads"

    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"), primary_key=True)
    seq: Mapped[int] = mapped_column(SeqType)
    hash: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

"""Tables of the consent capability. Only the consent services touch them.

``consent_records`` is append-only and hash-chained per workspace; ``consent_state`` is the current
state per profile, purpose and channel, written in the same transaction as each record;
``consent_chain_heads`` holds each workspace's last seq and hash, so a truncated tail is detected.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from consentry.platform.db import Base, JSONType, UTCDateTime
from consentry.profiles.tables import BigId


class ConsentRecordRow(Base):
    """One record of the ledger. Never updated in place (privacy may erase ``proof`` only)."""

    __tablename__ = "consent_records"
    __table_args__ = (
        UniqueConstraint("workspace_id", "seq"),
        Index("ix_consent_records_ws_profile", "workspace_id", "profile_id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"))
    seq: Mapped[int] = mapped_column(BigId)
    profile_id: Mapped[str] = mapped_column(String(36))
    purpose: Mapped[str] = mapped_column(String(100))
    channel: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    legal_basis: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(32))
    notice_version: Mapped[str | None] = mapped_column(String(100))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    proof: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    proof_digest: Mapped[str] = mapped_column(String(64))
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class ConsentStateRow(Base):
    """The latest record (by occurred_at) of each profile, purpose and channel."""

    __tablename__ = "consent_state"
    __table_args__ = (
        # covering: consent.policy reads a purpose's states from the index alone (0026)
        Index(
            "ix_consent_state_policy",
            "workspace_id",
            "purpose",
            "channel",
            "profile_id",
            "state",
            "legal_basis",
            "record_id",
            "occurred_at",
            "expires_at",
        ),
    )

    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"), primary_key=True)
    profile_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(100), primary_key=True)
    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    legal_basis: Mapped[str] = mapped_column(String(32))
    record_id: Mapped[str] = mapped_column(String(36))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ConsentChainHeadRow(Base):
    """The last record of a workspace's chain: where the next append links to."""

    __tablename__ = "consent_chain_heads"

    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"), primary_key=True)
    seq: Mapped[int] = mapped_column(BigId)
    hash: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ConsentSettingsRow(Base):
    """A workspace's purposes and default regime; a workspace without a row uses the defaults."""

    __tablename__ = "consent_settings"

    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"), primary_key=True)
    default_regime: Mapped[str] = mapped_column(String(16))
    purposes: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ConsentNoticeRow(Base):
    """The exact text shown to customers for a purpose, one row per version and language.

    Never edited: a changed text is a new version. ``content_hash`` is the SHA-256 of the text,
    so a record naming a notice proves what the customer was shown.
    """

    __tablename__ = "consent_notices"
    __table_args__ = (
        UniqueConstraint("workspace_id", "version", "language"),
        Index("ix_consent_notices_ws_hash", "workspace_id", "content_hash"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"))
    version: Mapped[str] = mapped_column(String(100))
    language: Mapped[str] = mapped_column(String(16))
    purposes: Mapped[list[str]] = mapped_column(JSONType)
    title: Mapped[str] = mapped_column(String(300))
    text: Mapped[str] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ConsentBrandingRow(Base):
    """How a workspace's customer-facing pages look: name, colours, logo, languages, links."""

    __tablename__ = "consent_branding"

    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"), primary_key=True)
    brand_name: Mapped[str] = mapped_column(String(200))
    primary_color: Mapped[str] = mapped_column(String(7))  # #rrggbb
    logo_url: Mapped[str | None] = mapped_column(String(2000))
    default_language: Mapped[str] = mapped_column(String(16))
    privacy_policy_url: Mapped[str | None] = mapped_column(String(2000))
    support_email: Mapped[str | None] = mapped_column(String(320))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ConsentSignalSettingsRow(Base):
    """How a workspace reads consent signals on events: its own category names of
    ``context.consent.categoryPreferences`` (normalised) and the purposes each maps to, added
    to or replacing the defaults of ``consent.signals``."""

    __tablename__ = "consent_signal_settings"

    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"), primary_key=True)
    categories: Mapped[dict[str, list[str]]] = mapped_column(JSONType)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

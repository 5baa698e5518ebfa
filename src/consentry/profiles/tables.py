"""Tables of the profiles capability. Only ``profiles.service`` touches them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from consentry.platform.db import Base, JSONType, UTCDateTime

BigId = BigInteger().with_variant(Integer(), "sqlite")


class ProfileRow(Base):
    """A profile. ``canonical_id`` names the unified profile it belongs to (itself if not merged);
    ``merged_into`` is the direct parent of the merge tree, so an unmerge can restore a subtree."""

    __tablename__ = "profiles"
    __table_args__ = (Index("ix_profiles_ws_canonical", "workspace_id", "canonical_id", "id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"))
    canonical_id: Mapped[str] = mapped_column(String(36))
    merged_into: Mapped[str | None] = mapped_column(String(36), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime())


class IdentifierRow(Base):
    """An identifier, attached to the profile that first carried it. ``value`` is its blind
    index (equality look-ups); ``sealed`` the value itself, sealed under the profile's key."""

    __tablename__ = "identifiers"
    __table_args__ = (UniqueConstraint("workspace_id", "type", "value"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"))
    profile_id: Mapped[str] = mapped_column(ForeignKey("profiles.id"), index=True)
    type: Mapped[str] = mapped_column(String(64))
    value: Mapped[str] = mapped_column(String(512))
    sealed: Mapped[str | None] = mapped_column(Text)
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime())
    source_message_id: Mapped[str | None] = mapped_column(String(128))


class TraitHistoryRow(Base):
    """Every observed trait value; the current value is the latest by event time."""

    __tablename__ = "trait_history"
    __table_args__ = (Index("ix_trait_history_profile", "profile_id", "key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"), index=True)
    profile_id: Mapped[str] = mapped_column(ForeignKey("profiles.id"))
    key: Mapped[str] = mapped_column(String(200))
    value: Mapped[Any] = mapped_column(JSONType, nullable=True)
    observed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    source_message_id: Mapped[str | None] = mapped_column(String(128))


class CurrentTraitRow(Base):
    """The current value of each trait of a unified profile, kept in step with the history."""

    __tablename__ = "profile_traits"
    __table_args__ = (Index("ix_profile_traits_ws_key", "workspace_id", "key"),)

    canonical_id: Mapped[str] = mapped_column(ForeignKey("profiles.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"), index=True)
    value: Mapped[Any] = mapped_column(JSONType, nullable=True)
    observed_at: Mapped[datetime] = mapped_column(UTCDateTime())


class MergeRow(Base):
    """One merge of ``loser_id`` into ``winner_id``; ``undone_at`` is set by an unmerge."""

    __tablename__ = "profile_merges"
    __table_args__ = (
        Index("ix_profile_merges_ws_winner", "workspace_id", "winner_id"),
        # what changed since a time (segments' catch-up, every few seconds)
        Index("ix_profile_merges_ws_created", "workspace_id", "created_at"),
        Index("ix_profile_merges_ws_undone", "workspace_id", "undone_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"))
    winner_id: Mapped[str] = mapped_column(ForeignKey("profiles.id"))
    loser_id: Mapped[str] = mapped_column(ForeignKey("profiles.id"), index=True)
    reason: Mapped[str] = mapped_column(Text)
    source_message_id: Mapped[str | None] = mapped_column(String(128))
    actor: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    undone_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    undone_by: Mapped[str | None] = mapped_column(String(200))


class MergeBlockRow(Base):
    """Two profiles that an unmerge separated; automatic resolution never joins them again."""

    __tablename__ = "merge_blocks"
    __table_args__ = (UniqueConstraint("workspace_id", "profile_a", "profile_b"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"))
    profile_a: Mapped[str] = mapped_column(ForeignKey("profiles.id"), index=True)
    profile_b: Mapped[str] = mapped_column(ForeignKey("profiles.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class IdentityWarningRow(Base):
    """A link that was refused (cap, block, junk); the event itself is still stored."""

    __tablename__ = "identity_warnings"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"), index=True)
    profile_id: Mapped[str | None] = mapped_column(String(36), index=True)
    source_message_id: Mapped[str | None] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SuppressionRow(Base):
    """An identifier of an erased person (its type and blind index): messages that carry it are
    dropped, so late or replayed events do not bring the person back. ``lifted_at`` is set when
    the person came back by a new, explicit action; ``generation`` counts those returns (it
    names fresh keys for the identity's events, as the old ones were shredded)."""

    __tablename__ = "identity_suppressions"

    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"), primary_key=True)
    type: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(64), primary_key=True)
    erasure_id: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    lifted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    lifted_by: Mapped[str | None] = mapped_column(String(200))
    generation: Mapped[int] = mapped_column(Integer, default=0)


class PersonalTraitRow(Base):
    """A trait the workspace marked personal (:mod:`consentry.profiles.personal`): its values
    are stored sealed like those of the built-in personal names. Never removed."""

    __tablename__ = "personal_traits"

    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"), primary_key=True)
    slug: Mapped[str] = mapped_column(String(200), primary_key=True)
    key: Mapped[str] = mapped_column(String(200))
    marked_at: Mapped[datetime] = mapped_column(UTCDateTime())
    marked_by: Mapped[str] = mapped_column(String(200))

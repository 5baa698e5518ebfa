"""Tables of the recommend capability, and the reads of a stored artefact's members. Only
``recommend.service`` (and serving's loading of the active version) touch them."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from numpy.typing import NDArray
from sqlalchemy import (
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    and_,
    or_,
    select,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from consentry.platform.db import Base, JSONType, UTCDateTime
from consentry.recommend import container
from consentry.recommend.artefact import ArtefactError


class RecommendModelRow(Base):
    """One trained model of a workspace: its number (``version``, 1, 2, ...), whether it is the
    one served, its manifest, and its arrays: as rows of ``recommend_model_blocks`` (the
    manifest's layout is ``container.LAYOUT``; ``artefact`` is NULL), or, for a version stored
    before migration 0027 that could not be converted, in ``artefact`` (an npz file or one
    blob of blocks), converted by the first erasure that meets it.

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
    artefact: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)


class RecommendModelBlockRow(Base):
    """One member of a stored model's artefact (``recommend.container``): a block of
    ``block_rows`` rows of a per-customer array (``member`` the array's name, ``block`` its
    number), or a whole array (block 0), zlib-compressed. The manifest's layout records each
    member's length and SHA-256, checked on every read. Training writes them in bulk; an
    erasure rewrites only the blocks holding the person; pruning deletes a version's."""

    __tablename__ = "recommend_model_blocks"

    model_id: Mapped[str] = mapped_column(ForeignKey("recommend_models.id"), primary_key=True)
    member: Mapped[str] = mapped_column(String(64), primary_key=True)
    block: Mapped[int] = mapped_column(Integer, primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"))
    data: Mapped[bytes] = mapped_column(LargeBinary)


class RecommendModelSubjectRow(Base):
    """Where a customer is in a stored artefact: its ``row_index`` in the per-customer arrays of
    the artefact ``artefact_id`` (the manifest's ``artefact_id``, drawn at training; a version
    stored as a copy of another shares its entries). Written in bulk at training, so that an
    access request or an erasure finds the versions holding a person, and their rows, without
    unpacking any artefact. An erasure deletes the person's entries; pruning old versions
    deletes the entries of artefacts that no stored version refers to any more."""

    __tablename__ = "recommend_model_subjects"
    __table_args__ = (Index("ix_recommend_model_subjects_profile", "workspace_id", "profile_id"),)

    artefact_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    row_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"))
    profile_id: Mapped[str] = mapped_column(String(36))


def stored_members(
    session: Session, row: RecommendModelRow, keys: Collection[container.Key] | None = None
) -> dict[container.Key, bytes]:
    """The member rows of a stored version (all, or only ``keys``), by (member, block)."""
    b = RecommendModelBlockRow
    query = select(b.member, b.block, b.data).where(
        b.model_id == row.id, b.workspace_id == row.workspace_id
    )
    if keys is not None:
        if not keys:
            return {}
        by_name: dict[str, set[int]] = {}
        for name, block in keys:
            by_name.setdefault(name, set()).add(block)
        query = query.where(
            or_(*(and_(b.member == n, b.block.in_(sorted(bs))) for n, bs in by_name.items()))
        )
    return {(member, int(block)): bytes(data) for member, block, data in session.execute(query)}


def stored_arrays(
    session: Session, row: RecommendModelRow, names: Collection[str] | None = None
) -> dict[str, NDArray[Any]]:
    """The arrays of a stored version (only ``names`` when given), read from its member rows
    (or from ``artefact`` for a version stored before migration 0027), each checked."""
    if container.is_rows(row.manifest):
        keys = None if names is None else container.members_of(row.manifest, names)
        return container.unpack_members(row.manifest, stored_members(session, row, keys), names)
    if row.artefact is None:
        raise ArtefactError("the stored artefact is missing")
    return container.unpack(row.manifest, row.artefact, names)

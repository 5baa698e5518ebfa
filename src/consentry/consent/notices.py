"""Consent notices: the exact text a customer was shown, versioned, per language, by content hash.

A notice version is published once per language and never edited: publishing the same text again
is a no-op, a different text under the same version and language is refused (publish a new
version). Once a workspace has published notices, every consent record that names a notice
version must name a published one that covers the record's purpose, so a record proves which
words the customer agreed to. Functions take a session and never commit.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
import uuid
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from consentry.consent.tables import ConsentNoticeRow
from consentry.errors import Conflict, FieldError, Invalid, NotFound
from consentry.platform import tenancy
from consentry.platform.db import utcnow

_LANGUAGE = re.compile(r"^[a-z]{2,3}(-[A-Z]{2})?$")  # en, fr, pt-BR


class NoticeIn(BaseModel):
    """A notice as published through the API."""

    model_config = ConfigDict(extra="forbid")

    version: str = Field(..., min_length=1, max_length=100, examples=["2026-11"])
    language: str = Field(..., min_length=2, max_length=16, examples=["en", "pt-BR"])
    purposes: list[str] = Field(..., min_length=1, max_length=50)
    title: str = Field(..., min_length=1, max_length=300)
    text: str = Field(..., min_length=1, max_length=100_000)


@dataclass(frozen=True, slots=True)
class Notice:
    """A published notice."""

    id: str
    version: str
    language: str
    purposes: list[str]
    title: str
    text: str
    content_hash: str
    created_at: datetime


def content_hash(title: str, text: str) -> str:
    """SHA-256 of the notice's title and text in Unicode NFC, so equal texts hash equally."""
    canonical = unicodedata.normalize("NFC", f"{title}\n\n{text}")
    return hashlib.sha256(canonical.encode()).hexdigest()


def problems(notice: NoticeIn, known_purposes: Collection[str]) -> list[FieldError]:
    """What is wrong with a notice before it is published."""
    errors = []
    if not _LANGUAGE.match(notice.language):
        errors.append(FieldError("language", "a language tag such as en, fr or pt-BR"))
    for index, purpose in enumerate(notice.purposes):
        if purpose not in known_purposes:
            errors.append(FieldError(f"purposes.{index}", f"unknown purpose {purpose!r}"))
    return errors


def _notice(row: ConsentNoticeRow) -> Notice:
    return Notice(
        id=row.id,
        version=row.version,
        language=row.language,
        purposes=list(row.purposes),
        title=row.title,
        text=row.text,
        content_hash=row.content_hash,
        created_at=row.created_at,
    )


def publish(
    *, session: Session, workspace_id: str, notice: NoticeIn, known_purposes: Collection[str]
) -> tuple[Notice, bool]:
    """Publish ``notice``; return it and whether it is new (an identical one is kept as is)."""
    errors = problems(notice, known_purposes)
    if errors:
        raise Invalid("the notice is not valid; nothing was published", errors)
    tenancy.get_workspace(session=session, workspace_id=workspace_id)
    digest = content_hash(notice.title, notice.text)
    existing = session.scalars(
        select(ConsentNoticeRow).where(
            ConsentNoticeRow.workspace_id == workspace_id,
            ConsentNoticeRow.version == notice.version,
            ConsentNoticeRow.language == notice.language,
        )
    ).first()
    if existing is not None:
        if existing.content_hash == digest and sorted(existing.purposes) == sorted(notice.purposes):
            return _notice(existing), False
        raise Conflict(
            f"notice version {notice.version!r} in {notice.language!r} is already published "
            "with other content; notices are never edited, publish a new version",
            [FieldError("version", "already published with other content")],
        )
    row = ConsentNoticeRow(
        id=str(uuid.uuid4()),
        workspace_id=workspace_id,
        version=notice.version,
        language=notice.language,
        purposes=sorted(set(notice.purposes)),
        title=notice.title,
        text=notice.text,
        content_hash=digest,
        created_at=utcnow(),
    )
    session.add(row)
    session.flush()
    return _notice(row), True


def list_notices(
    *,
    session: Session,
    workspace_id: str,
    version: str | None = None,
    language: str | None = None,
) -> list[Notice]:
    """The workspace's notices, newest first, optionally of one version and/or language."""
    query = select(ConsentNoticeRow).where(ConsentNoticeRow.workspace_id == workspace_id)
    if version is not None:
        query = query.where(ConsentNoticeRow.version == version)
    if language is not None:
        query = query.where(ConsentNoticeRow.language == language)
    rows = session.scalars(query.order_by(ConsentNoticeRow.created_at.desc()))
    return [_notice(row) for row in rows]


def get_notice(*, session: Session, workspace_id: str, notice_id: str) -> Notice:
    """One notice of the workspace."""
    row = session.get(ConsentNoticeRow, notice_id)
    if row is None or row.workspace_id != workspace_id:
        raise NotFound("no such notice")
    return _notice(row)


def reference_problems(
    session: Session, workspace_id: str, references: Sequence[tuple[str | None, str]]
) -> list[tuple[int, FieldError]]:
    """For (notice_version, purpose) pairs about to be recorded: the ones naming no published
    notice covering that purpose, by position. Nothing is checked until the workspace has
    published a notice."""
    versions = {version for version, _ in references if version is not None}
    if not versions:
        return []
    published = session.execute(
        select(ConsentNoticeRow.version, ConsentNoticeRow.purposes).where(
            ConsentNoticeRow.workspace_id == workspace_id
        )
    ).all()
    if not published:
        return []
    covers: dict[str, set[str]] = {}
    for version, purposes in published:
        covers.setdefault(version, set()).update(purposes)
    return list(_unpublished(references, covers))


def _unpublished(
    references: Iterable[tuple[str | None, str]], covers: dict[str, set[str]]
) -> Iterable[tuple[int, FieldError]]:
    for index, (version, purpose) in enumerate(references):
        if version is None:
            continue
        if version not in covers:
            yield index, FieldError("notice_version", f"no published notice {version!r}")
        elif purpose not in covers[version]:
            reason = f"notice {version!r} does not cover the purpose {purpose!r}"
            yield index, FieldError("notice_version", reason)


def hashes_of(*, session: Session, workspace_id: str, version: str) -> dict[str, str]:
    """The content hash of each language of a notice version."""
    rows = session.execute(
        select(ConsentNoticeRow.language, ConsentNoticeRow.content_hash).where(
            ConsentNoticeRow.workspace_id == workspace_id, ConsentNoticeRow.version == version
        )
    ).all()
    return {str(language): str(digest) for language, digest in rows}

"""Tables of data-subject requests. Only the privacy services touch them.

``privacy_requests`` holds each request as it stands; ``privacy_request_events`` every step it
took (append-only): received, verified, started, extended, linked, reminded, closed, with who
and when. The requester's email is never stored in clear: ``email_index`` is its blind index
(duplicates, the person's access archive) and ``email_sealed`` the value sealed under the
request's own key (subject = the request id), to write to the person.

``privacy_request_attempts`` counts what the public form and API were asked (a request filed,
a new code, a code tried) for the limits of the intake; no personal data in clear: ``key`` is
the email's blind index, a keyed hash of the client's network, or the request id. An attempt
is deleted once it is older than the longest window.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from consentry.platform.db import Base, JSONType, UTCDateTime


class RequestRow(Base):
    """A data-subject request of a workspace, at its current status."""

    __tablename__ = "privacy_requests"
    __table_args__ = (
        Index("ix_privacy_requests_ws_status_due", "workspace_id", "status", "due_at"),
        Index("ix_privacy_requests_ws_email", "workspace_id", "email_index"),
        Index("ix_privacy_requests_ws_profile", "workspace_id", "profile_id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"))
    type: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    jurisdiction: Mapped[str] = mapped_column(String(16))
    country: Mapped[str | None] = mapped_column(String(2))
    source: Mapped[str] = mapped_column(String(16))
    profile_id: Mapped[str | None] = mapped_column(String(36))
    email_index: Mapped[str | None] = mapped_column(String(64))
    email_sealed: Mapped[str | None] = mapped_column(Text)
    message_sealed: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    due_at: Mapped[datetime] = mapped_column(UTCDateTime())
    original_due_at: Mapped[datetime] = mapped_column(UTCDateTime())
    verify_by: Mapped[datetime] = mapped_column(UTCDateTime())
    extended: Mapped[bool] = mapped_column(Boolean, default=False)
    extension_reason: Mapped[str | None] = mapped_column(String(200))
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    verified_by: Mapped[str | None] = mapped_column(String(16))
    code_hash: Mapped[str | None] = mapped_column(String(64))
    code_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    code_attempts: Mapped[int] = mapped_column(Integer, default=0)
    codes_sent: Mapped[int] = mapped_column(Integer, default=0)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resolution: Mapped[str | None] = mapped_column(String(200))
    duplicate_of: Mapped[str | None] = mapped_column(String(36))
    reminders_sent: Mapped[list[int]] = mapped_column(JSONType, default=list)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RequestEventRow(Base):
    """One step of a request, never changed."""

    __tablename__ = "privacy_request_events"

    request_id: Mapped[str] = mapped_column(ForeignKey("privacy_requests.id"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(32))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(200))
    details: Mapped[dict[str, Any]] = mapped_column(JSONType)


class RequestAttemptRow(Base):
    """One counted attempt at the public intake: ``kind`` says what it counts against
    (``requests.BY_EMAIL``, ``BY_NETWORK``, ``BY_REQUEST``, ``BY_CODE_NETWORK``), ``key`` whom."""

    __tablename__ = "privacy_request_attempts"
    __table_args__ = (
        Index("ix_privacy_request_attempts_key", "workspace_id", "kind", "key", "at"),
        Index("ix_privacy_request_attempts_at", "at"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"))
    kind: Mapped[str] = mapped_column(String(16))
    key: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime())

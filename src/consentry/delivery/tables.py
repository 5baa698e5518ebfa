"""Tables of the delivery capability. Only the delivery services touch them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from consentry.platform.db import Base, JSONType, UTCDateTime


class DestinationRow(Base):
    """A named endpoint messages go to, bound to a registered processor and a purpose.

    ``secret`` (webhook and SMS kinds) signs what is posted; it is sealed under the
    destination's own key. ``failures`` counts consecutive failed attempts and
    ``paused_until`` is the destination's circuit: while it is in the future, nothing is sent
    there and the other destinations go on."""

    __tablename__ = "destinations"
    __table_args__ = (UniqueConstraint("workspace_id", "name_key"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"))
    name: Mapped[str] = mapped_column(String(200))
    name_key: Mapped[str] = mapped_column(String(64))  # sha256 of the case-folded name
    kind: Mapped[str] = mapped_column(String(16))  # email, sms, webhook
    processor_id: Mapped[str] = mapped_column(String(36))
    purpose: Mapped[str] = mapped_column(String(100))
    channel: Mapped[str] = mapped_column(String(16))
    categories: Mapped[list[str]] = mapped_column(JSONType)
    url: Mapped[str | None] = mapped_column(String(2000))
    from_address: Mapped[str | None] = mapped_column(String(320))
    from_name: Mapped[str | None] = mapped_column(String(200))
    secret: Mapped[str | None] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    paused_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(200))


class OutboxMessageRow(Base):
    """One message to deliver, exactly once per ``key`` in a workspace.

    ``to`` and ``content`` are sealed (under the subject's key, or a key of the message's own
    when it has no subject) and dropped once the message is sent or cancelled. ``status``:
    queued, sending (claimed by a worker until ``lease_until``), sent, retrying, dead (the
    dead-letter list), cancelled. ``last_error`` never holds personal data."""

    __tablename__ = "outbox_messages"
    __table_args__ = (
        UniqueConstraint("workspace_id", "key"),
        Index("ix_outbox_messages_due", "status", "next_attempt_at"),
        Index("ix_outbox_messages_destination", "destination_id", "status"),
        Index("ix_outbox_messages_subject", "workspace_id", "subject_id", "channel", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"))
    destination_id: Mapped[str] = mapped_column(ForeignKey("destinations.id"))
    key: Mapped[str] = mapped_column(String(200))
    subject_id: Mapped[str | None] = mapped_column(String(36))
    purpose: Mapped[str | None] = mapped_column(String(100))
    channel: Mapped[str] = mapped_column(String(16))
    to: Mapped[str | None] = mapped_column(Text)
    content: Mapped[str | None] = mapped_column(Text)
    origin: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    claim: Mapped[str | None] = mapped_column(String(36))
    last_error: Mapped[str | None] = mapped_column(String(500))
    provider_message_id: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class SuppressionRow(Base):
    """An address nothing is sent to over a channel: a blind index of the normalised address
    (never the address), why (manual, bounce, complaint, unsubscribe), when and by whom."""

    __tablename__ = "delivery_suppressions"
    __table_args__ = (UniqueConstraint("workspace_id", "channel", "address_index"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"))
    channel: Mapped[str] = mapped_column(String(16))
    address_index: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(200))

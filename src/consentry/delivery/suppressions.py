"""The global suppression list: addresses nothing is sent to, whatever consent says.

An address lands here by hand (``manual``), or because the mail server bounced it, the person
complained, or they unsubscribed. It is normalised the way identity normalises it (email:
trimmed, NFKC, lower-cased, IDNA domain; phone: E.164) and stored only as a blind index, so
the list can be checked without holding the address. The outbox checks it at every attempt
(:func:`consentry.delivery.outbox.deliver_due`). Functions take a session and keyword-only
arguments and never commit.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from consentry.delivery.tables import SuppressionRow
from consentry.errors import FieldError, Invalid, NotFound
from consentry.platform import audit
from consentry.platform.db import utcnow
from consentry.platform.vault import vault_of
from consentry.profiles.models import normalize_email, normalize_phone

CHANNELS = ("email", "sms")
REASONS = ("manual", "bounce", "complaint", "unsubscribe")
INDEX_KIND = "delivery.suppression"  # the blind index's own kind: not the identifiers'
ACTION_ADD = "delivery.suppression_added"
ACTION_REMOVE = "delivery.suppression_removed"
MAX_PAGE = 1000
MAX_OFFSET = 10**9


@dataclass(frozen=True, slots=True)
class Suppression:
    """An entry of the list: never the address, only its channel, why, when and who."""

    id: str
    channel: str
    reason: str
    created_at: datetime
    created_by: str

    def document(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "channel": self.channel,
            "reason": self.reason,
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
        }


def normalize_address(channel: str, address: str, *, default_region: str = "US") -> str | None:
    """The normalised form of ``address`` on ``channel`` (None when it is not one)."""
    if channel == "email":
        return normalize_email(address)
    if channel == "sms":
        return normalize_phone(address, default_region)
    return None


def _checked(channel: str, address: str, default_region: str) -> str:
    if channel not in CHANNELS:
        raise Invalid("unknown channel", [FieldError("channel", f"one of {', '.join(CHANNELS)}")])
    normalised = normalize_address(channel, address, default_region=default_region)
    if normalised is None:
        what = "an email address" if channel == "email" else "a phone number"
        raise Invalid("not an address", [FieldError("address", f"not {what}")])
    return normalised


def _index(session: Session, workspace_id: str, channel: str, normalised: str) -> str:
    return vault_of(session).index(workspace_id, f"{INDEX_KIND}:{channel}", normalised)


def add(
    *,
    session: Session,
    workspace_id: str,
    channel: str,
    address: str,
    reason: str,
    actor: str,
    default_region: str = "US",
) -> tuple[Suppression, bool]:
    """Put ``address`` on the list for ``channel``: the entry, and whether it is new (an
    address already listed keeps its first entry). Invalid names a bad field."""
    if reason not in REASONS:
        raise Invalid("unknown reason", [FieldError("reason", f"one of {', '.join(REASONS)}")])
    normalised = _checked(channel, address, default_region)
    index = _index(session, workspace_id, channel, normalised)
    found = _row(session, workspace_id, channel, index)
    if found is not None:
        return _suppression(found), False
    row = SuppressionRow(
        id=str(uuid.uuid4()),
        workspace_id=workspace_id,
        channel=channel,
        address_index=index,
        reason=reason,
        created_at=utcnow(),
        created_by=actor[:200],
    )
    try:
        with session.begin_nested():  # the same address listed at the same moment elsewhere
            session.add(row)
    except IntegrityError:
        again = _row(session, workspace_id, channel, index)
        if again is None:
            raise
        return _suppression(again), False
    audit.record(
        session=session,
        workspace_id=workspace_id,
        actor=actor,
        action=ACTION_ADD,
        target_type="suppression",
        target_id=row.id,
        reason=f"suppressed: {reason}",
        details={"channel": channel, "reason": reason},
    )
    return _suppression(row), True


def remove(*, session: Session, workspace_id: str, suppression_id: str, actor: str) -> None:
    """Take an entry off the list (NotFound when the workspace has none with this id)."""
    row = session.get(SuppressionRow, suppression_id)
    if row is None or row.workspace_id != workspace_id:
        raise NotFound(f"no suppression {suppression_id[:100]!r} in this workspace")
    session.delete(row)
    audit.record(
        session=session,
        workspace_id=workspace_id,
        actor=actor,
        action=ACTION_REMOVE,
        target_type="suppression",
        target_id=suppression_id,
        reason="suppression lifted",
        details={"channel": row.channel, "reason": row.reason},
    )


def find(
    *, session: Session, workspace_id: str, channel: str, address: str, default_region: str = "US"
) -> Suppression | None:
    """The entry that suppresses ``address`` on ``channel``, or None. Invalid for an address
    that is not one."""
    normalised = _checked(channel, address, default_region)
    row = _row(session, workspace_id, channel, _index(session, workspace_id, channel, normalised))
    return _suppression(row) if row is not None else None


def is_suppressed(
    *, session: Session, workspace_id: str, channel: str, address: str, default_region: str = "US"
) -> bool:
    """Whether nothing may be sent to ``address`` over ``channel``. An address that does not
    normalise on its channel cannot be delivered to either: it counts as suppressed."""
    if channel not in CHANNELS:
        return False  # a webhook has no address to suppress
    normalised = normalize_address(channel, address, default_region=default_region)
    if normalised is None:
        return True
    index = _index(session, workspace_id, channel, normalised)
    return _row(session, workspace_id, channel, index) is not None


def list_suppressions(
    *,
    session: Session,
    workspace_id: str,
    channel: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[int, list[Suppression]]:
    """How many entries there are (of ``channel``) and one page of them, newest first."""
    where = [SuppressionRow.workspace_id == workspace_id]
    if channel is not None:
        where.append(SuppressionRow.channel == channel)
    total = session.scalar(select(func.count()).select_from(SuppressionRow).where(*where))
    rows = session.scalars(
        select(SuppressionRow)
        .where(*where)
        .order_by(SuppressionRow.created_at.desc(), SuppressionRow.id)
        .limit(min(max(limit, 1), MAX_PAGE))
        .offset(min(max(offset, 0), MAX_OFFSET))
    )
    return int(total or 0), [_suppression(r) for r in rows]


def _row(session: Session, workspace_id: str, channel: str, index: str) -> SuppressionRow | None:
    return session.scalars(
        select(SuppressionRow).where(
            SuppressionRow.workspace_id == workspace_id,
            SuppressionRow.channel == channel,
            SuppressionRow.address_index == index,
        )
    ).first()


def _suppression(row: SuppressionRow) -> Suppression:
    return Suppression(row.id, row.channel, row.reason, row.created_at, row.created_by)

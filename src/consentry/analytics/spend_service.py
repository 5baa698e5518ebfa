"""Marketing spend in the store: replace entries, list them. Audited as workspace changes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from consentry.analytics.spend import Spend
from consentry.analytics.tables import MarketingSpendRow
from consentry.platform import audit
from consentry.platform.db import utcnow


def record(*, session: Session, workspace_id: str, entries: Sequence[Spend], actor: str) -> int:
    """Set the spend of each (month, channel) given; others stay. Returns how many were set."""
    now = utcnow()
    audit.record(
        session=session,
        workspace_id=workspace_id,
        actor=actor,
        action="analytics.marketing_spend",
        target_type="workspace",
        target_id=workspace_id,
        reason="marketing spend entered",
        details={"entries": len(entries), "months": len({e.month for e in entries})},
        at=now,
    )
    s = MarketingSpendRow
    existing = {
        (row.month, row.channel): row
        for row in session.scalars(
            select(s).where(s.workspace_id == workspace_id, s.month.in_({e.month for e in entries}))
        )
    }
    for entry in entries:
        row = existing.get((entry.month, entry.channel))
        if row is None:
            session.add(
                s(
                    workspace_id=workspace_id,
                    month=entry.month,
                    channel=entry.channel,
                    cents=entry.cents,
                    updated_at=now,
                )
            )
        else:
            row.cents, row.updated_at = entry.cents, now
    return len(entries)


def listing(*, session: Session, workspace_id: str) -> list[dict[str, Any]]:
    """Every entry, by month then channel."""
    rows = session.scalars(
        select(MarketingSpendRow)
        .where(MarketingSpendRow.workspace_id == workspace_id)
        .order_by(MarketingSpendRow.month, MarketingSpendRow.channel)
    )
    return [
        {
            "month": r.month,
            "channel": r.channel,
            "amount": r.cents / 100,
            "updated_at": r.updated_at,
        }
        for r in rows
    ]

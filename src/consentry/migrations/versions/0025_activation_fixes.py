"""audiences: the catch-up follows consent changes and merges

``audience_cursors.last_consent_seq``: how far the incremental catch-up has read the workspace's
consent ledger (by its ``seq``), so segments whose rules read consent follow a consent change
within seconds, as event-driven rules follow events; existing cursors start at the ledger's
head (the membership they hold was computed with every record before it).
``audience_cursors.merges_seen_at``: when the catch-up last looked for merges and unmerges, so
a profile merged away by hand or by de-duplication (no event names it) leaves its segments.

Revision ID: 0025
Revises: 0024
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("audience_cursors") as batch:
        batch.add_column(sa.Column("last_consent_seq", BIG_ID, nullable=False, server_default="0"))
        batch.add_column(sa.Column("merges_seen_at", WHEN, nullable=True))
    op.execute(
        "UPDATE audience_cursors SET last_consent_seq = COALESCE((SELECT h.seq FROM "
        "consent_chain_heads h WHERE h.workspace_id = audience_cursors.workspace_id), 0)"
    )


def downgrade() -> None:
    with op.batch_alter_table("audience_cursors") as batch:
        batch.drop_column("merges_seen_at")
        batch.drop_column("last_consent_seq")

"""ingest cursors: events are acknowledged once stored and applied by the processor after

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ingest_cursors",
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column(
            "last_event_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
        ),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name="fk_ingest_cursors_workspace_id_workspaces"
        ),
        sa.PrimaryKeyConstraint("workspace_id", name="pk_ingest_cursors"),
    )


def downgrade() -> None:
    op.drop_table("ingest_cursors")

"""privacy: retention policies

``privacy_retention``: each workspace's retention period per data category and its last run.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "privacy_retention",
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("policies", JSON, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=200), nullable=False),
        sa.Column("last_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_run", JSON, nullable=True),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name="fk_privacy_retention_workspace_id_workspaces"
        ),
        sa.PrimaryKeyConstraint("workspace_id", name="pk_privacy_retention"),
    )


def downgrade() -> None:
    op.drop_table("privacy_retention")

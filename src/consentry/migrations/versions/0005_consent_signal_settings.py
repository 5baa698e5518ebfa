"""consent: per-workspace mapping of the consent object's categories to purposes

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "consent_signal_settings",
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("categories", JSON, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name="fk_consent_signal_settings_workspace_id_workspaces",
        ),
        sa.PrimaryKeyConstraint("workspace_id", name="pk_consent_signal_settings"),
    )


def downgrade() -> None:
    op.drop_table("consent_signal_settings")

"""quality: stored data-quality audit reports

``quality_audits``: each audit of a workspace's profiles (on demand or on the schedule) with
its report: completeness per field, invalid values by reason, likely duplicates and stale
records, and who ran it (``actor``: a token, the CLI or the schedule). Reports hold counts,
field names, problem codes and a few profile ids per problem, never a customer's value.

Revision ID: 0018
Revises: 0017
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "quality_audits",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("started_at", WHEN, nullable=False),
        sa.Column("finished_at", WHEN, nullable=False),
        sa.Column("profiles", sa.Integer(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("report", JSON, nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name="fk_quality_audits_workspace_id_workspaces",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_quality_audits"),
    )
    op.create_index(
        "ix_quality_audits_ws_started", "quality_audits", ["workspace_id", "started_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_quality_audits_ws_started", table_name="quality_audits")
    op.drop_table("quality_audits")

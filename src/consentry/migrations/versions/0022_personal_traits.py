"""profiles: traits a workspace marks personal

``personal_traits``: per workspace, the folded name of a trait whose values are stored sealed
like the built-in personal names (``profiles/personal.py``), who marked it and when. Marks are
never removed.

Revision ID: 0022
Revises: 0021
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "personal_traits",
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("slug", sa.String(length=200), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("marked_at", WHEN, nullable=False),
        sa.Column("marked_by", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"]),
        sa.PrimaryKeyConstraint("workspace_id", "slug"),
    )


def downgrade() -> None:
    op.drop_table("personal_traits")

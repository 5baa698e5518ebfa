"""profiles: index the current traits by workspace and key, for audience-wide reads

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_profile_traits_ws_key", "profile_traits", ["workspace_id", "key"])


def downgrade() -> None:
    op.drop_index("ix_profile_traits_ws_key", table_name="profile_traits")

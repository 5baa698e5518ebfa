"""profiles: merges found by when they were made or undone

``ix_profile_merges_ws_created`` and ``ix_profile_merges_ws_undone`` on ``profile_merges``:
segments' catch-up asks every few seconds for the merges of a workspace made or undone since
its last look (``profiles.merging.merges_changed_since``); without them it read every merge
of the workspace each time.

Revision ID: 0029
Revises: 0028
"""

from __future__ import annotations

from alembic import op

revision = "0029"
down_revision = "0028"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_profile_merges_ws_created", "profile_merges", ["workspace_id", "created_at"]
    )
    op.create_index("ix_profile_merges_ws_undone", "profile_merges", ["workspace_id", "undone_at"])


def downgrade() -> None:
    op.drop_index("ix_profile_merges_ws_undone", table_name="profile_merges")
    op.drop_index("ix_profile_merges_ws_created", table_name="profile_merges")

"""audiences: segments, their members and membership changes, computed traits, the cursor

``segments``: a workspace's segments (name unique per workspace): the rule document, its
readable text, the kinds of facts it reads, the segments it reads, its size at the last
refresh, who created and changed it. ``segment_members``: the unified profiles in a segment now
and since when. ``segment_membership_changes``: every entry and exit (ids only grow; journeys
read them after a cursor). ``computed_traits``: the workspace's computed traits (count, sum,
avg, most_frequent, first, last, unique over an event's window) and ``computed_trait_values``
their value per unified profile. ``audience_cursors``: the last event id the incremental
refresh read, and when membership was last refreshed in full.

``events`` gains ``ix_events_ws_event_ts`` (workspace, event, type, timestamp, profile): an
event condition counts a name's events in a window per profile from the index alone.

Revision ID: 0019
Revises: 0018
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
WHEN = sa.DateTime(timezone=True)
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _workspace_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["workspace_id"], ["workspaces.id"], name=f"fk_{table}_workspace_id_workspaces"
    )


def upgrade() -> None:
    op.create_table(
        "segments",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("rule", JSON, nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("kinds", JSON, nullable=False),
        sa.Column("reads_segments", JSON, nullable=False),
        sa.Column("member_count", sa.Integer(), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("updated_by", sa.String(length=200), nullable=False),
        sa.Column("refreshed_at", WHEN, nullable=True),
        _workspace_fk("segments"),
        sa.PrimaryKeyConstraint("id", name="pk_segments"),
        sa.UniqueConstraint("workspace_id", "name", name="uq_segments_workspace_id_name"),
    )
    op.create_table(
        "segment_members",
        sa.Column("segment_id", sa.String(length=36), nullable=False),
        sa.Column("profile_id", sa.String(length=36), nullable=False),
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("since", WHEN, nullable=False),
        sa.ForeignKeyConstraint(
            ["segment_id"], ["segments.id"], name="fk_segment_members_segment_id_segments"
        ),
        _workspace_fk("segment_members"),
        sa.PrimaryKeyConstraint("segment_id", "profile_id", name="pk_segment_members"),
    )
    op.create_index(
        "ix_segment_members_ws_profile", "segment_members", ["workspace_id", "profile_id"]
    )
    op.create_table(
        "segment_membership_changes",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("segment_id", sa.String(length=36), nullable=False),
        sa.Column("profile_id", sa.String(length=36), nullable=False),
        sa.Column("entered", sa.Boolean(), nullable=False),
        sa.Column("at", WHEN, nullable=False),
        _workspace_fk("segment_membership_changes"),
        sa.PrimaryKeyConstraint("id", name="pk_segment_membership_changes"),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_segment_changes_ws_id", "segment_membership_changes", ["workspace_id", "id"]
    )
    op.create_index(
        "ix_segment_changes_segment_id", "segment_membership_changes", ["segment_id", "id"]
    )
    op.create_index(
        "ix_segment_changes_ws_profile",
        "segment_membership_changes",
        ["workspace_id", "profile_id"],
    )
    op.create_table(
        "computed_traits",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("op", sa.String(length=16), nullable=False),
        sa.Column("event", sa.String(length=512), nullable=False),
        sa.Column("property", sa.String(length=200), nullable=True),
        sa.Column("window_days", sa.Integer(), nullable=True),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("refreshed_at", WHEN, nullable=True),
        _workspace_fk("computed_traits"),
        sa.PrimaryKeyConstraint("id", name="pk_computed_traits"),
        sa.UniqueConstraint("workspace_id", "name", name="uq_computed_traits_workspace_id_name"),
    )
    op.create_table(
        "computed_trait_values",
        sa.Column("trait_id", sa.String(length=36), nullable=False),
        sa.Column("profile_id", sa.String(length=36), nullable=False),
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("value", JSON, nullable=True),
        sa.ForeignKeyConstraint(
            ["trait_id"],
            ["computed_traits.id"],
            name="fk_computed_trait_values_trait_id_computed_traits",
        ),
        _workspace_fk("computed_trait_values"),
        sa.PrimaryKeyConstraint("trait_id", "profile_id", name="pk_computed_trait_values"),
    )
    op.create_index(
        "ix_computed_trait_values_ws_profile",
        "computed_trait_values",
        ["workspace_id", "profile_id"],
    )
    op.create_table(
        "audience_cursors",
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("last_event_id", BIG_ID, nullable=False),
        sa.Column("refreshed_at", WHEN, nullable=True),
        sa.Column("updated_at", WHEN, nullable=False),
        _workspace_fk("audience_cursors"),
        sa.PrimaryKeyConstraint("workspace_id", name="pk_audience_cursors"),
    )
    op.create_index(
        "ix_events_ws_event_ts",
        "events",
        ["workspace_id", "event", "type", "timestamp", "profile_id"],
    )


def downgrade() -> None:
    op.drop_index("ix_events_ws_event_ts", table_name="events")
    op.drop_table("audience_cursors")
    op.drop_index("ix_computed_trait_values_ws_profile", table_name="computed_trait_values")
    op.drop_table("computed_trait_values")
    op.drop_table("computed_traits")
    op.drop_index("ix_segment_changes_ws_profile", table_name="segment_membership_changes")
    op.drop_index("ix_segment_changes_segment_id", table_name="segment_membership_changes")
    op.drop_index("ix_segment_changes_ws_id", table_name="segment_membership_changes")
    op.drop_table("segment_membership_changes")
    op.drop_index("ix_segment_members_ws_profile", table_name="segment_members")
    op.drop_table("segment_members")
    op.drop_table("segments")

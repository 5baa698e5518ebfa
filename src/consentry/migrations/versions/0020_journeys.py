"""journeys: definitions and versions, enrollments, step runs, trigger cursors

``journeys``: a workspace's journeys (name unique per workspace), the current definition
document, status (draft, active, paused, archived), version, who created and changed it, when
it was switched on and when its daily scan (date trait, inactivity) last ran.
``journey_versions``: every version's definition (running enrollments keep theirs).
``journey_enrollments``: a unified profile's way through a journey (status active, completed,
exited, held_out; the step it is at and when that is due; its split arm; what enrolled it, ids
only); ``open_profile_id`` is set while active and unique per journey: one active enrollment
per journey and profile. ``journey_step_runs``: what each step did (sent, skipped, deferred,
branched, updated, held_out), why, and the outbox message. ``journey_cursors``: per workspace,
the last event id and segment membership change id the triggers read, and the last scan.

Revision ID: 0020
Revises: 0019
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
WHEN = sa.DateTime(timezone=True)
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _workspace_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["workspace_id"], ["workspaces.id"], name=f"fk_{table}_workspace_id_workspaces"
    )


def _journey_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["journey_id"], ["journeys.id"], name=f"fk_{table}_journey_id_journeys"
    )


def upgrade() -> None:
    op.create_table(
        "journeys",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("trigger_type", sa.String(length=32), nullable=False),
        sa.Column("definition", JSON, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.Column("updated_by", sa.String(length=200), nullable=False),
        sa.Column("activated_at", WHEN, nullable=True),
        sa.Column("scanned_at", WHEN, nullable=True),
        _workspace_fk("journeys"),
        sa.PrimaryKeyConstraint("id", name="pk_journeys"),
        sa.UniqueConstraint("workspace_id", "name", name="uq_journeys_workspace_id_name"),
    )
    op.create_index("ix_journeys_ws_status", "journeys", ["workspace_id", "status"])
    op.create_table(
        "journey_versions",
        sa.Column("journey_id", sa.String(length=36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("definition", JSON, nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        _journey_fk("journey_versions"),
        sa.PrimaryKeyConstraint("journey_id", "version", name="pk_journey_versions"),
    )
    op.create_table(
        "journey_enrollments",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("journey_id", sa.String(length=36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("profile_id", sa.String(length=36), nullable=False),
        sa.Column("open_profile_id", sa.String(length=36), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("step", sa.String(length=64), nullable=True),
        sa.Column("due_at", WHEN, nullable=True),
        sa.Column("variant", sa.String(length=64), nullable=True),
        sa.Column("trigger", JSON, nullable=False),
        sa.Column("entered_at", WHEN, nullable=False),
        sa.Column("ended_at", WHEN, nullable=True),
        sa.Column("end_reason", sa.String(length=200), nullable=True),
        _workspace_fk("journey_enrollments"),
        _journey_fk("journey_enrollments"),
        sa.PrimaryKeyConstraint("id", name="pk_journey_enrollments"),
        sa.UniqueConstraint(
            "journey_id",
            "open_profile_id",
            name="uq_journey_enrollments_journey_id_open_profile_id",
        ),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_journey_enrollments_due", "journey_enrollments", ["workspace_id", "status", "due_at"]
    )
    op.create_index(
        "ix_journey_enrollments_profile", "journey_enrollments", ["workspace_id", "profile_id"]
    )
    op.create_index(
        "ix_journey_enrollments_journey",
        "journey_enrollments",
        ["journey_id", "profile_id", "entered_at"],
    )
    op.create_table(
        "journey_step_runs",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("journey_id", sa.String(length=36), nullable=False),
        sa.Column("enrollment_id", BIG_ID, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("step", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=300), nullable=True),
        sa.Column("variant", sa.String(length=64), nullable=True),
        sa.Column("message_id", sa.String(length=36), nullable=True),
        sa.Column("at", WHEN, nullable=False),
        _workspace_fk("journey_step_runs"),
        _journey_fk("journey_step_runs"),
        sa.ForeignKeyConstraint(
            ["enrollment_id"],
            ["journey_enrollments.id"],
            name="fk_journey_step_runs_enrollment_id_journey_enrollments",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_journey_step_runs"),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_journey_step_runs_journey", "journey_step_runs", ["journey_id", "step", "outcome"]
    )
    op.create_index("ix_journey_step_runs_enrollment", "journey_step_runs", ["enrollment_id"])
    op.create_table(
        "journey_cursors",
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("last_event_id", BIG_ID, nullable=False),
        sa.Column("last_change_id", BIG_ID, nullable=False),
        sa.Column("last_scan_at", WHEN, nullable=True),
        sa.Column("updated_at", WHEN, nullable=False),
        _workspace_fk("journey_cursors"),
        sa.PrimaryKeyConstraint("workspace_id", name="pk_journey_cursors"),
    )


def downgrade() -> None:
    op.drop_table("journey_cursors")
    op.drop_index("ix_journey_step_runs_enrollment", table_name="journey_step_runs")
    op.drop_index("ix_journey_step_runs_journey", table_name="journey_step_runs")
    op.drop_table("journey_step_runs")
    op.drop_index("ix_journey_enrollments_journey", table_name="journey_enrollments")
    op.drop_index("ix_journey_enrollments_profile", table_name="journey_enrollments")
    op.drop_index("ix_journey_enrollments_due", table_name="journey_enrollments")
    op.drop_table("journey_enrollments")
    op.drop_table("journey_versions")
    op.drop_index("ix_journeys_ws_status", table_name="journeys")
    op.drop_table("journeys")

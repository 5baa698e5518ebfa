"""privacy: erasure, suppression of erased identities, processor notifications

``privacy_erasures`` (each erasure and its certificate), ``identity_suppressions`` (blind indexes
of an erased person's identifiers: their late or replayed events are dropped) and
``privacy_notifications`` (the outbox of erasure webhooks to processors, retried). On SQLite the
events table is rebuilt with AUTOINCREMENT, so the ids of erased events are never reused.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _workspace_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["workspace_id"], ["workspaces.id"], name=f"fk_{table}_workspace_id_workspaces"
    )


def _events_autoincrement(on: bool) -> None:
    """SQLite gives a new row the largest id + 1, so deleting the newest events (an erasure)
    would hand their ids out again, below the ingest cursor: those events would never be
    applied. AUTOINCREMENT never reuses an id. (PostgreSQL's sequences never do.)"""
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table(
        "events", recreate="always", table_kwargs={"sqlite_autoincrement": on}
    ):
        pass


def upgrade() -> None:
    _events_autoincrement(True)
    op.create_table(
        "privacy_erasures",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("profile_id", sa.String(length=36), nullable=False),
        sa.Column("request_id", sa.String(length=36), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("certificate", JSON, nullable=False),
        sa.Column("certificate_hash", sa.String(length=64), nullable=False),
        _workspace_fk("privacy_erasures"),
        sa.PrimaryKeyConstraint("id", name="pk_privacy_erasures"),
    )
    op.create_index(
        "ix_privacy_erasures_ws_requested", "privacy_erasures", ["workspace_id", "requested_at"]
    )
    op.create_index("ix_privacy_erasures_profile_id", "privacy_erasures", ["profile_id"])
    op.create_table(
        "identity_suppressions",
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=64), nullable=False),
        sa.Column("erasure_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lifted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lifted_by", sa.String(length=200), nullable=True),
        sa.Column("generation", sa.Integer(), nullable=False),
        _workspace_fk("identity_suppressions"),
        sa.PrimaryKeyConstraint("workspace_id", "type", "value", name="pk_identity_suppressions"),
    )
    op.create_table(
        "privacy_notifications",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("erasure_id", sa.String(length=36), nullable=False),
        sa.Column("processor_id", sa.String(length=36), nullable=False),
        sa.Column("processor_name", sa.String(length=200), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("payload", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        _workspace_fk("privacy_notifications"),
        sa.ForeignKeyConstraint(
            ["erasure_id"],
            ["privacy_erasures.id"],
            name="fk_privacy_notifications_erasure_id_privacy_erasures",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_privacy_notifications"),
    )
    op.create_index(
        "ix_privacy_notifications_due", "privacy_notifications", ["status", "next_attempt_at"]
    )
    op.create_index("ix_privacy_notifications_erasure_id", "privacy_notifications", ["erasure_id"])


def downgrade() -> None:
    _events_autoincrement(False)
    op.drop_index("ix_privacy_notifications_erasure_id", table_name="privacy_notifications")
    op.drop_index("ix_privacy_notifications_due", table_name="privacy_notifications")
    op.drop_table("privacy_notifications")
    op.drop_table("identity_suppressions")
    op.drop_index("ix_privacy_erasures_profile_id", table_name="privacy_erasures")
    op.drop_index("ix_privacy_erasures_ws_requested", table_name="privacy_erasures")
    op.drop_table("privacy_erasures")

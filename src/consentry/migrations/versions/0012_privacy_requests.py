"""privacy: data-subject requests and their history

``privacy_requests`` (each request at its current status: type, jurisdiction, deadlines, the
requester's email as a blind index and sealed, the hashed verification code, reminders sent)
and ``privacy_request_events`` (every step of a request, append-only).

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _workspace_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["workspace_id"], ["workspaces.id"], name=f"fk_{table}_workspace_id_workspaces"
    )


def upgrade() -> None:
    op.create_table(
        "privacy_requests",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("jurisdiction", sa.String(length=16), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("profile_id", sa.String(length=36), nullable=True),
        sa.Column("email_index", sa.String(length=64), nullable=True),
        sa.Column("email_sealed", sa.Text(), nullable=True),
        sa.Column("message_sealed", sa.Text(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("original_due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("verify_by", sa.DateTime(timezone=True), nullable=False),
        sa.Column("extended", sa.Boolean(), nullable=False),
        sa.Column("extension_reason", sa.String(length=200), nullable=True),
        sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("verified_by", sa.String(length=16), nullable=True),
        sa.Column("code_hash", sa.String(length=64), nullable=True),
        sa.Column("code_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("code_attempts", sa.Integer(), nullable=False),
        sa.Column("codes_sent", sa.Integer(), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolution", sa.String(length=200), nullable=True),
        sa.Column("duplicate_of", sa.String(length=36), nullable=True),
        sa.Column("reminders_sent", JSON, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        _workspace_fk("privacy_requests"),
        sa.PrimaryKeyConstraint("id", name="pk_privacy_requests"),
    )
    op.create_index(
        "ix_privacy_requests_ws_status_due",
        "privacy_requests",
        ["workspace_id", "status", "due_at"],
    )
    op.create_index(
        "ix_privacy_requests_ws_email", "privacy_requests", ["workspace_id", "email_index"]
    )
    op.create_index(
        "ix_privacy_requests_ws_profile", "privacy_requests", ["workspace_id", "profile_id"]
    )
    op.create_table(
        "privacy_request_events",
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("from_status", sa.String(length=16), nullable=True),
        sa.Column("to_status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=True),
        sa.Column("details", JSON, nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["privacy_requests.id"],
            name="fk_privacy_request_events_request_id_privacy_requests",
        ),
        _workspace_fk("privacy_request_events"),
        sa.PrimaryKeyConstraint("request_id", "seq", name="pk_privacy_request_events"),
    )


def downgrade() -> None:
    op.drop_table("privacy_request_events")
    op.drop_index("ix_privacy_requests_ws_profile", table_name="privacy_requests")
    op.drop_index("ix_privacy_requests_ws_email", table_name="privacy_requests")
    op.drop_index("ix_privacy_requests_ws_status_due", table_name="privacy_requests")
    op.drop_table("privacy_requests")

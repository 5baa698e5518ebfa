"""consent: the hash-chained ledger, the current state, chain heads and per-workspace settings

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _workspace_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["workspace_id"], ["workspaces.id"], name=f"fk_{table}_workspace_id_workspaces"
    )


def upgrade() -> None:
    op.create_table(
        "consent_chain_heads",
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("seq", BIG_ID, nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        _workspace_fk("consent_chain_heads"),
        sa.PrimaryKeyConstraint("workspace_id", name="pk_consent_chain_heads"),
    )
    op.create_table(
        "consent_records",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("seq", BIG_ID, nullable=False),
        sa.Column("profile_id", sa.String(length=36), nullable=False),
        sa.Column("purpose", sa.String(length=100), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("legal_basis", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("notice_version", sa.String(length=100), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("proof", JSON, nullable=True),
        sa.Column("proof_digest", sa.String(length=64), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        _workspace_fk("consent_records"),
        sa.PrimaryKeyConstraint("id", name="pk_consent_records"),
        sa.UniqueConstraint("workspace_id", "seq", name="uq_consent_records_workspace_id_seq"),
    )
    op.create_index(
        "ix_consent_records_ws_profile", "consent_records", ["workspace_id", "profile_id"]
    )
    op.create_table(
        "consent_settings",
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("default_regime", sa.String(length=16), nullable=False),
        sa.Column("purposes", JSON, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        _workspace_fk("consent_settings"),
        sa.PrimaryKeyConstraint("workspace_id", name="pk_consent_settings"),
    )
    op.create_table(
        "consent_state",
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("profile_id", sa.String(length=36), nullable=False),
        sa.Column("purpose", sa.String(length=100), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("legal_basis", sa.String(length=32), nullable=False),
        sa.Column("record_id", sa.String(length=36), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        _workspace_fk("consent_state"),
        sa.PrimaryKeyConstraint(
            "workspace_id", "profile_id", "purpose", "channel", name="pk_consent_state"
        ),
    )
    op.create_index(
        "ix_consent_state_ws_purpose", "consent_state", ["workspace_id", "purpose", "channel"]
    )


def downgrade() -> None:
    op.drop_index("ix_consent_state_ws_purpose", table_name="consent_state")
    op.drop_table("consent_state")
    op.drop_table("consent_settings")
    op.drop_index("ix_consent_records_ws_profile", table_name="consent_records")
    op.drop_table("consent_records")
    op.drop_table("consent_chain_heads")

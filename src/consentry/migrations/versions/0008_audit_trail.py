"""audit trail: append-only, hash-chained per workspace

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008"
down_revision = "0007"
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
        "audit_chain_heads",
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("seq", BIG_ID, nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        _workspace_fk("audit_chain_heads"),
        sa.PrimaryKeyConstraint("workspace_id", name="pk_audit_chain_heads"),
    )
    op.create_table(
        "audit_entries",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("seq", BIG_ID, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target_type", sa.String(length=32), nullable=False),
        sa.Column("target_id", sa.String(length=100), nullable=True),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("details", JSON, nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        _workspace_fk("audit_entries"),
        sa.PrimaryKeyConstraint("id", name="pk_audit_entries"),
        sa.UniqueConstraint("workspace_id", "seq", name="uq_audit_entries_workspace_id_seq"),
    )
    op.create_index("ix_audit_entries_ws_target", "audit_entries", ["workspace_id", "target_id"])
    op.create_index("ix_audit_entries_ws_at", "audit_entries", ["workspace_id", "at"])


def downgrade() -> None:
    op.drop_index("ix_audit_entries_ws_at", table_name="audit_entries")
    op.drop_index("ix_audit_entries_ws_target", table_name="audit_entries")
    op.drop_table("audit_entries")
    op.drop_table("audit_chain_heads")

"""consent: notices (versioned texts per language, by content hash) and page branding

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _workspace_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["workspace_id"], ["workspaces.id"], name=f"fk_{table}_workspace_id_workspaces"
    )


def upgrade() -> None:
    op.create_table(
        "consent_notices",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.String(length=100), nullable=False),
        sa.Column("language", sa.String(length=16), nullable=False),
        sa.Column("purposes", JSON, nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        _workspace_fk("consent_notices"),
        sa.PrimaryKeyConstraint("id", name="pk_consent_notices"),
        sa.UniqueConstraint(
            "workspace_id",
            "version",
            "language",
            name="uq_consent_notices_workspace_id_version_language",
        ),
    )
    op.create_index(
        "ix_consent_notices_ws_hash", "consent_notices", ["workspace_id", "content_hash"]
    )
    op.create_table(
        "consent_branding",
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("brand_name", sa.String(length=200), nullable=False),
        sa.Column("primary_color", sa.String(length=7), nullable=False),
        sa.Column("logo_url", sa.String(length=2000), nullable=True),
        sa.Column("default_language", sa.String(length=16), nullable=False),
        sa.Column("privacy_policy_url", sa.String(length=2000), nullable=True),
        sa.Column("support_email", sa.String(length=320), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        _workspace_fk("consent_branding"),
        sa.PrimaryKeyConstraint("workspace_id", name="pk_consent_branding"),
    )


def downgrade() -> None:
    op.drop_table("consent_branding")
    op.drop_index("ix_consent_notices_ws_hash", table_name="consent_notices")
    op.drop_table("consent_notices")

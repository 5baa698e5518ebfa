"""privacy: processors and data-flow register

``privacy_processors`` (each processor at its latest version) and
``privacy_processor_versions`` (every version, append-only, for the register at a past date).

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _workspace_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["workspace_id"], ["workspaces.id"], name=f"fk_{table}_workspace_id_workspaces"
    )


def upgrade() -> None:
    op.create_table(
        "privacy_processors",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("name_key", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("contact", sa.String(length=320), nullable=True),
        sa.Column("purposes", JSON, nullable=False),
        sa.Column("categories", JSON, nullable=False),
        sa.Column("dpa_signed_on", sa.Date(), nullable=True),
        sa.Column("transfer_country", sa.String(length=2), nullable=False),
        sa.Column("transfer_safeguard", sa.String(length=32), nullable=True),
        sa.Column("retention", sa.String(length=1000), nullable=True),
        sa.Column("erasure_webhook_url", sa.String(length=2000), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        _workspace_fk("privacy_processors"),
        sa.PrimaryKeyConstraint("id", name="pk_privacy_processors"),
        sa.UniqueConstraint(
            "workspace_id", "name_key", name="uq_privacy_processors_workspace_id_name_key"
        ),
    )
    op.create_table(
        "privacy_processor_versions",
        sa.Column("processor_id", sa.String(length=36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("change", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("document", JSON, nullable=False),
        sa.ForeignKeyConstraint(
            ["processor_id"],
            ["privacy_processors.id"],
            name="fk_privacy_processor_versions_processor_id_privacy_processors",
        ),
        _workspace_fk("privacy_processor_versions"),
        sa.PrimaryKeyConstraint("processor_id", "version", name="pk_privacy_processor_versions"),
    )
    op.create_index(
        "ix_privacy_processor_versions_ws_recorded",
        "privacy_processor_versions",
        ["workspace_id", "recorded_at"],
    )


def downgrade() -> None:
    op.drop_index(
        "ix_privacy_processor_versions_ws_recorded", table_name="privacy_processor_versions"
    )
    op.drop_table("privacy_processor_versions")
    op.drop_table("privacy_processors")

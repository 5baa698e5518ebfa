"""audiences: exports and their manifests

``audience_exports``: each consent-gated export of an audience (a download or a partner's
pseudonymised file or push): who, when, the purpose and channel consent was asked for, the
processor or destination, the fields, the counts left out by reason and the k-anonymous
summary; never a customer's value. ``audience_export_subjects``: its manifest, one row per
exported subject (unified profile id) with the consent record, reason and regime that let it
out.

Revision ID: 0023
Revises: 0022
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "audience_exports",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("finished_at", WHEN, nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("delivery", sa.String(length=16), nullable=False),
        sa.Column("platform", sa.String(length=16), nullable=True),
        sa.Column("purpose", sa.String(length=100), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.Column("destination_id", sa.String(length=64), nullable=True),
        sa.Column("processor_id", sa.String(length=64), nullable=True),
        sa.Column("fields", JSON, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("subjects", sa.Integer(), nullable=False),
        sa.Column("batches", sa.Integer(), nullable=False),
        sa.Column("left_out", JSON, nullable=False),
        sa.Column("summary", JSON, nullable=True),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name="fk_audience_exports_workspace_id_workspaces",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_audience_exports"),
    )
    op.create_index(
        "ix_audience_exports_ws_created", "audience_exports", ["workspace_id", "created_at"]
    )
    op.create_table(
        "audience_export_subjects",
        sa.Column("export_id", sa.String(length=36), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("profile_id", sa.String(length=36), nullable=False),
        sa.Column("record_id", sa.String(length=36), nullable=True),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("regime", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["export_id"],
            ["audience_exports.id"],
            name="fk_audience_export_subjects_export_id_audience_exports",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("export_id", "seq", name="pk_audience_export_subjects"),
    )


def downgrade() -> None:
    op.drop_table("audience_export_subjects")
    op.drop_index("ix_audience_exports_ws_created", table_name="audience_exports")
    op.drop_table("audience_exports")

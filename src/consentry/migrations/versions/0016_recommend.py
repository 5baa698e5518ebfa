"""recommend: trained recommendation models, versioned per workspace; product availability

``recommend_models``: each training run's artefact (the serialised model, as written by
``recommend.service``: the arrays of ``recommend.artefact`` plus the profile and product ids
they are indexed by), its manifest (models, parameters, counts, offline metrics) and which
version is active. Serving loads the active version; older versions stay for rollback.
``revision`` counts the changes made to a stored artefact after training (an erasure removes
a person from it), so a server notices that the artefact it holds in memory is stale.

``products.in_stock``: whether a product is available, where product events or imports say so
(``in_stock`` / ``available``); null when unknown. Recommendations leave out products known to
be out of stock.

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "recommend_models",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("trained_at", WHEN, nullable=False),
        sa.Column("as_of", WHEN, nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("manifest", JSON, nullable=False),
        sa.Column("artefact", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name="fk_recommend_models_workspace_id_workspaces",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_recommend_models"),
        sa.UniqueConstraint("workspace_id", "version", name="uq_recommend_models_version"),
    )
    op.create_index("ix_recommend_models_active", "recommend_models", ["workspace_id", "active"])
    with op.batch_alter_table("products", schema=None) as batch_op:
        batch_op.add_column(sa.Column("in_stock", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("products", schema=None) as batch_op:
        batch_op.drop_column("in_stock")
    op.drop_index("ix_recommend_models_active", table_name="recommend_models")
    op.drop_table("recommend_models")

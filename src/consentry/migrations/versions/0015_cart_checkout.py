"""commerce: the checkouts of each cart

``cart_checkouts``: which cart a checkout was started from (``Checkout Started`` and the
checkout step events name both ids), so an ``Order Completed`` that names only its
``checkout_id`` converts the right cart. A cart may have several checkouts; the links go with
their cart (``ON DELETE CASCADE``: erasure, retention).

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cart_checkouts",
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("checkout_id", sa.String(length=200), nullable=False),
        sa.Column("cart_id", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name="fk_cart_checkouts_workspace_id_workspaces",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id", "cart_id"],
            ["carts.workspace_id", "carts.cart_id"],
            name="fk_cart_checkouts_workspace_id_carts",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workspace_id", "checkout_id", name="pk_cart_checkouts"),
    )
    op.create_index("ix_cart_checkouts_cart", "cart_checkouts", ["workspace_id", "cart_id"])


def downgrade() -> None:
    op.drop_index("ix_cart_checkouts_cart", table_name="cart_checkouts")
    op.drop_table("cart_checkouts")

"""privacy: limits of the public intake of data-subject requests

``privacy_request_attempts``: each attempt the public form and API counted (a request filed, a
new code asked for, a code tried), with what it counts against (``kind``) and whom (``key``:
the email's blind index, a keyed hash of the client's network, or the request id); deleted
once older than the longest window.

Revision ID: 0024
Revises: 0023
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "privacy_request_attempts",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name="fk_privacy_request_attempts_workspace_id_workspaces",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_privacy_request_attempts"),
    )
    op.create_index(
        "ix_privacy_request_attempts_key",
        "privacy_request_attempts",
        ["workspace_id", "kind", "key", "at"],
    )
    op.create_index("ix_privacy_request_attempts_at", "privacy_request_attempts", ["at"])


def downgrade() -> None:
    op.drop_index("ix_privacy_request_attempts_at", table_name="privacy_request_attempts")
    op.drop_index("ix_privacy_request_attempts_key", table_name="privacy_request_attempts")
    op.drop_table("privacy_request_attempts")

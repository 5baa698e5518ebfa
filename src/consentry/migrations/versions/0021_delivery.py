"""delivery: destinations, the outbox of messages and the suppression list

``destinations``: named endpoints (email, SMS provider, webhook) bound to a registered
processor and a purpose, with the webhook signing secret (sealed) and the circuit of each
(consecutive failures, paused until). ``outbox_messages``: every message a journey step or an
audience push hands over, unique per workspace and key (exactly once), with its sealed
recipient and content, its status (queued, sending, sent, retrying, dead, cancelled), attempts,
lease and last error. ``delivery_suppressions``: addresses nothing is sent to, per channel, as
blind indexes of the normalised address only.

Revision ID: 0021
Revises: 0020
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
WHEN = sa.DateTime(timezone=True)


def _workspace_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["workspace_id"], ["workspaces.id"], name=f"fk_{table}_workspace_id_workspaces"
    )


def upgrade() -> None:
    op.create_table(
        "destinations",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("name_key", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("processor_id", sa.String(length=36), nullable=False),
        sa.Column("purpose", sa.String(length=100), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("categories", JSON, nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=True),
        sa.Column("from_address", sa.String(length=320), nullable=True),
        sa.Column("from_name", sa.String(length=200), nullable=True),
        sa.Column("secret", sa.Text(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("paused_until", WHEN, nullable=True),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        _workspace_fk("destinations"),
        sa.PrimaryKeyConstraint("id", name="pk_destinations"),
        sa.UniqueConstraint(
            "workspace_id", "name_key", name="uq_destinations_workspace_id_name_key"
        ),
    )
    op.create_table(
        "outbox_messages",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("destination_id", sa.String(length=36), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("subject_id", sa.String(length=36), nullable=True),
        sa.Column("purpose", sa.String(length=100), nullable=True),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("to", sa.Text(), nullable=True),
        sa.Column("content", sa.Text(), nullable=True),
        sa.Column("origin", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", WHEN, nullable=True),
        sa.Column("lease_until", WHEN, nullable=True),
        sa.Column("claim", sa.String(length=36), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("provider_message_id", sa.String(length=300), nullable=True),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.Column("sent_at", WHEN, nullable=True),
        _workspace_fk("outbox_messages"),
        sa.ForeignKeyConstraint(
            ["destination_id"],
            ["destinations.id"],
            name="fk_outbox_messages_destination_id_destinations",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_outbox_messages"),
        sa.UniqueConstraint("workspace_id", "key", name="uq_outbox_messages_workspace_id_key"),
    )
    op.create_index("ix_outbox_messages_due", "outbox_messages", ["status", "next_attempt_at"])
    op.create_index(
        "ix_outbox_messages_destination", "outbox_messages", ["destination_id", "status"]
    )
    op.create_index(
        "ix_outbox_messages_subject",
        "outbox_messages",
        ["workspace_id", "subject_id", "channel", "created_at"],
    )
    op.create_table(
        "delivery_suppressions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("address_index", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        _workspace_fk("delivery_suppressions"),
        sa.PrimaryKeyConstraint("id", name="pk_delivery_suppressions"),
        sa.UniqueConstraint(
            "workspace_id",
            "channel",
            "address_index",
            name="uq_delivery_suppressions_workspace_id_channel_address_index",
        ),
    )


def downgrade() -> None:
    op.drop_table("delivery_suppressions")
    op.drop_index("ix_outbox_messages_subject", table_name="outbox_messages")
    op.drop_index("ix_outbox_messages_destination", table_name="outbox_messages")
    op.drop_index("ix_outbox_messages_due", table_name="outbox_messages")
    op.drop_table("outbox_messages")
    op.drop_table("destinations")

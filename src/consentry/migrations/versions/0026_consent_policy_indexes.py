"""consent: a covering index for the policy's audience reads

``ix_consent_state_policy`` on ``consent_state (workspace_id, purpose, channel, profile_id,
state, legal_basis, record_id, occurred_at, expires_at)``: every column ``consent.policy``
reads of a purpose's states, so deciding over a whole workspace reads the index alone, in
order, instead of looking each row up in the table. It replaces
``ix_consent_state_ws_purpose`` (its first three columns), which it serves as well.

Revision ID: 0026
Revises: 0025
"""

from __future__ import annotations

from alembic import op

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None

COLUMNS = [
    "workspace_id",
    "purpose",
    "channel",
    "profile_id",
    "state",
    "legal_basis",
    "record_id",
    "occurred_at",
    "expires_at",
]


def upgrade() -> None:
    op.create_index("ix_consent_state_policy", "consent_state", COLUMNS)
    op.drop_index("ix_consent_state_ws_purpose", table_name="consent_state")


def downgrade() -> None:
    op.create_index(
        "ix_consent_state_ws_purpose", "consent_state", ["workspace_id", "purpose", "channel"]
    )
    op.drop_index("ix_consent_state_policy", table_name="consent_state")

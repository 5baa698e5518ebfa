"""privacy: personal data sealed at rest

``identifiers.value`` now holds the blind index of the identifier and ``identifiers.sealed`` the
value sealed under the profile's key; personal traits, the personal values of consent proofs and
event payloads are stored as sealed tokens, and ``events.user_id`` / ``anonymous_id`` as blind
indexes (see docs/encryption-keys.md). Rows a previous release wrote in clear are sealed here,
with the keys of the settings (``CONSENTRY_CRYPTO__*``) and the key store beside this store.
The downgrade opens them again (what an erasure destroyed stays destroyed).

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import sqlalchemy as sa
from alembic import op

if TYPE_CHECKING:
    from consentry.platform.vault import Vault

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    from consentry.migrations.sealing import seal_existing

    with op.batch_alter_table("identifiers") as batch:
        batch.add_column(sa.Column("sealed", sa.Text(), nullable=True))
    _with_vault(seal_existing)


def downgrade() -> None:
    from consentry.migrations.sealing import open_existing

    _with_vault(open_existing)
    with op.batch_alter_table("identifiers") as batch:
        batch.drop_column("sealed")


def _with_vault(rewrite: Callable[[sa.Connection, Vault], int]) -> None:
    """Run ``rewrite`` with the vault of this store, if the store holds any personal rows."""
    if not _has_rows(op.get_bind()):
        return
    from consentry.migrations.sealing import with_store_vault

    with_store_vault(rewrite)


def _has_rows(bind: sa.Connection) -> bool:
    for table in ("identifiers", "trait_history", "events", "consent_records"):
        if bind.execute(sa.text(f"SELECT 1 FROM {table} LIMIT 1")).first() is not None:
            return True
    return False

"""privacy: personal data sealed at rest

``identifiers.value`` now holds the blind index of the identifier and ``identifiers.sealed`` the
value sealed under the profile's key; personal traits, the personal values of consent proofs and
event payloads are stored as sealed tokens, and ``events.user_id`` / ``anonymous_id`` as blind
indexes (see docs/encryption-keys.md). Rows a previous release wrote in clear are sealed here,
with the keys of the settings (``CONSENTRY_CRYPTO__*``) and the key store beside this store.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("identifiers") as batch:
        batch.add_column(sa.Column("sealed", sa.Text(), nullable=True))
    bind = op.get_bind()
    if not _has_rows(bind):
        return
    from consentry.config import get_settings
    from consentry.migrations.sealing import seal_existing
    from consentry.platform.vault import Vault
    from consentry.stores import vault_for

    url = context.config.get_main_option("sqlalchemy.url") or ""
    settings = get_settings().model_copy(update={"database_url": url})
    opened: list[Vault] = []

    def vault() -> Vault:
        opened.append(vault_for(settings))
        return opened[-1]

    try:
        seal_existing(bind, vault)
    finally:
        for each in opened:
            each.close()


def _has_rows(bind: sa.Connection) -> bool:
    for table in ("identifiers", "trait_history", "events", "consent_records"):
        if bind.execute(sa.text(f"SELECT 1 FROM {table} LIMIT 1")).first() is not None:
            return True
    return False


def downgrade() -> None:
    raise NotImplementedError("sealed data is not turned back into clear text")

"""profiles: more spellings of personal traits are sealed

Release 0028 treats more trait names as personal (``given_name``, ``surname``,
``family_name``, ``dob``, ``birthdate``, ``zipcode``, ``postcode``, ``phone_number``, ... in
any case or separators; see ``consentry.profiles.models.PERSONAL_TRAITS``). Values of them an
earlier release stored in clear, in the trait history and the current values, are sealed here
under their profile's key, with the keys of the settings (``CONSENTRY_CRYPTO__*``) and the key
store beside this store, as migration 0010 did. Nothing changes in the schema.

The downgrade leaves them sealed: every release since 0010 opens any sealed value it reads, so
an older release reads them as before, and opening them would put personal data back in clear.

Revision ID: 0028
Revises: 0027
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().execute(sa.text("SELECT 1 FROM trait_history LIMIT 1")).first() is None:
        return  # a new or empty store: nothing stored, no key store needed
    from consentry.migrations.sealing import seal_traits, with_store_vault

    with_store_vault(seal_traits)


def downgrade() -> None:
    """Nothing to undo in the schema; sealed values stay sealed (see above)."""

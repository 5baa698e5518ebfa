"""Where the key store and the spool live beside the data store."""

from __future__ import annotations

import pytest

from consentry.ingest.spool import SpoolError
from consentry.ingest.spool import default_url as spool_url
from consentry.platform.crypto import CryptoError
from consentry.platform.keystore import default_url as keys_url


def test_companions_sit_beside_the_data_store() -> None:
    assert spool_url("sqlite:////var/lib/shop.db") == "sqlite:////var/lib/shop.spool.db"
    assert keys_url("sqlite:///shop.db") == "sqlite:///shop.keys.db"
    pg = "postgresql+psycopg://u:secret@db.example:5432/shop"
    assert spool_url(pg) == "postgresql+psycopg://u:secret@db.example:5432/shop_spool"
    assert keys_url(pg) == "postgresql+psycopg://u:secret@db.example:5432/shop_keys"


def test_a_data_store_with_nothing_to_sit_beside_names_the_setting() -> None:
    with pytest.raises(SpoolError, match="CONSENTRY_INGEST__SPOOL_URL"):
        spool_url("sqlite:///:memory:")
    with pytest.raises(CryptoError, match="CONSENTRY_CRYPTO__KEYSTORE_URL"):
        keys_url("postgresql+psycopg://u@db.example:5432")

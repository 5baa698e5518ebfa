"""Opening the stores of a deployment from its settings: the data store with its vault, and the
key store and the spool of acknowledged requests apart from it. Adapters (API, CLI, benchmarks)
open stores here."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from consentry.config import Settings
from consentry.ingest.spool import Spool
from consentry.ingest.spool import default_url as spool_url
from consentry.platform.crypto import Keyring, build_keyring
from consentry.platform.db import Database
from consentry.platform.keystore import KeyStore, open_keystore
from consentry.platform.vault import Vault


def keyring_for(settings: Settings) -> Keyring:
    """The settings' keyring; development and test derive keys from the secret when unset."""
    dev = settings.secret_key if settings.environment != "production" else None
    return build_keyring(
        master_keys=settings.crypto.master_keys,
        blind_index_key=settings.crypto.blind_index_key,
        dev_secret=dev,
    )


def open_keys(settings: Settings) -> KeyStore:
    """The key store beside the settings' data store."""
    return open_keystore(
        data_url=settings.database_url,
        keystore_url=settings.crypto.keystore_url,
        keyring=keyring_for(settings),
    )


def vault_for(settings: Settings) -> Vault:
    """The vault of the settings' data store (its key store opened, its schema ensured)."""
    return Vault(keyring_for(settings), open_keys(settings))


def open_spool(settings: Settings) -> Spool:
    """The spool of acknowledged requests beside the settings' data store."""
    return Spool.open(settings.ingest.spool_url or spool_url(settings.database_url))


def open_database(settings: Settings, **kwargs: Any) -> Database:
    """The data store of the settings, with its vault and its spool."""
    return Database.from_url(
        settings.database_url, vault=vault_for(settings), spool=open_spool(settings), **kwargs
    )


def close_database(db: Database) -> None:
    """Close the data store, its key store and its spool."""
    db.dispose()


@contextmanager
def child_store(settings: Settings) -> Iterator[Database]:
    """The store of a spawned child process (a scheduled round, the ingest worker): opened on
    its own connections and closed at the end; the child's logs go to standard error, as the
    server's do."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s:%(name)s:%(message)s")
    store = open_database(settings)
    try:
        yield store
    finally:
        close_database(store)

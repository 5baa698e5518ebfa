"""The key store on both stores: per-subject data keys apart from the data, crypto-shredding,
master-key rotation (also through ``consentry keys``), isolation between workspaces."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import inspect
from typer.testing import CliRunner

from consentry.cli import app
from consentry.platform import crypto
from consentry.platform.crypto import CryptoError, Keyring
from consentry.platform.db import Database
from consentry.platform.keystore import KeyStore, ShreddedKey, default_url, open_keystore

K1, K2, BLIND = (bytes([n]) * 32 for n in (11, 12, 13))


def ring(*ids: str) -> Keyring:
    keys = {"k1": K1, "k2": K2}
    return Keyring({i: keys[i] for i in ids}, BLIND)


@pytest.fixture
def keystore_url(database_url: str) -> str:
    """A key store of its own for each test, beside the session's data store."""
    base = default_url(database_url)
    if base.startswith("sqlite"):
        return base.replace(".keys.db", f".keys-{uuid.uuid4().hex[:8]}.db")
    return base.replace("_keys", f"_keys_{uuid.uuid4().hex[:8]}")


@pytest.fixture
def store(database_url: str, keystore_url: str) -> Iterator[KeyStore]:
    opened = open_keystore(data_url=database_url, keystore_url=keystore_url, keyring=ring("k1"))
    yield opened
    opened.dispose()


def test_two_processes_making_keys_for_the_same_subjects_agree(
    store: KeyStore, keystore_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two server processes meet a new visitor at once: each looks for keys, finds none, and
    makes keys for its batch; the batches overlap, and both must seal with the key stored."""
    other = KeyStore.open(keystore_url, ring("k1"))  # another process: its own cache
    meanwhile: list[Callable[[], object]] = []
    create = other._create

    def create_after_the_other_process(workspace_id: str, subject_ids: list[str]) -> Any:
        while meanwhile:  # what the first process commits between this one's look and make
            meanwhile.pop(0)()
        return create(workspace_id, subject_ids)

    monkeypatch.setattr(other, "_create", create_after_the_other_process)
    try:
        first: dict[str, bytes] = {}
        meanwhile.append(lambda: first.update(store.data_keys("ws", ["s1", "s2"], create=True)))
        second = other.data_keys("ws", ["s2", "s3"], create=True)
        assert set(second) == {"s2", "s3"}
        assert second["s2"] == first["s2"]  # the stored key, not the one it made
        assert store.data_keys("ws", ["s3"]) == {"s3": second["s3"]}
        meanwhile.append(lambda: store.shred("ws", ["s4"]))
        with pytest.raises(ShreddedKey):  # shredded meanwhile: never given a key
            other.data_keys("ws", ["s4", "s5"], create=True)
        assert other.data_key("ws", "s4") is None
    finally:
        other.dispose()


def test_the_key_store_lives_apart_from_the_data(
    store: KeyStore, db: Database, database_url: str, keystore_url: str
) -> None:
    assert str(store.db.engine.url) != str(db.engine.url)
    assert "subject_keys" in inspect(store.db.engine).get_table_names()
    assert "subject_keys" not in inspect(db.engine).get_table_names()
    assert default_url(database_url) != database_url


def test_a_subject_gets_one_key_that_every_process_reads_alike(
    store: KeyStore, keystore_url: str
) -> None:
    assert store.data_key("ws", "s1") is None  # not made unless asked
    key = store.data_key("ws", "s1", create=True)
    assert key is not None and len(key) == 32
    assert store.data_key("ws", "s1", create=True) == key
    other = KeyStore.open(keystore_url, ring("k1"))  # another process: no cache
    try:
        assert other.data_key("ws", "s1") == key
        assert other.data_key("ws-other", "s1") is None  # keys are per workspace
        keys = other.data_keys("ws", ["s1", "s2", "s3"], create=True)
        assert set(keys) == {"s1", "s2", "s3"} and keys["s1"] == key
        assert len(set(keys.values())) == 3
    finally:
        other.dispose()
    with pytest.raises(CryptoError, match="not configured"):
        fresh = KeyStore.open(keystore_url, ring("k2"))
        try:
            fresh.data_key("ws", "s1")
        finally:
            fresh.dispose()


def test_shredding_makes_every_copy_of_the_subjects_data_unreadable(
    store: KeyStore, keystore_url: str
) -> None:
    keys = store.data_keys("ws", ["ada", "bob"], create=True)
    where = {s: crypto.field_context("ws", s, "email") for s in keys}
    copy = {s: crypto.seal(keys[s], f"{s}@example.com", where[s]) for s in keys}  # a backup

    assert store.shred("ws", ["ada", "never-had-one"]) == 1
    assert store.shred("ws", ["ada"]) == 0  # idempotent
    another = KeyStore.open(keystore_url, ring("k1"))
    for reader in (store, another):
        assert reader.data_key("ws", "ada") is None
        with pytest.raises(ShreddedKey):
            reader.data_key("ws", "ada", create=True)
        with pytest.raises(ShreddedKey):
            reader.data_key("ws", "never-had-one", create=True)
        bob = reader.data_key("ws", "bob")
        assert bob is not None
        assert crypto.open_sealed(bob, copy["bob"], where["bob"]) == "bob@example.com"
    another.dispose()
    # The backup still holds ada's sealed email, but no key in the store opens it any more.
    for candidate in store.data_keys("ws", ["bob", "s-new"], create=True).values():
        with pytest.raises(CryptoError):
            crypto.open_sealed(candidate, copy["ada"], where["ada"])
    status = store.status()
    assert status.shredded == 2 and status.by_master_key == {"k1": 2}


def test_rotation_rewraps_keys_without_changing_them(keystore_url: str) -> None:
    old = KeyStore.open(keystore_url, ring("k1"))
    before = old.data_keys("ws", [f"s{i}" for i in range(1200)], create=True)
    old.shred("ws", ["s0"])
    old.dispose()

    rotated = KeyStore.open(keystore_url, ring("k2", "k1"))
    seen: list[tuple[int, int]] = []
    assert rotated.rotate(on_progress=lambda done, total: seen.append((done, total))) == 1199
    assert seen[-1] == (1199, 1199) and len(seen) == 3  # chunks of 500
    assert rotated.status().by_master_key == {"k2": 1199}
    assert rotated.rotate() == 0
    rotated.dispose()

    only_new = KeyStore.open(keystore_url, ring("k2"))  # the old master key is gone
    try:
        after = only_new.data_keys("ws", list(before))
        assert after == {s: k for s, k in before.items() if s != "s0"}
    finally:
        only_new.dispose()


def test_keys_commands_rotate_and_report(
    database_url: str, keystore_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = KeyStore.open(keystore_url, ring("k1"))
    first.data_keys("ws", ["a", "b", "c"], create=True)
    first.dispose()
    monkeypatch.setenv("CONSENTRY_ENVIRONMENT", "test")
    monkeypatch.setenv("CONSENTRY_CRYPTO__KEYSTORE_URL", keystore_url)
    monkeypatch.setenv("CONSENTRY_CRYPTO__BLIND_INDEX_KEY", crypto.encode_key(BLIND))
    monkeypatch.setenv(
        "CONSENTRY_CRYPTO__MASTER_KEYS",
        f"k2:{crypto.encode_key(K2)},k1:{crypto.encode_key(K1)}",
    )
    from consentry.config import get_settings

    get_settings.cache_clear()
    runner = CliRunner()
    try:
        status = runner.invoke(app, ["keys", "status", "--database-url", database_url])
        assert status.exit_code == 0, status.output
        assert "k1: 3 data keys (to re-wrap" in status.output
        done = runner.invoke(app, ["keys", "rotate", "--database-url", database_url])
        assert done.exit_code == 0, done.output
        assert "3 data keys re-wrapped with master key 'k2'" in done.output
        monkeypatch.setenv("CONSENTRY_CRYPTO__MASTER_KEYS", f"k9:{crypto.encode_key(K1)}")
        get_settings.cache_clear()
        broken = runner.invoke(app, ["keys", "rotate", "--database-url", database_url])
        assert broken.exit_code == 1 and "not configured" in broken.output
        monkeypatch.setenv("CONSENTRY_CRYPTO__MASTER_KEYS", "k1:not-a-key")
        get_settings.cache_clear()
        bad = runner.invoke(app, ["keys", "status", "--database-url", database_url])
        assert bad.exit_code == 1 and "base64" in bad.output
    finally:
        get_settings.cache_clear()
    generated = runner.invoke(app, ["keys", "generate", "--id", "k3"])
    assert generated.exit_code == 0
    lines = dict(line.split("=", 1) for line in generated.output.strip().splitlines())
    parsed = crypto.parse_master_keys(lines["CONSENTRY_CRYPTO__MASTER_KEYS"])
    assert list(parsed) == ["k3"]
    assert crypto.decode_key(lines["CONSENTRY_CRYPTO__BLIND_INDEX_KEY"]) not in parsed.values()

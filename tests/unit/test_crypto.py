"""Envelope encryption and blind indexes (consentry.platform.crypto): pure, no store."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consentry.config import CryptoSettings, Settings
from consentry.platform import crypto
from consentry.platform.crypto import CryptoError, Keyring, WrappedKey

K1, K2, BLIND = (bytes([n]) * 32 for n in (1, 2, 3))


def ring(*ids: str) -> Keyring:
    keys = {"k1": K1, "k2": K2}
    return Keyring({i: keys[i] for i in ids}, BLIND)


@given(st.text(max_size=300))
def test_a_sealed_value_opens_to_itself_and_hides_it(plain: str) -> None:
    key, where = crypto.new_key(), crypto.field_context("ws", "s1", "email")
    token = crypto.seal(key, plain, where)
    assert crypto.is_sealed(token)
    assert crypto.open_sealed(key, token, where) == plain
    if len(plain) >= 4:
        assert plain not in token
    assert crypto.seal(key, plain, where) != token  # a fresh nonce every time


def test_a_sealed_value_does_not_open_elsewhere_altered_or_with_another_key() -> None:
    key = crypto.new_key()
    token = crypto.seal(key, "ada@example.com", crypto.field_context("ws", "s1", "email"))
    for other in [("ws2", "s1", "email"), ("ws", "s2", "email"), ("ws", "s1", "phone")]:
        with pytest.raises(CryptoError):
            crypto.open_sealed(key, token, crypto.field_context(*other))
    with pytest.raises(CryptoError):
        crypto.open_sealed(crypto.new_key(), token, crypto.field_context("ws", "s1", "email"))
    body = token[len(crypto.SEALED_PREFIX) :]
    flipped = body[:20] + ("A" if body[20] != "A" else "B") + body[21:]
    for bad in [crypto.SEALED_PREFIX + flipped, crypto.SEALED_PREFIX + "abc", "plain", "enc1:%%%"]:
        with pytest.raises(CryptoError):
            crypto.open_sealed(key, bad, crypto.field_context("ws", "s1", "email"))


def test_keys_are_read_from_base64_or_base64url_and_must_be_32_bytes() -> None:
    raw = bytes(range(32))
    assert crypto.decode_key(base64.b64encode(raw).decode()) == raw
    assert crypto.decode_key(crypto.encode_key(raw)) == raw
    for bad in ["", "abc", base64.b64encode(b"short").decode(), "!!!!"]:
        with pytest.raises(CryptoError):
            crypto.decode_key(bad)


def test_master_keys_parse_in_order_with_the_first_current() -> None:
    text = f"new:{crypto.encode_key(K2)}, old:{crypto.encode_key(K1)}"
    parsed = crypto.parse_master_keys(text)
    assert list(parsed) == ["new", "old"] and parsed["old"] == K1
    for bad in ["", "nokey", f"bad id:{crypto.encode_key(K1)}", f"a:{crypto.encode_key(K1)},a:x"]:
        with pytest.raises(CryptoError):
            crypto.parse_master_keys(bad)


def test_wrapping_binds_the_key_to_its_subject_and_names_its_master_key() -> None:
    data_key = crypto.new_key()
    wrapped = ring("k1").wrap("ws", "s1", data_key)
    assert wrapped.master_key_id == "k1" and data_key not in wrapped.wrapped
    assert ring("k1").unwrap("ws", "s1", wrapped) == data_key
    with pytest.raises(CryptoError):
        ring("k1").unwrap("ws", "s2", wrapped)  # moved to another subject
    with pytest.raises(CryptoError, match="not configured"):
        ring("k2").unwrap("ws", "s1", wrapped)
    with pytest.raises(CryptoError):
        ring("k1").unwrap("ws", "s1", WrappedKey("k1", wrapped.wrapped[:-1] + b"\x00"))


def test_rewrapping_changes_the_master_key_not_the_data_key() -> None:
    data_key = crypto.new_key()
    old = ring("k1").wrap("ws", "s1", data_key)
    rotated = ring("k2", "k1")
    again = rotated.rewrap("ws", "s1", old)
    assert again.master_key_id == "k2" and again.wrapped != old.wrapped
    assert ring("k2").unwrap("ws", "s1", again) == data_key
    assert rotated.rewrap("ws", "s1", again) is again  # already current: unchanged


def test_blind_indexes_are_keyed_and_scoped_by_workspace_and_kind() -> None:
    keyring = ring("k1")
    token = keyring.blind_index("ws", "email", "ada@example.com")
    assert token == keyring.blind_index("ws", "email", "ada@example.com")
    assert len(token) == 64 and "ada" not in token
    assert token != keyring.blind_index("ws2", "email", "ada@example.com")
    assert token != keyring.blind_index("ws", "user_id", "ada@example.com")
    assert token != Keyring({"k1": K1}, bytes([9]) * 32).blind_index(
        "ws", "email", "ada@example.com"
    )


def test_a_keyring_refuses_malformed_or_shared_keys() -> None:
    with pytest.raises(CryptoError):
        Keyring({}, BLIND)
    with pytest.raises(CryptoError):
        Keyring({"k1": b"short"}, BLIND)
    with pytest.raises(CryptoError, match="differ"):
        Keyring({"k1": K1}, K1)


def test_development_keys_derive_from_the_secret_and_production_needs_real_ones() -> None:
    dev = crypto.build_keyring(master_keys="", blind_index_key="", dev_secret="s3cret")
    assert dev.current_id == "dev"
    same = crypto.build_keyring(master_keys="", blind_index_key="", dev_secret="s3cret")
    assert dev.blind_index("w", "email", "x") == same.blind_index("w", "email", "x")
    with pytest.raises(CryptoError, match="MASTER_KEYS"):
        crypto.build_keyring(master_keys="", blind_index_key="", dev_secret=None)
    with pytest.raises(CryptoError, match="both"):
        crypto.build_keyring(
            master_keys=f"k1:{crypto.encode_key(K1)}", blind_index_key="", dev_secret="s"
        )
    real = crypto.build_keyring(
        master_keys=f"k1:{crypto.encode_key(K1)}",
        blind_index_key=crypto.encode_key(BLIND),
        dev_secret=None,
    )
    assert real.current_id == "k1"
    with pytest.raises(ValueError, match="MASTER_KEYS"):
        Settings(environment="production", secret_key="x" * 40)
    keys = CryptoSettings(
        master_keys=f"k1:{crypto.encode_key(K1)}", blind_index_key=crypto.encode_key(BLIND)
    )
    assert Settings(environment="production", secret_key="x" * 40, crypto=keys).crypto == keys
    assert crypto.encode_key(K1) not in repr(Settings(crypto=keys))  # never printed

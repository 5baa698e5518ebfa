"""Envelope encryption of personal data, and blind indexes for equality look-ups.

Every subject (a profile) has its own random 256-bit *data key*. A personal field is sealed with
AES-256-GCM under that key; the associated data binds the ciphertext to its workspace, subject
and field, so a value moved to another row or column no longer opens. Data keys are stored only
*wrapped* (AES-GCM again) by a workspace-independent *master key* from the settings; each wrapped
key names the master key that wrapped it, so master keys can be rotated by re-wrapping data keys
without touching the data (:meth:`Keyring.rewrap`). Destroying a subject's wrapped data key makes
every copy of its sealed fields unreadable: erasure by crypto-shredding.

A *blind index* is a keyed HMAC-SHA256 of a normalised value (an email, a phone number, a user
id) with its own key, so equality look-ups work on a column that holds no personal data. It is
scoped by workspace and kind: the same email in two workspaces has two unrelated indexes.

This module is pure: no database, no settings. :mod:`consentry.platform.keystore` stores the
wrapped keys; the capabilities seal and open their fields through it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12  # the GCM standard nonce; random per seal (2^32 seals per key stay safe)
TAG_BYTES = 16  # the GCM authentication tag
SEALED_PREFIX = "enc1:"  # a sealed value as text: the prefix, then base64url(nonce + ciphertext)
_KEY_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


class CryptoError(Exception):
    """A key is malformed or missing, or a sealed value does not open (tampered, wrong key)."""


# --- keys ----------------------------------------------------------------------------------------


def new_key() -> bytes:
    """A fresh random 256-bit key."""
    return os.urandom(KEY_BYTES)


def encode_key(key: bytes) -> str:
    """A key as unpadded base64url text (how keys are written in settings)."""
    return base64.urlsafe_b64encode(key).rstrip(b"=").decode()


def decode_key(text: str) -> bytes:
    """The 32 bytes of a base64 or base64url key; CryptoError otherwise."""
    cleaned = text.strip()
    try:
        raw = base64.urlsafe_b64decode(
            cleaned.replace("+", "-").replace("/", "_") + "=" * (-len(cleaned) % 4)
        )
    except (binascii.Error, ValueError) as exc:
        raise CryptoError("a key must be base64 or base64url text") from exc
    if len(raw) != KEY_BYTES:
        raise CryptoError(f"a key must be {KEY_BYTES} bytes, this one is {len(raw)}")
    return raw


def parse_master_keys(text: str) -> dict[str, bytes]:
    """``id:key,id:key,...`` (the first is the current one) as an ordered mapping.

    Ids are 1-32 characters of letters, digits, ``_`` and ``-``; keys are 32 bytes in base64.
    """
    keys: dict[str, bytes] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        key_id, sep, encoded = part.partition(":")
        if not sep or not _KEY_ID.match(key_id):
            raise CryptoError("master keys are written id:base64key, ids of [A-Za-z0-9_-]{1,32}")
        if key_id in keys:
            raise CryptoError(f"master key id {key_id!r} appears twice")
        keys[key_id] = decode_key(encoded)
    if not keys:
        raise CryptoError("no master key given")
    return keys


def derive_key(secret: str, label: str) -> bytes:
    """A key derived from a passphrase-like secret (development and tests only)."""
    return hashlib.pbkdf2_hmac("sha256", secret.encode(), b"consentry/" + label.encode(), 10_000)


# --- sealing -------------------------------------------------------------------------------------


def field_context(workspace_id: str, subject_id: str, field: str) -> bytes:
    """The associated data of a sealed field: where it belongs."""
    return f"consentry/field/v1|{workspace_id}|{subject_id}|{field}".encode()


def seal(key: bytes, plaintext: str, context: bytes) -> str:
    """``plaintext`` encrypted and authenticated under ``key``, bound to ``context``."""
    return SEALED_PREFIX + seal_body(AESGCM(key), plaintext.encode(), context)


def open_sealed(key: bytes, token: str, context: bytes) -> str:
    """The plaintext of a :func:`seal` token; CryptoError if it was altered, moved or the key is
    not the one it was sealed with."""
    if not is_sealed(token):
        raise CryptoError("not a sealed value")
    return open_body(AESGCM(key), token[len(SEALED_PREFIX) :], context).decode()


def seal_body(cipher: AESGCM, plaintext: bytes, context: bytes) -> str:
    """base64url(nonce + ciphertext) of ``plaintext`` under ``cipher`` (a fresh random nonce),
    bound to ``context``: the part of a sealed token after its prefix."""
    nonce = os.urandom(NONCE_BYTES)
    sealed = cipher.encrypt(nonce, plaintext, context)
    return base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode()


def open_body(cipher: AESGCM, body: str, context: bytes) -> bytes:
    """The plaintext of a :func:`seal_body` text; CryptoError if it does not open."""
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError) as exc:
        raise CryptoError("a sealed value is not valid base64url") from exc
    if len(raw) < NONCE_BYTES + TAG_BYTES:
        raise CryptoError("a sealed value is too short")
    try:
        return cipher.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context)
    except InvalidTag as exc:
        raise CryptoError("a sealed value does not open with this key and context") from exc


def is_sealed(value: object) -> bool:
    """Whether ``value`` is a sealed token (text starting with the sealed prefix)."""
    return isinstance(value, str) and value.startswith(SEALED_PREFIX)


# --- the keyring ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WrappedKey:
    """A data key as stored: the master key that wrapped it, and the wrapped bytes."""

    master_key_id: str
    wrapped: bytes


def _wrap_context(workspace_id: str, subject_id: str) -> bytes:
    return f"consentry/data-key/v1|{workspace_id}|{subject_id}".encode()


class Keyring:
    """The master keys (the first is current) and the blind-index key."""

    def __init__(self, master_keys: Mapping[str, bytes], blind_index_key: bytes) -> None:
        if not master_keys:
            raise CryptoError("a keyring needs at least one master key")
        for key_id, key in master_keys.items():
            if not _KEY_ID.match(key_id) or len(key) != KEY_BYTES:
                raise CryptoError(f"master key {key_id!r} is malformed")
        if len(blind_index_key) != KEY_BYTES:
            raise CryptoError("the blind-index key must be 32 bytes")
        if blind_index_key in master_keys.values():
            raise CryptoError("the blind-index key must differ from every master key")
        self._masters = dict(master_keys)
        # the HMAC keyed once; each index copies it (keying costs as much as hashing a value)
        self._blind = hmac.new(blind_index_key, digestmod=hashlib.sha256)
        self.current_id = next(iter(self._masters))

    @property
    def master_key_ids(self) -> list[str]:
        return list(self._masters)

    def wrap(self, workspace_id: str, subject_id: str, data_key: bytes) -> WrappedKey:
        """``data_key`` wrapped by the current master key, bound to its subject."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(self._masters[self.current_id]).encrypt(
            nonce, data_key, _wrap_context(workspace_id, subject_id)
        )
        return WrappedKey(self.current_id, nonce + sealed)

    def unwrap(self, workspace_id: str, subject_id: str, wrapped: WrappedKey) -> bytes:
        """The data key of a stored wrapped key; CryptoError when its master key is unknown
        (removed from the settings) or the wrapped bytes were altered or moved."""
        master = self._masters.get(wrapped.master_key_id)
        if master is None:
            raise CryptoError(
                f"master key {wrapped.master_key_id!r} is not configured; add it back to "
                "CONSENTRY_CRYPTO__MASTER_KEYS (after the current one) to read old data"
            )
        raw = wrapped.wrapped
        try:
            return AESGCM(master).decrypt(
                raw[:NONCE_BYTES], raw[NONCE_BYTES:], _wrap_context(workspace_id, subject_id)
            )
        except InvalidTag as exc:
            raise CryptoError("a wrapped data key does not open") from exc

    def rewrap(self, workspace_id: str, subject_id: str, wrapped: WrappedKey) -> WrappedKey:
        """The same data key wrapped by the current master key (the data stays as it is)."""
        if wrapped.master_key_id == self.current_id:
            return wrapped
        return self.wrap(workspace_id, subject_id, self.unwrap(workspace_id, subject_id, wrapped))

    def blind_index(self, workspace_id: str, kind: str, normalized: str) -> str:
        """The look-up token of a normalised value of ``kind`` (email, phone, user_id, ...) in a
        workspace: 64 hex digits of HMAC-SHA256 under the blind-index key."""
        mac = self._blind.copy()
        mac.update(f"consentry/blind/v1|{workspace_id}|{kind}|{normalized}".encode())
        return mac.hexdigest()


DEV_MASTER_KEY_ID = "dev"


def build_keyring(*, master_keys: str, blind_index_key: str, dev_secret: str | None) -> Keyring:
    """The keyring of the settings' keys; with both left empty and ``dev_secret`` given
    (development and tests only), keys derived from that secret under the id ``dev``."""
    if not master_keys.strip() and not blind_index_key.strip():
        if dev_secret is None:
            raise CryptoError(
                "set CONSENTRY_CRYPTO__MASTER_KEYS and CONSENTRY_CRYPTO__BLIND_INDEX_KEY "
                "(consentry keys generate prints fresh ones)"
            )
        return Keyring(
            {DEV_MASTER_KEY_ID: derive_key(dev_secret, "master")},
            derive_key(dev_secret, "blind-index"),
        )
    if not master_keys.strip() or not blind_index_key.strip():
        raise CryptoError("set both the master keys and the blind-index key, or neither")
    return Keyring(parse_master_keys(master_keys), decode_key(blind_index_key))

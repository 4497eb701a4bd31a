"""Secrets at rest: AES-256-GCM, each ciphertext bound to the row and column it is stored in.

Two formats, told apart by their first field:

* ``v2:<keyId>:<ivHex>:<tagHex>:<cipherHex>`` — what is written. The associated data names
  the table, the row's key and the column (``SecretPlace``), so a ciphertext copied into
  another row or column fails authentication instead of decrypting there. ``keyId`` (a
  hash of the key, not the key) says which key sealed it, so key rotation knows what is
  left to re-encrypt and a wrong key is named rather than guessed at.
* ``ivHex:tagHex:cipherHex`` — the original Node format (16-byte IV, no associated data).
  Still decrypted, so existing rows keep working; ``bisnesgpt secrets rotate`` rewrites them
  as v2, and any write of a value writes v2.

A box holds the current key and, during a key rotation, the previous one
(``ENCRYPTION_KEY_PREVIOUS``): values sealed with it still decrypt until rotated.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bisnesgpt.core.errors import CryptoError

IV_BYTES = 12  # GCM's native nonce size (v2)
LEGACY_IV_BYTES = 16  # the Node server's IV size (v1)
TAG_BYTES = 16
VERSION = "v2"


@dataclass(frozen=True)
class SecretPlace:
    """Where a ciphertext lives: table, the row's key and column (its associated data)."""

    table: str
    row_key: tuple[str, ...]
    column: str

    def associated_data(self) -> bytes:
        """The bytes AES-GCM authenticates with the ciphertext (unambiguous: a JSON array)."""
        return json.dumps(["bisnesgpt", self.table, list(self.row_key), self.column],
                          separators=(",", ":")).encode("utf-8")

    def __str__(self) -> str:
        return f"{self.table}[{'/'.join(self.row_key)}].{self.column}"


@dataclass(frozen=True)
class SecretColumn:
    """An encrypted column; ``at(...)`` names one row's value in it."""

    table: str
    column: str

    def at(self, *row_key: str | int) -> SecretPlace:
        """The place of the value in the row whose key is ``row_key``."""
        return SecretPlace(self.table, tuple(str(part) for part in row_key), self.column)


def key_id(key: bytes) -> str:
    """A short public name for a key (a keyed hash: says nothing about the key itself)."""
    return hmac.new(key, b"bisnesgpt key id", hashlib.sha256).hexdigest()[:8]


def _hex_key(key_hex: str, setting: str) -> bytes:
    try:
        key = bytes.fromhex(key_hex)
    except ValueError as exc:
        raise CryptoError(f"{setting} must be 64 hex characters") from exc
    if len(key) != 32:
        raise CryptoError(f"{setting} must be 32 bytes (64 hex characters)")
    return key


class SecretBox:
    """Encrypts and decrypts short secrets (tokens, API keys) with the current key (and the previous)."""

    def __init__(self, key: bytes, previous: bytes | None = None) -> None:
        if len(key) != 32 or (previous is not None and len(previous) != 32):
            raise CryptoError("ENCRYPTION_KEY must be 32 bytes (64 hex characters)")
        self.key_id = key_id(key)
        self._aead = AESGCM(key)
        self._keys = {self.key_id: self._aead}
        if previous is not None and previous != key:
            self._keys.setdefault(key_id(previous), AESGCM(previous))

    @classmethod
    def from_hex(cls, key_hex: str, previous_hex: str | None = None) -> SecretBox:
        """A box for ENCRYPTION_KEY (and ENCRYPTION_KEY_PREVIOUS) as configured (64 hex characters)."""
        previous = _hex_key(previous_hex, "ENCRYPTION_KEY_PREVIOUS") if previous_hex else None
        return cls(_hex_key(key_hex, "ENCRYPTION_KEY"), previous)

    def encrypt(self, plaintext: str, place: SecretPlace) -> str:
        """``v2:keyId:ivHex:tagHex:cipherHex`` sealed for ``place``, with a fresh random IV."""
        iv = os.urandom(IV_BYTES)
        sealed = self._aead.encrypt(iv, plaintext.encode("utf-8"), place.associated_data())
        cipher, tag = sealed[:-TAG_BYTES], sealed[-TAG_BYTES:]
        return f"{VERSION}:{self.key_id}:{iv.hex()}:{tag.hex()}:{cipher.hex()}"

    def decrypt(self, token: str, place: SecretPlace) -> str:
        """The plaintext of a value stored at ``place``; CryptoError when malformed, tampered,
        moved from another place or sealed with a key this box does not hold."""
        parts = token.split(":")
        if len(parts) == 5 and parts[0] == VERSION:
            aead = self._keys.get(parts[1])
            if aead is None:
                raise CryptoError(f"encrypted value was sealed with key {parts[1]}, neither ENCRYPTION_KEY "
                                  f"({self.key_id}) nor ENCRYPTION_KEY_PREVIOUS")
            iv, tag, cipher = _unhex(parts[2:])
            return _open([aead], iv, tag, cipher, place.associated_data(), f"{place} (wrong row, or tampered)")
        if len(parts) == 3:
            iv, tag, cipher = _unhex(parts)
            return _open(list(self._keys.values()), iv, tag, cipher, None, "legacy value (wrong key or tampered)")
        raise CryptoError("encrypted value is in neither the v2 nor the ivHex:tagHex:cipherHex format")

    def is_current(self, token: str) -> bool:
        """Whether ``token`` is already v2 under the current key (nothing for a rotation to do)."""
        parts = token.split(":")
        return len(parts) == 5 and parts[0] == VERSION and parts[1] == self.key_id

    def reseal(self, token: str, place: SecretPlace) -> str | None:
        """``token`` re-encrypted as v2 under the current key for ``place``; None when it already is."""
        if self.is_current(token):
            self.decrypt(token, place)  # a current value in the wrong place is still an error
            return None
        return self.encrypt(self.decrypt(token, place), place)


def _unhex(parts: list[str]) -> tuple[bytes, bytes, bytes]:
    try:
        iv, tag, cipher = (bytes.fromhex(part) for part in parts)
    except ValueError as exc:
        raise CryptoError("encrypted value is not hex where it should be") from exc
    if len(tag) != TAG_BYTES or not iv:
        raise CryptoError("encrypted value has a malformed IV or tag")
    return iv, tag, cipher


def _open(keys: list[AESGCM], iv: bytes, tag: bytes, cipher: bytes, aad: bytes | None, what: str) -> str:
    for aead in keys:
        try:
            return aead.decrypt(iv, cipher + tag, aad).decode("utf-8")
        except InvalidTag:
            continue
    raise CryptoError(f"encrypted value failed authentication: {what}")


def hash_api_key(key: str) -> str:
    """API keys are 32 random bytes, so a plain SHA-256 is enough (no slow KDF needed)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_api_key(prefix: str = "bgpt") -> str:
    """A new API key, ``<prefix>_`` and 32 random bytes, URL-safe (shown once, stored hashed)."""
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def constant_time_equals(a: str | bytes, b: str | bytes) -> bool:
    """Compare secrets without leaking, through timing, how much of them matched."""
    a_bytes = a.encode() if isinstance(a, str) else a
    b_bytes = b.encode() if isinstance(b, str) else b
    return hmac.compare_digest(a_bytes, b_bytes)

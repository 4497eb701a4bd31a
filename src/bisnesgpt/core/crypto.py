"""Secrets at rest: AES-256-GCM in the original Node format ``ivHex:tagHex:cipherHex``.

The Node server used ``crypto.createCipheriv('aes-256-gcm', key, iv)`` with a 16-byte IV,
so rows it wrote decrypt here unchanged, and rows written here decrypt there.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bisnesgpt.core.errors import CryptoError

IV_BYTES = 16
TAG_BYTES = 16


class SecretBox:
    """Encrypts and decrypts short secrets (tokens, API keys) with one 32-byte key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise CryptoError("ENCRYPTION_KEY must be 32 bytes (64 hex characters)")
        self._aead = AESGCM(key)

    @classmethod
    def from_hex(cls, key_hex: str) -> SecretBox:
        """A box for ENCRYPTION_KEY as configured (64 hex characters)."""
        try:
            return cls(bytes.fromhex(key_hex))
        except ValueError as exc:
            raise CryptoError("ENCRYPTION_KEY must be 64 hex characters") from exc

    def encrypt(self, plaintext: str) -> str:
        """``ivHex:tagHex:cipherHex`` with a fresh random IV (the Node server reads it as is)."""
        iv = os.urandom(IV_BYTES)
        sealed = self._aead.encrypt(iv, plaintext.encode("utf-8"), None)
        cipher, tag = sealed[:-TAG_BYTES], sealed[-TAG_BYTES:]
        return f"{iv.hex()}:{tag.hex()}:{cipher.hex()}"

    def decrypt(self, token: str) -> str:
        """The plaintext of ``ivHex:tagHex:cipherHex``; CryptoError when malformed, tampered or the key is wrong."""
        try:
            iv_hex, tag_hex, cipher_hex = token.split(":")
            iv, tag, cipher = bytes.fromhex(iv_hex), bytes.fromhex(tag_hex), bytes.fromhex(cipher_hex)
        except ValueError as exc:
            raise CryptoError("encrypted value is not in ivHex:tagHex:cipherHex format") from exc
        if len(tag) != TAG_BYTES or not iv:
            raise CryptoError("encrypted value has a malformed IV or tag")
        try:
            return self._aead.decrypt(iv, cipher + tag, None).decode("utf-8")
        except InvalidTag as exc:
            raise CryptoError("encrypted value failed authentication (wrong key or tampered)") from exc


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

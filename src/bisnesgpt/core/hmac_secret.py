"""The secret an HMAC signer keys on: its own setting, else the encryption key."""

from __future__ import annotations

from pydantic import SecretStr

from bisnesgpt.core.errors import ConfigError


def hmac_secret(own: SecretStr | None, encryption_key: SecretStr | None, *, needs_key: str) -> bytes:
    """``own``'s text when set and non-empty, else ``ENCRYPTION_KEY``'s bytes; ConfigError with neither.

    ``needs_key`` ends the error's sentence: what is signed with a key derived from it, and
    which setting would do instead.
    """
    if own is not None and own.get_secret_value():
        return own.get_secret_value().encode()
    if encryption_key is not None:
        return bytes.fromhex(encryption_key.get_secret_value())
    raise ConfigError(f"invalid setting ENCRYPTION_KEY: {needs_key}")

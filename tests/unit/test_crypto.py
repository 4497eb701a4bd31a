"""AES-256-GCM secrets in the original Node format; hashed API keys."""

from __future__ import annotations

import pytest

from bisnesgpt.core.crypto import SecretBox, constant_time_equals, hash_api_key, new_api_key
from bisnesgpt.core.errors import CryptoError

pytestmark = pytest.mark.unit

KEY = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
# Produced by Node.js 20: crypto.createCipheriv('aes-256-gcm', KEY, randomBytes(16)) on
# 'secret-token', written as iv.toString('hex'):getAuthTag().toString('hex'):cipherHex.
NODE_CIPHERTEXT = "8b782f9cab08baa6dfb8a0c02650c117:54f5b6854a5b2c339d6595a4f35a0078:7844182e6a172da399e0e126"


def test_decrypts_what_the_node_server_wrote() -> None:
    assert SecretBox.from_hex(KEY).decrypt(NODE_CIPHERTEXT) == "secret-token"


def test_round_trip_uses_a_fresh_16_byte_iv() -> None:
    box = SecretBox.from_hex(KEY)
    first, second = box.encrypt("EAAG-token"), box.encrypt("EAAG-token")
    assert first != second
    iv, tag, cipher = first.split(":")
    assert len(bytes.fromhex(iv)) == 16 and len(bytes.fromhex(tag)) == 16
    assert len(bytes.fromhex(cipher)) == len("EAAG-token")
    assert box.decrypt(first) == box.decrypt(second) == "EAAG-token"


@pytest.mark.parametrize("token", ["garbage", "aa:bb", "zz:zz:zz"])
def test_malformed_values_are_refused(token: str) -> None:
    with pytest.raises(CryptoError):
        SecretBox.from_hex(KEY).decrypt(token)


def test_tampering_and_wrong_keys_are_detected() -> None:
    box = SecretBox.from_hex(KEY)
    iv, tag, cipher = box.encrypt("secret").split(":")
    flipped = f"{int(cipher[:2], 16) ^ 1:02x}" + cipher[2:]
    with pytest.raises(CryptoError):
        box.decrypt(f"{iv}:{tag}:{flipped}")
    with pytest.raises(CryptoError):
        SecretBox.from_hex("ff" * 32).decrypt(f"{iv}:{tag}:{cipher}")


def test_api_keys_are_random_and_hashed() -> None:
    key = new_api_key()
    assert key.startswith("bgpt_") and len(key) > 40
    assert key != new_api_key()
    digest = hash_api_key(key)
    assert len(digest) == 64 and key not in digest
    assert constant_time_equals(digest, hash_api_key(key))
    assert not constant_time_equals(digest, hash_api_key(key + "x"))

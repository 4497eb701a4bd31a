"""AES-256-GCM secrets: v2 bound to their place, the original Node format still read; hashed API keys."""

from __future__ import annotations

import pytest

from bisnesgpt.core.crypto import SecretBox, SecretColumn, constant_time_equals, hash_api_key, new_api_key
from bisnesgpt.core.errors import CryptoError

pytestmark = pytest.mark.unit

KEY = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
NEW_KEY = "ff" * 32
# Produced by Node.js 20: crypto.createCipheriv('aes-256-gcm', KEY, randomBytes(16)) on
# 'secret-token', written as iv.toString('hex'):getAuthTag().toString('hex'):cipherHex.
NODE_CIPHERTEXT = "8b782f9cab08baa6dfb8a0c02650c117:54f5b6854a5b2c339d6595a4f35a0078:7844182e6a172da399e0e126"
TOKENS = SecretColumn("phone_configs", "meta_access_token_encrypted")
HERE = TOKENS.at("acme", 0)


def test_decrypts_what_the_node_server_wrote() -> None:
    assert SecretBox.from_hex(KEY).decrypt(NODE_CIPHERTEXT, HERE) == "secret-token"


def test_round_trip_is_v2_with_the_key_id_and_a_fresh_iv() -> None:
    box = SecretBox.from_hex(KEY)
    first, second = box.encrypt("EAAG-token", HERE), box.encrypt("EAAG-token", HERE)
    assert first != second
    version, key_id, iv, tag, cipher = first.split(":")
    assert (version, key_id) == ("v2", box.key_id) and KEY not in first
    assert len(bytes.fromhex(iv)) == 12 and len(bytes.fromhex(tag)) == 16
    assert len(bytes.fromhex(cipher)) == len("EAAG-token")
    assert box.decrypt(first, HERE) == box.decrypt(second, HERE) == "EAAG-token"
    assert box.is_current(first) and not box.is_current(NODE_CIPHERTEXT)


@pytest.mark.parametrize("token", ["garbage", "aa:bb", "zz:zz:zz", "v2:abc:zz:zz:zz", "v3:a:b:c:d"])
def test_malformed_values_are_refused(token: str) -> None:
    with pytest.raises(CryptoError):
        SecretBox.from_hex(KEY).decrypt(token, HERE)


def test_tampering_and_wrong_keys_are_detected() -> None:
    box = SecretBox.from_hex(KEY)
    version, key_id, iv, tag, cipher = box.encrypt("secret", HERE).split(":")
    flipped = f"{int(cipher[:2], 16) ^ 1:02x}" + cipher[2:]
    with pytest.raises(CryptoError, match="failed authentication"):
        box.decrypt(f"{version}:{key_id}:{iv}:{tag}:{flipped}", HERE)
    with pytest.raises(CryptoError, match=f"sealed with key {key_id}"):
        SecretBox.from_hex(NEW_KEY).decrypt(f"{version}:{key_id}:{iv}:{tag}:{cipher}", HERE)
    with pytest.raises(CryptoError):
        SecretBox.from_hex(NEW_KEY).decrypt(NODE_CIPHERTEXT, HERE)


def test_the_previous_key_still_decrypts_and_reseal_moves_values_to_the_current_one() -> None:
    old = SecretBox.from_hex(KEY)
    sealed_before = old.encrypt("tok", HERE)
    rotated = SecretBox.from_hex(NEW_KEY, KEY)
    assert rotated.decrypt(sealed_before, HERE) == "tok"
    assert rotated.decrypt(NODE_CIPHERTEXT, HERE) == "secret-token"
    for value in (sealed_before, NODE_CIPHERTEXT):
        upgraded = rotated.reseal(value, HERE)
        assert upgraded is not None and rotated.is_current(upgraded)
        assert SecretBox.from_hex(NEW_KEY).decrypt(upgraded, HERE) == rotated.decrypt(value, HERE)
        assert rotated.reseal(upgraded, HERE) is None  # idempotent


def test_api_keys_are_random_and_hashed() -> None:
    key = new_api_key()
    assert key.startswith("bgpt_") and len(key) > 40
    assert key != new_api_key()
    digest = hash_api_key(key)
    assert len(digest) == 64 and key not in digest
    assert constant_time_equals(digest, hash_api_key(key))
    assert not constant_time_equals(digest, hash_api_key(key + "x"))

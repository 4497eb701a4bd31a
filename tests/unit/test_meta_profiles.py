"""Transport profiles: URLs and authentication of the two Cloud API flavours."""

from __future__ import annotations

import pytest

from bisnesgpt.config import load_settings
from bisnesgpt.core.crypto import SecretBox
from bisnesgpt.engines.meta.profiles import Credentials, credentials_for_phone, d360_credentials, meta_credentials
from bisnesgpt.messaging.errors import PermanentSendError
from bisnesgpt.phones.store import D360_API_KEY, META_ACCESS_TOKEN, PhoneConfig

pytestmark = pytest.mark.unit

KEY = "ab" * 32


def phone(**values: object) -> PhoneConfig:
    base: dict[str, object] = {
        "id": 1, "company_id": "acme", "phone_index": 0, "connection_type": "meta_direct",
        "dialog360_client_id": None, "dialog360_channel_id": None, "api_key_encrypted": None,
        "display_phone_number": None, "status": None, "meta_phone_number_id": "123", "meta_waba_id": None,
        "meta_access_token_encrypted": SecretBox.from_hex(KEY).encrypt("tok", META_ACCESS_TOKEN.at("acme", 0)),
        "process_name": "meta",
        "settings": {}, "created_at": None, "updated_at": None,
    }
    base.update(values)
    return PhoneConfig(**base)  # type: ignore[arg-type]


def test_meta_profile_paths_and_bearer() -> None:
    creds = meta_credentials(load_settings(_env_file=None, meta_graph_version="v21.0"), "123", "tok")
    assert creds.messages_url() == "https://graph.facebook.com/v21.0/123/messages"
    assert creds.media_upload_url() == "https://graph.facebook.com/v21.0/123/media"
    assert creds.media_object_url("987") == "https://graph.facebook.com/v21.0/987"
    assert creds.auth_headers() == {"Authorization": "Bearer tok"}
    url = "https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=1&ext=2&hash=3"
    assert creds.download_url(url) == url
    assert "tok" not in repr(creds)


def test_d360_profile_has_no_version_nor_phone_and_proxies_downloads() -> None:
    creds = d360_credentials(load_settings(_env_file=None), "k3y")
    assert creds.messages_url() == "https://waba-v2.360dialog.io/messages"
    assert creds.media_upload_url() == "https://waba-v2.360dialog.io/media"
    assert creds.media_object_url("987") == "https://waba-v2.360dialog.io/987"
    assert creds.auth_headers() == {"D360-API-KEY": "k3y"}
    url = "https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=1&ext=2&hash=3"
    assert creds.download_url(url) == "https://waba-v2.360dialog.io/whatsapp_business/attachments/?mid=1&ext=2&hash=3"


def test_credentials_from_phone_configs() -> None:
    settings = load_settings(_env_file=None)
    box = SecretBox.from_hex(KEY)
    meta = credentials_for_phone(settings, box, phone(settings={"graph_url": "http://emu:1", "graph_version": "v1.0"}))
    assert (meta.profile, meta.secret, meta.messages_url()) == ("meta", "tok", "http://emu:1/v1.0/123/messages")
    d360 = credentials_for_phone(settings, box, phone(connection_type="360dialog",
                                                      api_key_encrypted=box.encrypt("dk", D360_API_KEY.at("acme", 0))))
    assert (d360.profile, d360.secret) == ("d360", "dk")
    for broken in (phone(meta_access_token_encrypted=None), phone(connection_type="360dialog"),
                   phone(connection_type="wwebjs")):
        with pytest.raises(PermanentSendError):
            credentials_for_phone(settings, box, broken)
    assert isinstance(meta, Credentials)

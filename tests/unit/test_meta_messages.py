"""Request body builders and the payload-contract translation."""

from __future__ import annotations

import pytest

from bisnesgpt.engines.meta import messages, signature
from bisnesgpt.messaging.errors import PermanentSendError

pytestmark = pytest.mark.unit


def test_envelope_and_reply_context() -> None:
    body = messages.text("60123", "hi", preview_url=True, reply_to="wamid.X")
    assert body == {"messaging_product": "whatsapp", "recipient_type": "individual", "to": "60123", "type": "text",
                    "text": {"body": "hi", "preview_url": True}, "context": {"message_id": "wamid.X"}}


def test_media_needs_exactly_one_source() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        messages.media("image", "1", media_id="1", link="http://x")
    with pytest.raises(ValueError, match="not a media type"):
        messages.media("gif", "1", link="http://x")
    assert messages.media("document", "1", media_id="9", filename="a.pdf")["document"] == {"id": "9",
                                                                                            "filename": "a.pdf"}


@pytest.mark.parametrize("kind", ["edit", "delete", "poll"])
def test_types_the_cloud_api_lacks_fail_permanently(kind: str) -> None:
    with pytest.raises(PermanentSendError) as info:
        messages.body_from_payload({"type": kind, kind: {"message_id": "x"}}, contact="60123")
    assert info.value.code == "UNSUPPORTED_MESSAGE_TYPE"


def test_payload_contract_translation_fills_the_envelope() -> None:
    body = messages.body_from_payload({"type": "image", "image": {"link": "https://x/y.png", "caption": "c"},
                                       "context": {"message_id": "wamid.1"}}, contact="60123")
    assert body == {"messaging_product": "whatsapp", "recipient_type": "individual", "to": "60123", "type": "image",
                    "image": {"link": "https://x/y.png", "caption": "c"}, "context": {"message_id": "wamid.1"}}
    group = messages.body_from_payload({"type": "text", "text": {"body": "x"}, "to": "g1"}, contact="g1", group=True)
    assert group["recipient_type"] == "group"
    with pytest.raises(PermanentSendError):
        messages.body_from_payload({"type": "image"}, contact="1")


def test_signature_round_trip_and_rejections() -> None:
    body = b'{"object":"whatsapp_business_account"}'
    header = signature.sign("s3cret", body)
    assert header.startswith("sha256=") and signature.verify("s3cret", body, header)
    assert signature.verify("s3cret", body, header.upper().replace("SHA256=", "sha256="))
    assert not signature.verify("s3cret", body + b" ", header)
    assert not signature.verify("other", body, header)
    assert not signature.verify("s3cret", body, None)
    assert not signature.verify("s3cret", body, header.removeprefix("sha256="))
    assert not signature.verify("", body, header)

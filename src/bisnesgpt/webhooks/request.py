"""The headers of one delivery: the endpoint's own, the ``X-Bisnesgpt-*`` ones and the signature.

Secrets and custom headers are decrypted only here, for the attempt at hand; the body is
signed with every secret that is valid now (the current one, and the previous one during a
rotation's overlap), so the worker's deliveries and a test delivery look the same to a receiver.
"""

from __future__ import annotations

import json

from bisnesgpt.core.crypto import SecretBox
from bisnesgpt.webhooks.endpoints import CUSTOM_HEADERS, SIGNING_SECRET
from bisnesgpt.webhooks.signing import (
    ATTEMPT_HEADER,
    DELIVERY_ID_HEADER,
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    SIGNATURE_HEADER,
    signature_header,
)


def delivery_headers(box: SecretBox, endpoint_id: str, body: bytes, *, secret_encrypted: str,
                     previous_secret_encrypted: str | None, headers_encrypted: str | None, event_id: str,
                     event_type: str, delivery_id: str, attempt: int) -> dict[str, str]:
    """The request headers for ``body`` to the endpoint (``previous_secret_encrypted``: None once expired)."""
    place = SIGNING_SECRET.at(endpoint_id)
    signing = [box.decrypt(secret_encrypted, place)]
    if previous_secret_encrypted:
        signing.append(box.decrypt(previous_secret_encrypted, place))
    custom: dict[str, str] = {}
    if headers_encrypted:
        custom = json.loads(box.decrypt(headers_encrypted, CUSTOM_HEADERS.at(endpoint_id)))
    return {**custom, EVENT_ID_HEADER: event_id, EVENT_TYPE_HEADER: event_type, DELIVERY_ID_HEADER: delivery_id,
            ATTEMPT_HEADER: str(attempt), SIGNATURE_HEADER: signature_header(signing, body)}

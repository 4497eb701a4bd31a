"""A test delivery: one signed ``webhook.test`` document posted to an endpoint now, and its answer.

It is signed with the endpoint's secret(s) and carries its custom headers and the usual
``X-Bisnesgpt-*`` headers, through the same destination check and deadline as every delivery
(``Deliverer``), so a receiver that accepts the test accepts real events. It is not an event:
it is not stored in the delivery log and does not count in the endpoint's failure streak — the
answer (status code, error, the start of the body) is returned to whoever asked, and a disabled
endpoint may be tested before it is enabled again.
"""

from __future__ import annotations

from datetime import UTC, datetime

from typing_extensions import TypedDict

from bisnesgpt.core.ids import uuid7
from bisnesgpt.webhooks.delivery import Deliverer
from bisnesgpt.webhooks.payload import encode_body, event_document
from bisnesgpt.webhooks.request import delivery_headers
from bisnesgpt.webhooks.service import WebhookService

TEST_EVENT_TYPE = "webhook.test"


class TestDelivery(TypedDict):
    """How the test went: the receiver's status code (None: no answer) and why it failed, if it did."""

    endpointId: str
    eventId: str
    ok: bool
    statusCode: int | None
    error: str | None
    excerpt: str | None
    durationMs: int


async def send_test(service: WebhookService, endpoint_id: str, scope: str | None) -> TestDelivery:
    """Post a signed ``webhook.test`` document to the endpoint in ``scope`` now and answer how it went."""
    endpoint = await service.get(endpoint_id, scope)
    event_id = f"test_{uuid7()}"
    body = encode_body(event_document(
        event_id=event_id, event_type=TEST_EVENT_TYPE, created_at=datetime.now(UTC), company_id=endpoint.company_id,
        phone_index=None, data={"test": True, "message": "a test delivery: no event happened"}, raw=None,
        include_raw=False))
    until = endpoint.previous_secret_expires_at
    previous = endpoint.previous_secret_encrypted if until is not None and until > datetime.now(UTC) else None
    headers = delivery_headers(
        service.box, endpoint.id, body, secret_encrypted=endpoint.secret_encrypted, previous_secret_encrypted=previous,
        headers_encrypted=endpoint.headers_encrypted, event_id=event_id, event_type=TEST_EVENT_TYPE,
        delivery_id="test", attempt=1)
    settings = service.settings
    private = settings.webhook_allow_private_destinations
    deliverer = Deliverer(resolver=service.resolver, allow_private=private, timeout=settings.webhook_timeout_seconds,
                          response_max_bytes=settings.webhook_response_max_bytes, endpoint_concurrency=1,
                          private_excerpts=private and settings.webhook_private_response_excerpts)
    try:
        result = await deliverer.post(endpoint.id, endpoint.url, body, headers)
    finally:
        await deliverer.close()
    return {"endpointId": endpoint.id, "eventId": event_id, "ok": result.ok, "statusCode": result.status_code,
            "error": result.error, "excerpt": result.excerpt, "durationMs": round(result.duration * 1000)}

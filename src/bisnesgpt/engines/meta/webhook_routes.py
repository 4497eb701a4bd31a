"""Webhook endpoints of the meta process (also mounted on ``legacy``).

* ``GET /api/meta/webhook`` and ``GET /webhook/meta`` — Meta's subscription check:
  ``hub.mode=subscribe`` and ``hub.verify_token`` equal to ``META_WEBHOOK_VERIFY_TOKEN``
  → the ``hub.challenge`` as plain text; anything else → 403.
* ``POST`` on the same paths — ``X-Hub-Signature-256`` verified on the raw bytes in
  constant time against ``META_APP_SECRET`` (missing/invalid → 401, nothing stored); bodies
  over ``META_WEBHOOK_MAX_BYTES`` (3 MB) → 413; then the raw body is enqueued to
  ``webhook-events`` and 200 returned — processing happens in the queue's worker.
* ``POST /webhook/360dialog`` — the same, for 360dialog (which does not sign): accepted
  with a valid Meta signature, or with ``D360_WEBHOOK_TOKEN`` in the ``X-Webhook-Token``
  header (or ``?token=``), as configured on 360dialog's webhook. ``?channel=<channel id>``
  routes the events to the phone with that ``dialog360_channel_id``.
"""

from __future__ import annotations

import json
import time

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse

from bisnesgpt.api.edge import JsonRefused, inspect_json
from bisnesgpt.api.problems import problem_for
from bisnesgpt.core.crypto import constant_time_equals
from bisnesgpt.core.errors import BadRequest, BisnesgptError, Forbidden, PayloadTooLarge, Unauthorized
from bisnesgpt.core.ids import new_event_id
from bisnesgpt.engines.meta import signature
from bisnesgpt.engines.meta.metrics import WEBHOOK_ACK_SECONDS, WEBHOOKS_RECEIVED
from bisnesgpt.engines.meta.webhook_processor import WEBHOOK_KIND, WebhookJob
from bisnesgpt.messaging.queues import WEBHOOK_EVENTS
from bisnesgpt.processes.context import ProcessContext

META_PATHS = ("/api/meta/webhook", "/webhook/meta")
D360_PATH = "/webhook/360dialog"
D360_TOKEN_HEADER = "X-Webhook-Token"  # noqa: S105 - a header name, not a secret


def webhook_router(ctx: ProcessContext) -> APIRouter:
    """The webhook routes, with the secrets and limits of ``ctx.settings`` (see module docstring)."""
    router = APIRouter(tags=["webhooks"])
    settings = ctx.settings
    verify_token = settings.meta_webhook_verify_token.get_secret_value() if settings.meta_webhook_verify_token else ""
    app_secret = settings.meta_app_secret.get_secret_value() if settings.meta_app_secret else ""
    d360_token = settings.d360_webhook_token.get_secret_value() if settings.d360_webhook_token else ""
    max_bytes = settings.meta_webhook_max_bytes

    async def verify_subscription(request: Request) -> PlainTextResponse:
        params = request.query_params
        given = params.get("hub.verify_token") or ""
        if params.get("hub.mode") == "subscribe" and verify_token and constant_time_equals(given, verify_token):
            return PlainTextResponse(params.get("hub.challenge") or "")
        raise Forbidden("webhook verification failed: wrong hub.mode or hub.verify_token")

    async def receive_meta(request: Request) -> PlainTextResponse:
        return await _receive(request, "meta")

    async def receive_d360(request: Request) -> PlainTextResponse:
        return await _receive(request, "360dialog")

    async def _receive(request: Request, provider: str) -> PlainTextResponse:
        started = time.perf_counter()
        try:
            body = await _read_limited(request, max_bytes)
            _check_authentic(request, provider, body)
            _check_json_object(body, settings.json_max_depth)
            job = WebhookJob(kind=WEBHOOK_KIND, provider=provider, body=body.decode("utf-8"), receivedAt=time.time(),
                             channel=request.query_params.get("channel"))
            await ctx.queues.add(WEBHOOK_EVENTS, new_event_id(), dict(job))
        except Exception as exc:
            result = problem_for(exc).type if isinstance(exc, BisnesgptError) else "error"
            WEBHOOKS_RECEIVED.labels(provider, result).inc()
            raise
        WEBHOOKS_RECEIVED.labels(provider, "accepted").inc()
        WEBHOOK_ACK_SECONDS.labels(provider).observe(time.perf_counter() - started)
        return PlainTextResponse("EVENT_RECEIVED")

    def _check_authentic(request: Request, provider: str, body: bytes) -> None:
        if not _authentic(request, provider, body):
            raise Unauthorized("missing or invalid webhook signature")

    def _authentic(request: Request, provider: str, body: bytes) -> bool:
        header = request.headers.get(signature.HEADER)
        if app_secret and header and signature.verify(app_secret, body, header):
            return True
        if provider == "360dialog" and d360_token:
            given = request.headers.get(D360_TOKEN_HEADER) or request.query_params.get("token") or ""
            return bool(given) and constant_time_equals(given, d360_token)
        return False

    for path in META_PATHS:
        router.add_api_route(path, verify_subscription, methods=["GET"], response_class=PlainTextResponse,
                             summary="Meta webhook subscription check (hub.challenge)")
        router.add_api_route(path, receive_meta, methods=["POST"], response_class=PlainTextResponse,
                             summary="Meta Cloud API webhook (signed with X-Hub-Signature-256)")
    router.add_api_route(D360_PATH, receive_d360, methods=["POST"], response_class=PlainTextResponse,
                         summary="360dialog webhook (token header or Meta signature)")
    return router


def _check_json_object(body: bytes, max_depth: int) -> None:
    # The edge checks JSON bodies too, but only those sent as JSON: the signature covers any bytes.
    try:
        inspect_json(body, max_depth=max_depth, storable_strings=False)
    except JsonRefused as exc:
        raise BadRequest(f"webhook body refused: {exc.detail}") from exc
    try:
        parsed = json.loads(body.decode("utf-8"))
    except ValueError as exc:
        raise BadRequest("webhook body is not JSON") from exc
    if not isinstance(parsed, dict):
        raise BadRequest("webhook body is not a JSON object")


async def _read_limited(request: Request, max_bytes: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(f"webhook body of {declared} bytes exceeds {max_bytes}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise PayloadTooLarge(f"webhook body exceeds {max_bytes} bytes")
    return bytes(body)

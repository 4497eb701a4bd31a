"""Webhook endpoint operations shared by the HTTP API and the ``bisnesgpt webhooks`` CLI.

Every call names the caller's company scope: ``None`` for an operator (all companies), or
one company id, in which case another company's endpoint is "not found" (404, never 403:
do not confirm it exists).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NotRequired

from typing_extensions import TypedDict

from bisnesgpt.config import Settings
from bisnesgpt.core.crypto import SecretBox
from bisnesgpt.core.errors import Conflict, NotFound, ValidationFailed
from bisnesgpt.core.ids import uuid7
from bisnesgpt.db.pool import Database
from bisnesgpt.messaging.events import EVENT_TYPES
from bisnesgpt.webhooks import deliveries, endpoints
from bisnesgpt.webhooks.deliveries import DeliveryOrigin, DeliveryRecord, DeliveryStatus, ReplayResult
from bisnesgpt.webhooks.endpoints import CUSTOM_HEADERS, SIGNING_SECRET, EndpointChanges, EndpointRecord, NewEndpoint
from bisnesgpt.webhooks.payload import iso_utc
from bisnesgpt.webhooks.signing import new_secret
from bisnesgpt.webhooks.urls import Resolver, SystemResolver, check_endpoint_url

MAX_HEADERS = 10
MAX_HEADER_VALUE = 1024
MAX_DESCRIPTION = 500
MAX_REPLAY_EVENTS = 10_000
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$")
# Headers the delivery sets itself (or that would break the request) cannot be overridden.
RESERVED_HEADERS = frozenset({
    "host", "content-type", "content-length", "content-encoding", "transfer-encoding", "connection",
    "keep-alive", "upgrade", "te", "trailer", "expect", "user-agent", "accept-encoding", "proxy-authorization",
})
RESERVED_HEADER_PREFIX = "x-bisnesgpt-"


def _field_error(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(f"{field}: {message}", errors=[{"field": field, "message": message, "type": "value_error"}])


def _check_description(description: str | None) -> None:
    if description is not None and len(description) > MAX_DESCRIPTION:
        raise _field_error("description", f"at most {MAX_DESCRIPTION} characters")


def validate_event_types(values: list[str] | None) -> list[str]:
    """Known event types, de-duplicated; empty = all types."""
    if not values:
        return []
    unknown = [v for v in values if v not in EVENT_TYPES]
    if unknown:
        raise _field_error("events", f"unknown event type(s) {unknown}; known: {list(EVENT_TYPES)}")
    return list(dict.fromkeys(values))


def validate_headers(headers: dict[str, str] | None) -> dict[str, str]:
    """Custom headers an endpoint may send: valid names, not ones the delivery sets, single-line values."""
    if not headers:
        return {}
    if len(headers) > MAX_HEADERS:
        raise _field_error("headers", f"at most {MAX_HEADERS} custom headers")
    seen: set[str] = set()
    for name, value in headers.items():
        lower = name.lower()
        if not _HEADER_NAME.match(name):
            raise _field_error("headers", f"{name!r} is not a valid header name")
        if lower in RESERVED_HEADERS or lower.startswith(RESERVED_HEADER_PREFIX):
            raise _field_error("headers", f"{name!r} is set by the delivery itself and cannot be overridden")
        if lower in seen:
            raise _field_error("headers", f"{name!r} is given twice")
        seen.add(lower)
        if not isinstance(value, str) or len(value) > MAX_HEADER_VALUE or any(c in value for c in "\r\n\0"):
            raise _field_error("headers", f"value of {name!r} must be a single-line string of at most "
                                          f"{MAX_HEADER_VALUE} characters")
    return dict(headers)


def new_endpoint_id() -> str:
    """A new endpoint id: ``whk_`` and a UUIDv7 (ids sort by creation time)."""
    return f"whk_{uuid7().hex}"


@dataclass(frozen=True)
class CreatedEndpoint:
    """An endpoint just created or given a new secret, with that secret in clear (shown once)."""

    endpoint: EndpointRecord
    secret: str  # shown once


class WebhookService:
    """Endpoints, secrets, delivery log, retry and replay — with tenant scoping applied."""

    def __init__(self, db: Database, box: SecretBox, settings: Settings, resolver: Resolver | None = None) -> None:
        self.db = db
        self.box = box
        self.settings = settings
        self.resolver = resolver or SystemResolver()

    async def _checked_url(self, url: str) -> str:
        target = await check_endpoint_url(url, self.resolver,
                                          allow_private=self.settings.webhook_allow_private_destinations)
        return target.url

    def _encrypt_headers(self, endpoint_id: str, headers: dict[str, str]) -> str | None:
        return self.box.encrypt(json.dumps(headers), CUSTOM_HEADERS.at(endpoint_id)) if headers else None

    def header_names(self, endpoint: EndpointRecord) -> list[str]:
        """The names of the endpoint's custom headers, sorted (their values are never shown)."""
        if not endpoint.headers_encrypted:
            return []
        return sorted(json.loads(self.box.decrypt(endpoint.headers_encrypted, CUSTOM_HEADERS.at(endpoint.id))))

    # --- endpoints ----------------------------------------------------------------------------

    async def create(self, company_id: str, *, url: str, events: list[str] | None = None, enabled: bool = True,
                     headers: dict[str, str] | None = None, description: str = "",
                     include_raw: bool = False) -> CreatedEndpoint:
        """A new endpoint of ``company_id`` with a fresh signing secret (within the per-company limit)."""
        _check_description(description)
        checked_url = await self._checked_url(url)
        event_types = validate_event_types(events)
        custom = validate_headers(headers)
        secret = new_secret()
        limit = self.settings.webhook_max_endpoints_per_company
        async with self.db.transaction() as conn:
            if not await endpoints.lock_company(conn, company_id):
                raise NotFound(f"company {company_id!r} not found")
            if await endpoints.count_endpoints(conn, company_id) >= limit:
                raise Conflict(f"company {company_id!r} already has {limit} webhook endpoints (the limit); "
                               "delete or reuse one")
            endpoint_id = new_endpoint_id()
            record = await endpoints.insert_endpoint(conn, NewEndpoint(
                id=endpoint_id, company_id=company_id, url=checked_url, description=description,
                event_types=event_types, enabled=enabled, include_raw=include_raw,
                headers_encrypted=self._encrypt_headers(endpoint_id, custom),
                secret_encrypted=self.box.encrypt(secret, SIGNING_SECRET.at(endpoint_id)),
            ))
        return CreatedEndpoint(record, secret)

    async def get(self, endpoint_id: str, scope: str | None) -> EndpointRecord:
        """One endpoint in ``scope``; NotFound for another company's (never confirm it exists)."""
        async with self.db.connection() as conn:
            record = await endpoints.get_endpoint(conn, endpoint_id)
        if record is None or (scope is not None and record.company_id != scope):
            raise NotFound(f"webhook endpoint {endpoint_id!r} not found")
        return record

    async def list_endpoints(self, scope: str | None) -> list[EndpointRecord]:
        """The endpoints in ``scope`` (None: every company's)."""
        async with self.db.connection() as conn:
            return await endpoints.list_endpoints(conn, scope)

    async def update(self, endpoint_id: str, scope: str | None, *, url: str | None = None,
                     events: list[str] | None = None, enabled: bool | None = None,
                     headers: dict[str, str] | None = None, headers_given: bool = False,
                     description: str | None = None, include_raw: bool | None = None) -> EndpointRecord:
        """Change what is given (``headers_given`` with no headers clears them).

        Enabling a disabled endpoint resumes the deliveries that waited meanwhile.
        """
        current = await self.get(endpoint_id, scope)
        _check_description(description)
        changes = EndpointChanges(
            url=await self._checked_url(url) if url is not None else None,
            description=description,
            event_types=validate_event_types(events) if events is not None else None,
            include_raw=include_raw,
            headers_given=headers_given,
            headers_encrypted=self._encrypt_headers(current.id, validate_headers(headers)) if headers_given else None,
            enabled=enabled,
        )
        async with self.db.transaction() as conn:
            record = await endpoints.update_endpoint(conn, current.id, changes)
            if record is None:
                raise NotFound(f"webhook endpoint {endpoint_id!r} not found")
            if enabled and not current.enabled:
                await deliveries.resume_endpoint(conn, current.id)
        return record

    async def delete(self, endpoint_id: str, scope: str | None) -> None:
        """Delete an endpoint in ``scope`` and its delivery log."""
        current = await self.get(endpoint_id, scope)
        async with self.db.connection() as conn:
            if not await endpoints.delete_endpoint(conn, current.id):
                raise NotFound(f"webhook endpoint {endpoint_id!r} not found")

    async def rotate_secret(self, endpoint_id: str, scope: str | None,
                            overlap_seconds: float | None = None) -> CreatedEndpoint:
        """A new signing secret; the old one keeps signing for the overlap (default from settings)."""
        current = await self.get(endpoint_id, scope)
        overlap = self.settings.webhook_secret_rotation_overlap_seconds if overlap_seconds is None else overlap_seconds
        if overlap < 0 or overlap > 30 * 86_400:
            raise _field_error("overlap_seconds", "must be between 0 and 2592000 (30 days)")
        secret = new_secret()
        async with self.db.connection() as conn:
            record = await endpoints.rotate_secret(conn, current.id,
                                                   self.box.encrypt(secret, SIGNING_SECRET.at(current.id)), overlap)
        if record is None:
            raise NotFound(f"webhook endpoint {endpoint_id!r} not found")
        return CreatedEndpoint(record, secret)

    # --- deliveries ----------------------------------------------------------------------------

    async def list_deliveries(self, endpoint_id: str, scope: str | None, *, status: str | None = None,
                              before: int | None = None, event_id: str | None = None,
                              limit: int = 50) -> list[DeliveryRecord]:
        """An endpoint's delivery log, newest first (``limit`` kept within 1..500)."""
        endpoint = await self.get(endpoint_id, scope)
        wanted = next((known for known in deliveries.STATUSES if known == status), None)
        if status is not None and wanted is None:
            raise _field_error("status", f"must be one of {list(deliveries.STATUSES)}")
        async with self.db.connection() as conn:
            return await deliveries.list_deliveries(conn, endpoint.id, status=wanted, before=before,
                                                    event_id=event_id, limit=max(1, min(limit, 500)))

    async def get_delivery(self, endpoint_id: str, delivery_id: int, scope: str | None) -> DeliveryRecord:
        """One delivery of an endpoint in ``scope``."""
        endpoint = await self.get(endpoint_id, scope)
        async with self.db.connection() as conn:
            record = await deliveries.get_delivery(conn, endpoint.id, delivery_id)
        if record is None:
            raise NotFound(f"delivery {delivery_id} not found for webhook endpoint {endpoint_id!r}")
        return record

    async def retry(self, endpoint_id: str, delivery_id: int, scope: str | None) -> DeliveryRecord:
        """Attempt one delivery again now (whatever its state, unless an attempt is in flight)."""
        endpoint = await self.get(endpoint_id, scope)
        async with self.db.transaction() as conn:
            if await deliveries.get_delivery(conn, endpoint.id, delivery_id) is None:
                raise NotFound(f"delivery {delivery_id} not found for webhook endpoint {endpoint_id!r}")
            if not await deliveries.retry_delivery(conn, endpoint.id, delivery_id):
                raise Conflict(f"delivery {delivery_id} has an attempt in flight; try again in a moment")
            record = await deliveries.get_delivery(conn, endpoint.id, delivery_id)
        assert record is not None
        return record

    async def retry_dead(self, endpoint_id: str, scope: str | None) -> int:
        """Attempt every dead-lettered delivery of the endpoint again now; how many."""
        endpoint = await self.get(endpoint_id, scope)
        async with self.db.transaction() as conn:
            return await deliveries.retry_dead(conn, endpoint.id)

    async def replay(self, endpoint_id: str, scope: str | None, *, since: datetime, until: datetime | None = None,
                     events: list[str] | None = None, limit: int = MAX_REPLAY_EVENTS,
                     after_event_id: str | None = None) -> ReplayResult:
        """Deliver the company's events from ``since`` (to ``until``) to this endpoint again.

        At most ``limit`` per call; to continue, call again with ``since`` = the result's
        ``last_created_at`` and ``after_event_id`` = its ``last_event_id``.
        """
        endpoint = await self.get(endpoint_id, scope)
        since = since if since.tzinfo else since.replace(tzinfo=UTC)
        until = until if until is None or until.tzinfo else until.replace(tzinfo=UTC)
        if until is not None and until <= since:
            raise _field_error("until", "must be after since")
        if not 1 <= limit <= MAX_REPLAY_EVENTS:
            raise _field_error("limit", f"must be between 1 and {MAX_REPLAY_EVENTS}")
        types = validate_event_types(events) or None
        async with self.db.transaction() as conn:
            return await deliveries.replay(conn, endpoint.id, since=since, until=until, event_types=types,
                                           limit=limit, after_event_id=after_event_id)

    async def counts(self, endpoint_id: str, scope: str | None) -> dict[DeliveryStatus, int]:
        """The endpoint's delivery rows per status."""
        endpoint = await self.get(endpoint_id, scope)
        async with self.db.connection() as conn:
            return await deliveries.count_by_status(conn, endpoint.id)


# --- public representations (API responses and CLI --json) ----------------------------------------


class SecretRotationView(TypedDict):
    """Until when the previous secret still signs (None: no rotation in progress)."""

    previous_secret_valid_until: str | None


class EndpointHealthView(TypedDict):
    """The endpoint's failure streak and its last outcomes."""

    consecutive_failures: int
    failing_since: str | None
    last_success_at: str | None
    last_failure_at: str | None


class EndpointView(TypedDict):
    """An endpoint as tenants see it (``deliveries`` and ``secret`` where the caller adds them)."""

    id: str
    company_id: str
    url: str
    description: str
    events: list[str]
    all_events: bool
    enabled: bool
    include_raw: bool
    headers: dict[str, str]
    secret_rotation: SecretRotationView
    health: EndpointHealthView
    disabled_at: str | None
    disabled_reason: str | None
    notice: str | None
    created_at: str
    updated_at: str
    deliveries: NotRequired[dict[DeliveryStatus, int]]
    secret: NotRequired[str]


class DeliveryView(TypedDict):
    """A delivery as its log shows it (``next_attempt_at`` only while it waits)."""

    id: int
    endpoint_id: str
    event_id: str
    event_type: str
    event_created_at: str
    origin: DeliveryOrigin
    status: DeliveryStatus
    in_flight: bool
    attempts: int
    next_attempt_at: str | None
    last_attempt_at: str | None
    last_attempt_by: str | None
    last_status_code: int | None
    last_error: str | None
    last_response_excerpt: str | None
    delivered_at: str | None
    dead_at: str | None
    created_at: str


def _iso(moment: datetime | None) -> str | None:
    return iso_utc(moment) if moment is not None else None


def endpoint_view(endpoint: EndpointRecord, header_names: list[str]) -> EndpointView:
    """An endpoint as tenants see it: never the secret, custom header values redacted."""
    notice = None
    if not endpoint.enabled and endpoint.disabled_reason:
        notice = (f"{endpoint.disabled_reason}. New events are not queued for this endpoint while it is "
                  "disabled: fix the receiver, set enabled=true (waiting deliveries resume), and replay "
                  "missed events with POST /api/v1/webhooks/{id}/replay?since=…")
    return {
        "id": endpoint.id,
        "company_id": endpoint.company_id,
        "url": endpoint.url,
        "description": endpoint.description,
        "events": endpoint.event_types or list(EVENT_TYPES),
        "all_events": not endpoint.event_types,
        "enabled": endpoint.enabled,
        "include_raw": endpoint.include_raw,
        "headers": dict.fromkeys(header_names, "***"),
        "secret_rotation": {
            "previous_secret_valid_until": _iso(endpoint.previous_secret_expires_at)
            if endpoint.previous_secret_expires_at and endpoint.previous_secret_expires_at > datetime.now(UTC)
            else None,
        },
        "health": {
            "consecutive_failures": endpoint.consecutive_failures,
            "failing_since": _iso(endpoint.failing_since),
            "last_success_at": _iso(endpoint.last_success_at),
            "last_failure_at": _iso(endpoint.last_failure_at),
        },
        "disabled_at": _iso(endpoint.disabled_at),
        "disabled_reason": endpoint.disabled_reason,
        "notice": notice,
        "created_at": iso_utc(endpoint.created_at),
        "updated_at": iso_utc(endpoint.updated_at),
    }


def delivery_view(delivery: DeliveryRecord) -> DeliveryView:
    """A delivery row as the API and the CLI show it (``in_flight``: an attempt holds it now)."""
    in_flight = delivery.locked_until is not None and delivery.locked_until > datetime.now(UTC)
    waiting = delivery.status in deliveries.OPEN_STATUSES
    return {
        "id": delivery.id,
        "endpoint_id": delivery.endpoint_id,
        "event_id": delivery.event_id,
        "event_type": delivery.event_type,
        "event_created_at": iso_utc(delivery.event_created_at),
        "origin": delivery.origin,
        "status": delivery.status,
        "in_flight": in_flight,
        "attempts": delivery.attempts,
        "next_attempt_at": _iso(delivery.next_attempt_at) if waiting else None,
        "last_attempt_at": _iso(delivery.last_attempt_at),
        "last_attempt_by": delivery.last_attempt_by,
        "last_status_code": delivery.last_status_code,
        "last_error": delivery.last_error,
        "last_response_excerpt": delivery.last_response_excerpt,
        "delivered_at": _iso(delivery.delivered_at),
        "dead_at": _iso(delivery.dead_at),
        "created_at": iso_utc(delivery.created_at),
    }

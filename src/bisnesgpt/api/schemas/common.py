"""Shared field types, JSON values and timestamps, the problem model and OpenAPI response helpers."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import Path
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue

from bisnesgpt.api.problems import PROBLEM_CONTENT_TYPE, TYPE_BASE

# A JSON object the API takes or gives without knowing its keys (a template's components, a
# message's payload). Pydantic's JsonValue, which it can validate and describe; the same shape
# as bisnesgpt.core.jsontypes.JsonObject.
JsonObject = dict[str, JsonValue]


def iso(value: datetime | None) -> str | None:
    """A timestamp as the API's JSON shows it: ISO 8601 with its offset (None stays None)."""
    return value.isoformat() if value is not None else None


COMPANY_ID_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
MAX_PHONE_INDEX = 999
URL_PATTERN = r"^[Hh][Tt][Tt][Pp][Ss]?://[A-Za-z0-9.-]+(:[0-9]{1,5})?([/?#][^\s]*)?$"
_URL = re.compile(URL_PATTERN)


class Strict(BaseModel):
    """Request bodies reject unknown fields (a typo must not be silently ignored) and take
    values only in their documented JSON type (``"phoneIndex": false`` is not phone 0)."""

    model_config = ConfigDict(extra="forbid", strict=True)


def _check_url(value: str) -> str:
    if not _URL.match(value):
        raise ValueError("must be an http:// or https:// URL with a host")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises on a port out of range
    except ValueError as exc:
        raise ValueError(f"invalid URL: {exc}") from exc
    if not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    return value


MediaUrl = Annotated[
    str,
    Field(min_length=10, max_length=2048, pattern=URL_PATTERN, json_schema_extra={"format": "uri"},
          examples=["https://example.com/files/photo.jpg"]),
    AfterValidator(_check_url),
]
PhoneIndex = Annotated[int, Field(ge=0, le=MAX_PHONE_INDEX, description="Which of the company's phones (0, 1, …)")]
CompanyId = Annotated[str, Field(pattern=COMPANY_ID_PATTERN, description="The company (tenant) id",
                                 examples=["acme"])]
CompanyPath = Annotated[str, Path(pattern=COMPANY_ID_PATTERN, description="The company (tenant) id",
                                  examples=["acme"])]
UserName = Annotated[str, Field(max_length=200, description="Who sent it (stored with the message)")]
Ordered = Annotated[bool | None, Field(
    description="Keep this message in its chat's order (it leaves after every message accepted before it for "
                "the same chat has been sent or has ended). false: send it as soon as possible, unordered "
                "(broadcasts to many chats). Default: the phone's setting (ordered unless changed).")]
MessageRef = Annotated[str, Field(min_length=1, max_length=256,
                                  description="Our messageId or the provider's message id (wamid / web id)")]
Caption = Annotated[str, Field(max_length=1024)]
TextBody = Annotated[str, Field(min_length=1, max_length=4096)]


class FieldError(BaseModel):
    """One field a request got wrong, in a problem's ``errors[]``."""

    field: str = Field(description="Dotted path of the offending field ('body' for the whole body)")
    message: str
    type: str = "value_error"


class Problem(BaseModel):
    """RFC 9457 problem details; every failed request answers with one."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(examples=[TYPE_BASE + "validation-error"])
    title: str = Field(examples=["Request validation failed"])
    status: int = Field(examples=[422])
    detail: str = Field(examples=["message: String should have at most 4096 characters"])
    errors: list[FieldError] = Field(default_factory=list)


_DESCRIPTIONS = {
    400: "Bad request",
    401: "Missing or invalid API key",
    403: "The key may not do this (operator key needed)",
    404: "No such company, phone or message for this key",
    409: "Conflict (an Idempotency-Key still in flight, or the target not yet sent)",
    413: "The body is over its limit (MEDIA_MAX_BYTES for media)",
    415: "The media type is not one WhatsApp accepts",
    416: "The Range asks for bytes past the end of the media",
    422: "Validation failed: `errors[]` names each field",
    429: "A rate limit or the company's send quota is used up: retry after `Retry-After` seconds",
    502: "The provider (Cloud API, WhatsApp Web) refused or could not be reached",
    503: "A dependency is down (database, queue) or the engine is disabled; retry later",
}
_EXAMPLES: dict[int, JsonObject] = {
    400: {"type": TYPE_BASE + "bad-request", "title": "Bad request", "status": 400,
          "detail": "Idempotency-Key must be 1-255 characters", "errors": []},
    401: {"type": TYPE_BASE + "unauthorized", "title": "Missing or invalid credentials", "status": 401,
          "detail": "send an API key as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'", "errors": []},
    403: {"type": TYPE_BASE + "forbidden", "title": "Not allowed", "status": 403,
          "detail": "this operation needs an operator (admin) key", "errors": []},
    404: {"type": TYPE_BASE + "not-found", "title": "Not found", "status": 404,
          "detail": "no phone 1 configured for company 'acme'", "errors": []},
    409: {"type": TYPE_BASE + "conflict", "title": "Conflict", "status": 409,
          "detail": "a request with this Idempotency-Key is still in flight", "errors": []},
    413: {"type": TYPE_BASE + "payload-too-large", "title": "Payload too large", "status": 413,
          "detail": "media is larger than the 104857600 byte limit (MEDIA_MAX_BYTES)", "errors": []},
    415: {"type": TYPE_BASE + "unsupported-media-type", "title": "Unsupported media type", "status": 415,
          "detail": "application/x-msdownload is not a media type WhatsApp accepts", "errors": []},
    416: {"type": TYPE_BASE + "range-not-satisfiable", "title": "Range not satisfiable", "status": 416,
          "detail": "the media has 5120 bytes: ask for a range within them", "errors": []},
    422: {"type": TYPE_BASE + "validation-error", "title": "Request validation failed", "status": 422,
          "detail": "chatId: must be a phone number with country code",
          "errors": [{"field": "chatId", "message": "must be a phone number with country code",
                      "type": "value_error"}]},
    429: {"type": TYPE_BASE + "rate-limited", "title": "Too many requests", "status": 429,
          "detail": "this API key may make 600 requests a minute: try again in 1 s (Retry-After)", "errors": [],
          "retryAfter": 1, "limit": "api_key_requests"},
    502: {"type": TYPE_BASE + "cloud-api-error", "title": "Cloud API error", "status": 502,
          "detail": "mark_read: (#100) Invalid parameter", "errors": []},
    503: {"type": TYPE_BASE + "engine-disabled", "title": "Engine disabled", "status": 503,
          "detail": "the meta engine is disabled (ENABLE_META=false); nothing was stored", "errors": []},
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for the problem statuses a route can answer (FastAPI's type for them)."""
    out: dict[int | str, dict[str, Any]] = {}
    if 401 in statuses and 429 not in statuses:  # whatever authenticates can be rate-limited
        statuses = (*statuses, 429)
    for status in sorted(statuses):
        out[status] = {
            "model": Problem,
            "description": _DESCRIPTIONS[status],
            "content": {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"},
                                               "example": _EXAMPLES[status]}},
        }
    return out


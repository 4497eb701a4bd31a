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
def _example(status: int, slug: str, title: str, detail: str, **extra: JsonValue) -> JsonObject:
    return {"type": TYPE_BASE + slug, "title": title, "status": status, "detail": detail, "errors": [], **extra}


_EXAMPLES: dict[int, JsonObject] = {
    400: _example(400, "bad-request", "Bad request", "Idempotency-Key must be 1-255 characters"),
    401: _example(401, "unauthorized", "Missing or invalid credentials",
                  "send an API key as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"),
    403: _example(403, "forbidden", "Not allowed", "this operation needs an operator (admin) key"),
    404: _example(404, "not-found", "Not found", "no phone 1 configured for company 'acme'"),
    409: _example(409, "conflict", "Conflict", "a request with this Idempotency-Key is still in flight"),
    413: _example(413, "payload-too-large", "Payload too large",
                  "media is larger than the 104857600 byte limit (MEDIA_MAX_BYTES)"),
    415: _example(415, "unsupported-media-type", "Unsupported media type",
                  "application/x-msdownload is not a media type WhatsApp accepts"),
    416: _example(416, "range-not-satisfiable", "Range not satisfiable",
                  "the media has 5120 bytes: ask for a range within them"),
    422: _example(422, "validation-error", "Request validation failed",
                  "chatId: must be a phone number with country code",
                  errors=[{"field": "chatId", "message": "must be a phone number with country code",
                           "type": "value_error"}]),
    429: _example(429, "rate-limited", "Too many requests",
                  "this API key may make 600 requests a minute: try again in 1 s (Retry-After)",
                  retryAfter=1, limit="api_key_requests"),
    502: _example(502, "cloud-api-error", "Cloud API error", "mark_read: (#100) Invalid parameter"),
    503: _example(503, "engine-disabled", "Engine disabled",
                  "the meta engine is disabled (ENABLE_META=false); nothing was stored"),
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


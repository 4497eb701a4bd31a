"""The one place errors become HTTP: RFC 9457 problem+json bodies, from one table.

``PROBLEMS`` maps each product error class to its HTTP status, problem type and title; an
error not in the table takes its nearest listed base class's entry (so a new subclass is a
conscious choice, not an accident). Every response for a failed request has ``type``,
``title``, ``status``, ``detail`` and ``errors[]`` (field errors, possibly empty). A
client mistake is always 4xx; an unexpected exception is a 500 with no internals leaked (it
is logged with its traceback).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypedDict

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from bisnesgpt.conversations.store import NotOnThisEngine
from bisnesgpt.core import errors
from bisnesgpt.core.logging import SummarizedWarning
from bisnesgpt.engines.meta.errors import CloudApiError
from bisnesgpt.engines.meta.window import TemplateRequired
from bisnesgpt.engines.wwebjs.driver_errors import DriverError
from bisnesgpt.media.store import BlobMissing, MediaStoreError, RangeNotSatisfiable, UnsupportedMediaType
from bisnesgpt.messaging.capabilities import UnsupportedMessageType, UnsupportedOperation
from bisnesgpt.messaging.errors import SendError
from bisnesgpt.webhooks.urls import DestinationRefused, DestinationUnresolvable

log = logging.getLogger(__name__)
_OVERLOADED_LOG = SummarizedWarning(log)

PROBLEM_CONTENT_TYPE = "application/problem+json"
TYPE_BASE = "https://bisnesgpt.dev/problems/"


@dataclass(frozen=True)
class Problem:
    """How one kind of error is answered over HTTP."""

    status: int
    type: str
    title: str


PROBLEMS: dict[type[errors.BisnesgptError], Problem] = {
    errors.BisnesgptError: Problem(500, "internal-error", "Internal error"),
    errors.ConfigError: Problem(500, "config-error", "Invalid configuration"),
    errors.SchemaNotMigrated: Problem(500, "schema-not-migrated", "Database not migrated"),
    errors.MigrationError: Problem(500, "migration-error", "Migration failed"),
    errors.EmbeddedServiceError: Problem(500, "embedded-service-error", "Embedded service failed"),
    errors.CryptoError: Problem(500, "crypto-error", "Secret could not be decrypted"),
    # client mistakes
    errors.ValidationFailed: Problem(422, "validation-error", "Request validation failed"),
    TemplateRequired: Problem(422, "template-required", "Template required"),
    UnsupportedMessageType: Problem(422, "unsupported-message-type", "Message type not supported by this phone"),
    UnsupportedOperation: Problem(422, "unsupported-operation", "Not supported by this phone's engine"),
    NotOnThisEngine: Problem(422, "not-offered-by-engine", "Not offered by this phone's engine"),
    DestinationRefused: Problem(422, "webhook-destination-refused", "Webhook destination refused"),
    errors.BadRequest: Problem(400, "bad-request", "Bad request"),
    errors.Unauthorized: Problem(401, "unauthorized", "Missing or invalid credentials"),
    errors.Forbidden: Problem(403, "forbidden", "Not allowed"),
    errors.MissingScope: Problem(403, "missing-scope", "API key lacks a scope"),
    errors.PhoneNotAllowed: Problem(403, "phone-not-allowed", "API key limited to other phones"),
    errors.NotFound: Problem(404, "not-found", "Not found"),
    errors.Conflict: Problem(409, "conflict", "Conflict"),
    errors.ProviderIdentityTaken: Problem(409, "provider-identity-taken", "Provider identity already connected"),
    errors.ClaimNotProven: Problem(422, "provider-claim-not-proven", "The provider did not confirm this phone"),
    errors.PayloadTooLarge: Problem(413, "payload-too-large", "Payload too large"),
    errors.TooManyRequests: Problem(429, "rate-limited", "Too many requests"),
    errors.SendQuotaExceeded: Problem(429, "send-quota-exceeded", "Send quota exceeded"),
    UnsupportedMediaType: Problem(415, "unsupported-media-type", "Unsupported media type"),
    RangeNotSatisfiable: Problem(416, "range-not-satisfiable", "Range not satisfiable"),
    # a dependency or a provider is not able to serve
    errors.ServiceUnavailable: Problem(503, "service-unavailable", "Service unavailable"),
    errors.DatabaseUnavailable: Problem(503, "database-unavailable", "Database unavailable"),
    errors.QueueUnavailable: Problem(503, "queue-unavailable", "Queue unavailable"),
    errors.Overloaded: Problem(503, "overloaded", "At capacity"),
    errors.EngineDisabled: Problem(503, "engine-disabled", "Engine disabled"),
    SendError: Problem(502, "send-error", "Send failed"),
    CloudApiError: Problem(502, "cloud-api-error", "Cloud API error"),
    DriverError: Problem(502, "wwebjs-driver-error", "WhatsApp Web driver error"),
    MediaStoreError: Problem(503, "media-store-unavailable", "Media store unavailable"),
    BlobMissing: Problem(404, "media-gone", "Media no longer stored"),
    DestinationUnresolvable: Problem(502, "webhook-destination-unresolvable", "Webhook destination does not resolve"),
}


def problem_for(exc: errors.BisnesgptError) -> Problem:
    """The table entry of ``exc``'s class, or of its nearest listed base class."""
    for cls in type(exc).__mro__:
        found = PROBLEMS.get(cls)
        if found is not None:
            return found
    return PROBLEMS[errors.BisnesgptError]


class FieldErrorJson(TypedDict):
    """One field a request got wrong, as a problem's ``errors[]`` lists it."""

    field: str
    message: str
    type: str


def problem(status: int, type_: str, title: str, detail: str, errors: Sequence[Mapping[str, object]] | None = None,
            headers: dict[str, str] | None = None, **extra: object) -> JSONResponse:
    """A problem+json response (``extra``: the problem's extension members)."""
    body: dict[str, object] = {
        "type": TYPE_BASE + type_,
        "title": title,
        "status": status,
        "detail": detail,
        "errors": list(errors or []),
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM_CONTENT_TYPE, headers=headers)


def error_response(exc: errors.BisnesgptError) -> JSONResponse:
    """The problem response for a product error (503s say when to retry)."""
    found = problem_for(exc)
    if isinstance(exc, errors.Overloaded):  # counted in /metrics; a line each would flood the log
        _OVERLOADED_LOG(f"{found.type}: {exc.detail}")
    elif found.status >= 500:
        log.warning("%s: %s", found.type, exc.detail)
    headers = {"Retry-After": "1"} if found.status == 503 else None
    if isinstance(exc, errors.TooManyRequests):
        headers = {"Retry-After": str(exc.retry_after)}
    return problem(found.status, found.type, found.title, exc.detail, exc.errors, headers=headers, **exc.extra)


def _field_errors(exc: RequestValidationError) -> list[FieldErrorJson]:
    out: list[FieldErrorJson] = []
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            out.append(_invalid_json(err))
            continue
        loc = [str(part) for part in err.get("loc", ()) if part not in ("body",)]
        out.append({"field": ".".join(loc) or "body", "message": err.get("msg", "invalid"),
                    "type": err.get("type", "value_error")})
    return out


def _invalid_json(err: Mapping[str, object]) -> FieldErrorJson:
    """A body that is not JSON: its field is the body (the error's location ends with the character
    position, which is no field name)."""
    loc = err.get("loc")
    position = loc[-1] if isinstance(loc, tuple) and loc and isinstance(loc[-1], int) else None
    ctx = err.get("ctx")
    reason = ctx.get("error") if isinstance(ctx, dict) else None
    where = f" at character {position}" if position is not None else ""
    return {"field": "body", "type": "json_invalid",
            "message": f"not valid JSON{where}" + (f" ({reason})" if reason else "")
                       + "; send one JSON object, with strings in double quotes"}


def _data_error_detail(exc: asyncpg.DataError) -> str:
    """What was wrong with a value, without echoing it (asyncpg's message quotes the value itself)."""
    text = str(exc)
    reason = re.search(r"\(([^()]*)\)\s*$", text) if text.startswith("invalid input for query argument") else None
    why = reason.group(1) if reason else text.split("\n", maxsplit=1)[0][:200]
    return (f"a value of the request cannot be used ({why}): ids and numbers must be in range, dates within "
            "years 1-9999, texts without NUL characters")


_HTTP_TITLES = {400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found",
                405: "Method not allowed", 406: "Not acceptable", 409: "Conflict", 413: "Payload too large",
                415: "Unsupported media type", 422: "Unprocessable entity", 429: "Too many requests"}


def install_problem_handlers(app: FastAPI) -> None:
    """Answer every error raised by a route of ``app`` with a problem body."""

    @app.exception_handler(errors.BisnesgptError)
    async def _product_error(_request: Request, exc: errors.BisnesgptError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        field_errors = _field_errors(exc)
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in field_errors[:5])
        return problem(422, "validation-error", "Request validation failed",
                       f"{detail} (the request schemas, with examples, are at /docs)", field_errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        title = _HTTP_TITLES.get(exc.status_code, "HTTP error")
        slug = title.lower().replace(" ", "-")
        detail = str(exc.detail)
        if exc.status_code in (404, 405) and detail in ("Not Found", "Method Not Allowed"):  # the router's own
            detail = f"{detail}: {request.method} {request.url.path} (every route is listed at /docs)"
        return problem(exc.status_code, slug, title, detail, headers=getattr(exc, "headers", None))

    @app.exception_handler(asyncpg.DataError)
    async def _data_error(_request: Request, exc: asyncpg.DataError) -> JSONResponse:
        # PostgreSQL (or asyncpg encoding a parameter) refused a value: an id past bigint, a date
        # outside its range, a NUL or lone surrogate in a text. It came from the request.
        return problem(422, "validation-error", "Request validation failed", _data_error_detail(exc),
                       [{"field": "request", "message": _data_error_detail(exc), "type": "value_out_of_range"}])

    @app.exception_handler(OverflowError)
    async def _overflow(_request: Request, exc: OverflowError) -> JSONResponse:
        detail = ("a number or date of the request is out of range (dates must stay within years 1-9999 in UTC): "
                  "send a smaller value")
        return problem(422, "validation-error", "Request validation failed", detail,
                       [{"field": "request", "message": detail, "type": "value_out_of_range"}])

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return problem(500, "internal-error", "Internal error", "an unexpected error occurred; it was logged")

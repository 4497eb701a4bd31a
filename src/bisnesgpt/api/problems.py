"""The one place errors become HTTP: RFC 9457 problem+json bodies.

Every response for a failed request has ``type``, ``title``, ``status``, ``detail`` and
``errors[]`` (field errors, possibly empty). A client mistake is always 4xx; an unexpected
exception is a 500 with no internals leaked (it is logged with its traceback).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from bisnesgpt.core.errors import BisnesgptError

log = logging.getLogger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"
TYPE_BASE = "https://bisnesgpt.dev/problems/"


def problem(status: int, type_: str, title: str, detail: str, errors: list[dict[str, Any]] | None = None,
            headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {
        "type": TYPE_BASE + type_,
        "title": title,
        "status": status,
        "detail": detail,
        "errors": errors or [],
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM_CONTENT_TYPE, headers=headers)


def _field_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        loc = [str(part) for part in err.get("loc", ()) if part not in ("body",)]
        out.append({"field": ".".join(loc) or "body", "message": err.get("msg", "invalid"),
                    "type": err.get("type", "value_error")})
    return out


_HTTP_TITLES = {400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found",
                405: "Method not allowed", 406: "Not acceptable", 409: "Conflict", 413: "Payload too large",
                415: "Unsupported media type", 422: "Unprocessable entity", 429: "Too many requests"}


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(BisnesgptError)
    async def _product_error(_request: Request, exc: BisnesgptError) -> JSONResponse:
        if exc.status >= 500:
            log.warning("%s: %s", exc.type, exc.detail)
        headers = {"Retry-After": "1"} if exc.status == 503 else None
        return problem(exc.status, exc.type, exc.title, exc.detail, exc.errors, headers=headers, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _field_errors(exc)
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
        return problem(422, "validation-error", "Request validation failed", detail, errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        title = _HTTP_TITLES.get(exc.status_code, "HTTP error")
        slug = title.lower().replace(" ", "-")
        return problem(exc.status_code, slug, title, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return problem(500, "internal-error", "Internal error", "an unexpected error occurred; it was logged")

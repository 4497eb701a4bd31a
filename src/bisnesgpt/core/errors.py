"""One rooted error hierarchy for the whole product.

Every boundary (database, Redis, HTTP clients, drivers) translates what it catches into one
of these with ``raise X from exc``; the API maps them to problem responses in exactly one
place (``bisnesgpt.api.problems``). ``status``/``type``/``title`` are what a client sees.
"""

from __future__ import annotations

from typing import Any


class BisnesgptError(Exception):
    """Root of every error this product raises on purpose."""

    status: int = 500
    type: str = "internal-error"
    title: str = "Internal error"

    def __init__(
        self,
        detail: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []
        self.extra = extra or {}


class ConfigError(BisnesgptError):
    """A setting is missing or invalid; raised before anything starts."""

    type = "config-error"
    title = "Invalid configuration"


# --- client mistakes (4xx) ---------------------------------------------------------------


class ValidationFailed(BisnesgptError):
    status = 422
    type = "validation-error"
    title = "Request validation failed"


class BadRequest(BisnesgptError):
    status = 400
    type = "bad-request"
    title = "Bad request"


class Unauthorized(BisnesgptError):
    status = 401
    type = "unauthorized"
    title = "Missing or invalid credentials"


class Forbidden(BisnesgptError):
    status = 403
    type = "forbidden"
    title = "Not allowed"


class NotFound(BisnesgptError):
    status = 404
    type = "not-found"
    title = "Not found"


class Conflict(BisnesgptError):
    status = 409
    type = "conflict"
    title = "Conflict"


class PayloadTooLarge(BisnesgptError):
    status = 413
    type = "payload-too-large"
    title = "Payload too large"


# --- our side is not able to serve (5xx) -------------------------------------------------


class ServiceUnavailable(BisnesgptError):
    """A dependency (PostgreSQL, Redis, an engine) is down; the client may retry."""

    status = 503
    type = "service-unavailable"
    title = "Service unavailable"


class DatabaseUnavailable(ServiceUnavailable):
    type = "database-unavailable"
    title = "Database unavailable"


class QueueUnavailable(ServiceUnavailable):
    type = "queue-unavailable"
    title = "Queue unavailable"


class EngineDisabled(ServiceUnavailable):
    type = "engine-disabled"
    title = "Engine disabled"


class MigrationError(BisnesgptError):
    type = "migration-error"
    title = "Migration failed"


class SchemaNotMigrated(ConfigError):
    """A process role was started on a database the migrations have not reached."""

    type = "schema-not-migrated"
    title = "Database not migrated"


class EmbeddedServiceError(BisnesgptError):
    """An embedded PostgreSQL/Valkey server could not be started or reached."""

    type = "embedded-service-error"
    title = "Embedded service failed"


class CryptoError(BisnesgptError):
    type = "crypto-error"
    title = "Secret could not be decrypted"

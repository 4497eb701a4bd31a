"""One rooted error hierarchy for the whole product.

Every boundary (database, Redis, HTTP clients, drivers) translates what it catches into one
of these with ``raise X from exc``. The errors say what went wrong (``detail``, field
``errors``, ``extra`` facts); how a client sees them — HTTP status, problem type, title —
is decided in one table at the HTTP edge (``bisnesgpt.api.problems.PROBLEMS``).
"""

from __future__ import annotations

import math
from typing import Any


class BisnesgptError(Exception):
    """Root of every error this product raises on purpose."""

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


# --- client mistakes (4xx) ---------------------------------------------------------------


class ValidationFailed(BisnesgptError):
    """The request is well-formed but its content is not acceptable (field errors say why)."""


class BadRequest(BisnesgptError):
    """The request cannot be understood at all."""


class Unauthorized(BisnesgptError):
    """No credentials, or credentials that are wrong or revoked."""


class Forbidden(BisnesgptError):
    """Authenticated, but not allowed to do this."""


class MissingScope(Forbidden):
    """The API key lacks the scope this operation needs (``extra["missing_scope"]`` names it)."""


class PhoneNotAllowed(Forbidden):
    """The API key is limited to other phones of its company."""


class NotFound(BisnesgptError):
    """No such resource (or one the caller may not know exists)."""


class Conflict(BisnesgptError):
    """The request contradicts the current state (a duplicate, a wrong kind of phone)."""


class ProviderIdentityTaken(Conflict):
    """A provider identity (a Meta phone_number_id, a 360dialog channel id) is claimed by another
    phone already: it names one WhatsApp number, whose inbound messages go to one phone only."""


class ClaimNotProven(BisnesgptError):
    """The provider did not confirm that the given credentials own the claimed phone number."""


class PayloadTooLarge(BisnesgptError):
    """The request body is over its limit."""


class TooManyRequests(BisnesgptError):
    """A rate limit or quota is used up; the client may try again after ``retry_after`` seconds."""

    def __init__(self, detail: str, *, retry_after: float, limit: str, extra: dict[str, Any] | None = None) -> None:
        super().__init__(detail, extra={"retryAfter": max(1, math.ceil(retry_after)), "limit": limit, **(extra or {})})
        self.retry_after = max(1, math.ceil(retry_after))
        self.limit = limit


class SendQuotaExceeded(TooManyRequests):
    """The company's send quota (per minute or per day) is used up: the message was not stored."""


# --- our side is not able to serve (5xx) -------------------------------------------------


class ServiceUnavailable(BisnesgptError):
    """A dependency (PostgreSQL, Redis, an engine) is down; the client may retry."""


class DatabaseUnavailable(ServiceUnavailable):
    """PostgreSQL cannot be reached (or went away mid-operation)."""


class Overloaded(ServiceUnavailable):
    """This process is at capacity (its database pool stayed busy, or its event loop lags): refused
    fast instead of queued for seconds; the client retries after ``Retry-After``."""


class QueueUnavailable(ServiceUnavailable):
    """Redis (the queues) cannot be reached."""


class EngineDisabled(ServiceUnavailable):
    """The engine that would send this message is switched off (``ENABLE_*``)."""


class LeaseLost(ServiceUnavailable):
    """This process's tenure of a lease is over (it expired or another holder took it): what the
    lease protects must not be written or driven from here any more."""


class MigrationError(BisnesgptError):
    """A migration could not be applied, or an applied one was edited."""


class SchemaNotMigrated(ConfigError):
    """A process role was started on a database the migrations have not reached."""


class EmbeddedServiceError(BisnesgptError):
    """An embedded PostgreSQL/Valkey server could not be started or reached."""


class CryptoError(BisnesgptError):
    """A stored secret could not be decrypted (wrong ``ENCRYPTION_KEY`` or a damaged value)."""

"""The API's rate limits and quotas: which limits exist, whom they count, what a refusal says.

- **Authentication failures per client address** (``AUTH_FAILURE_LIMIT`` per
  ``AUTH_FAILURE_WINDOW_SECONDS``): a presented key that is wrong, revoked or of a disabled
  company counts one; past the limit every authentication from that address (a good key too:
  no oracle for a guesser) is answered 429 with ``Retry-After``; the lock-out is recorded as an
  ``auth.rate_limited`` event. IPv6 addresses count per /64 (what one host can pick from).
  With ``API_KEY_CACHE_SECONDS`` set, an address found without failures is not asked about
  again for that long (``CleanAddresses``): every failed authentication is announced on
  ``api:auth-failed``, so each api process re-checks that address from its next request.
- **Requests per API key** (``API_KEY_REQUESTS_PER_MINUTE``, off by default).
- **Send quotas per company** (``companies.send_quota_per_minute`` / ``_per_day``, set with
  ``bisnesgpt companies quota``; none by default): a send over quota is answered 429
  ``send-quota-exceeded`` before anything is stored.
- **Dashboard sign-in backoff** per client address (``DASHBOARD_SIGN_IN_*``).

Counting is in Redis (``infra.rate_limits``), so all api instances share every budget; the
configured limits are exported as gauges on ``/metrics``.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable

from prometheus_client import Counter, Gauge
from starlette.requests import HTTPConnection

from bisnesgpt.config import Settings
from bisnesgpt.coordination.channels import AUTH_FAILED, publish
from bisnesgpt.coordination.coordinator import Subscriptions
from bisnesgpt.core.errors import SendQuotaExceeded, TooManyRequests
from bisnesgpt.core.jsontypes import JsonObject
from bisnesgpt.infra.rate_limits import Backoff, BackoffPolicy, GcraLimiter, Rate, Verdict
from bisnesgpt.processes.context import ProcessContext
from bisnesgpt.tenancy import store as tenancy
from bisnesgpt.tenancy.store import SendQuota

log = logging.getLogger(__name__)
KEY_PREFIX = "bisnesgpt:ratelimit"

AUTH_FAILURES = Counter("bisnesgpt_auth_failures_total",
                        "Failed authentications with a presented key (wrong, revoked, disabled company)", ["surface"])
RATE_LIMITED = Counter("bisnesgpt_rate_limited_total", "Requests refused with 429 by a rate limit or quota",
                       ["limit"])
LIMIT_SETTING = Gauge("bisnesgpt_rate_limit", "Configured rate limits: events allowed per window (0 = off)",
                      ["limit"])
LIMIT_WINDOW = Gauge("bisnesgpt_rate_limit_window_seconds", "The window of each configured rate limit", ["limit"])


def publish_settings(settings: Settings) -> None:
    """Export the configured limits as gauges (``/metrics`` shows what is in force)."""
    for name, limit, window in (
        ("auth_failures", settings.auth_failure_limit, settings.auth_failure_window_seconds),
        ("api_key_requests", settings.api_key_requests_per_minute, 60.0),
        ("dashboard_sign_in_free_attempts", settings.dashboard_sign_in_free_attempts,
         settings.dashboard_sign_in_backoff_max_seconds),
    ):
        LIMIT_SETTING.labels(name).set(limit)
        LIMIT_WINDOW.labels(name).set(window)


def client_subject(conn: HTTPConnection) -> str:
    """Whom per-address limits count: the client's address (IPv6 by its /64)."""
    host = conn.client.host if conn.client else ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host or "unknown"
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is None:
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address.ipv4_mapped or address) if isinstance(address, ipaddress.IPv6Address) else str(address)


# Entries past this many are dropped wholesale: a flood of distinct addresses cannot grow it.
MAX_CLEAN_ADDRESSES = 10_000


class CleanAddresses:
    """Addresses seen without failed authentications, trusted for ``ttl`` seconds while pub/sub is up.

    An address leaves at once when a failure from it is announced (``api:auth-failed``, by any
    api process) or counted here; nothing is trusted while the subscription is down. So a
    request from an address with no failures costs no Redis call, and an address with any
    failure is checked on every request, as without the memory.
    """

    def __init__(self, ttl: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._until: dict[str, float] = {}
        self._subscriptions: Subscriptions | None = None

    def attach(self, subscriptions: Subscriptions) -> None:
        """Hear ``api:auth-failed``; nothing is trusted until the subscription is up."""
        subscriptions.on(AUTH_FAILED, self._on_failure)
        subscriptions.on_connection(self._on_connection)
        self._subscriptions = subscriptions

    @property
    def listening(self) -> bool:
        """Whether a failure announced now would be heard."""
        return self._subscriptions is not None and self._subscriptions.hears(AUTH_FAILED)

    def trusted(self, subject: str) -> bool:
        """Whether ``subject`` was seen clean within the TTL (and the subscription is up)."""
        until = self._until.get(subject)
        return until is not None and until > self._clock() and self.listening

    def remember(self, subject: str) -> None:
        """``subject`` was just found without failures."""
        if self.ttl <= 0 or not self.listening:
            return
        if len(self._until) >= MAX_CLEAN_ADDRESSES:
            self._until.clear()
        self._until[subject] = self._clock() + self.ttl

    def forget(self, subject: str) -> None:
        """``subject`` failed: check it from now on."""
        self._until.pop(subject, None)

    def _on_failure(self, change: JsonObject) -> None:
        address = change.get("address")
        if isinstance(address, str):
            self.forget(address)

    def _on_connection(self, _connected: bool) -> None:
        self._until.clear()  # a failure announced while away was missed


class ApiLimits:
    """The limits of one api process (see module docstring); counts live in Redis."""

    def __init__(self, ctx: ProcessContext) -> None:
        settings = ctx.settings
        self.ctx = ctx
        self.auth_rate = Rate(settings.auth_failure_limit, settings.auth_failure_window_seconds)
        self.key_rate = Rate(settings.api_key_requests_per_minute, 60.0)
        self.quota_ttl = settings.send_quota_cache_seconds
        self._auth = GcraLimiter(ctx.redis, f"{KEY_PREFIX}:auth")
        self._keys = GcraLimiter(ctx.redis, f"{KEY_PREFIX}:key")
        self._sends = GcraLimiter(ctx.redis, f"{KEY_PREFIX}:send")
        self._sign_in = Backoff(ctx.redis, f"{KEY_PREFIX}:signin", BackoffPolicy(
            settings.dashboard_sign_in_free_attempts, settings.dashboard_sign_in_backoff_base_seconds,
            settings.dashboard_sign_in_backoff_max_seconds,
            memory_seconds=max(3600.0, settings.dashboard_sign_in_backoff_max_seconds)))
        self._quotas: dict[str, tuple[float, SendQuota]] = {}
        self.clean = CleanAddresses(settings.api_key_cache_seconds)
        self.clean.attach(ctx.coordinator)
        publish_settings(settings)

    # --- authentication failures ---------------------------------------------------------------

    async def before_auth(self, subject: str) -> None:
        """429 while ``subject`` is locked out for failed authentications."""
        if not self.auth_rate.limit or self.clean.trusted(subject):
            return
        verdict = await self._auth.check([(subject, self.auth_rate)], "peek")
        if not verdict.allowed:
            self._refuse("auth_failures", verdict, "too many failed authentications from this address")
        if verdict.remaining >= self.auth_rate.limit - 1:  # the whole allowance left: no failure counts
            self.clean.remember(subject)

    async def auth_failed(self, subject: str, surface: str) -> None:
        """Count a failed authentication; the one that uses up the allowance records the lock-out."""
        AUTH_FAILURES.labels(surface).inc()
        if not self.auth_rate.limit:
            return
        self.clean.forget(subject)
        if self.clean.ttl > 0 and not await publish(self.ctx.redis, AUTH_FAILED, {"address": subject},
                                                     namespace=self.ctx.namespace):
            log.warning("a failed authentication from %s was not announced; other api processes "
                        "re-check it within API_KEY_CACHE_SECONDS", subject)
        verdict = await self._auth.check([(subject, self.auth_rate)], "take")
        if verdict.allowed and verdict.remaining == 0:
            await self.ctx.events.record("auth.rate_limited", {
                "address": subject, "surface": surface, "failures": self.auth_rate.limit,
                "windowSeconds": self.auth_rate.period_seconds}, "warning")

    # --- per key ------------------------------------------------------------------------------

    async def key_request(self, key_id: int | None) -> None:
        """Count one request of a key (``None``: the ``ADMIN_API_KEY``); 429 over its rate."""
        if not self.key_rate.limit:
            return
        verdict = await self._keys.check([(str(key_id) if key_id is not None else "admin", self.key_rate)])
        if not verdict.allowed:
            self._refuse("api_key_requests", verdict, f"this API key may make {self.key_rate.limit} requests a minute")

    # --- send quotas ----------------------------------------------------------------------------

    async def quota_of(self, company_id: str) -> SendQuota:
        """The company's send quota (read from the database at most every SEND_QUOTA_CACHE_SECONDS)."""
        now = time.monotonic()
        cached = self._quotas.get(company_id)
        if cached is not None and now - cached[0] < self.quota_ttl:
            return cached[1]
        async with self.ctx.db.connection() as conn:
            quota = await tenancy.send_quota(conn, company_id)
        if len(self._quotas) > 10_000:
            self._quotas.clear()
        self._quotas[company_id] = (now, quota)
        return quota

    async def take_send(self, company_id: str) -> None:
        """Count one send of the company against its quotas; ``SendQuotaExceeded`` (nothing counted) over them."""
        quota = await self.quota_of(company_id)
        buckets: list[tuple[str, Rate]] = []
        if quota.per_minute:
            buckets.append((f"{company_id}:minute", Rate(quota.per_minute, 60.0)))
        if quota.per_day:
            buckets.append((f"{company_id}:day", Rate(quota.per_day, 86_400.0)))
        verdict = await self._sends.check(buckets)
        if not verdict.allowed:
            RATE_LIMITED.labels("send_quota").inc()
            raise SendQuotaExceeded(
                f"the send quota of company {company_id!r} ({quota.describe()}) is used up; nothing was stored — "
                f"send again after {max(1, round(verdict.retry_after))} s (Retry-After), or ask the operator "
                "for a larger quota", retry_after=verdict.retry_after, limit="send_quota",
                extra={"quota": {"perMinute": quota.per_minute, "perDay": quota.per_day}})

    # --- dashboard sign-in -----------------------------------------------------------------------

    async def sign_in_allowed(self, subject: str) -> None:
        """429 while ``subject`` must wait after failed sign-ins."""
        verdict = await self._sign_in.check(subject)
        if not verdict.allowed:
            self._refuse("dashboard_sign_in", verdict, "too many failed sign-ins from this address")

    async def sign_in_failed(self, subject: str) -> float:
        """Count a failed sign-in; how long the next attempt must wait."""
        return (await self._sign_in.failed(subject)).retry_after

    async def sign_in_succeeded(self, subject: str) -> None:
        """Forget the address's failed sign-ins."""
        await self._sign_in.reset(subject)

    @staticmethod
    def _refuse(limit: str, verdict: Verdict, why: str) -> None:
        RATE_LIMITED.labels(limit).inc()
        wait = max(1, round(verdict.retry_after + 0.499))
        raise TooManyRequests(f"{why}: try again in {wait} s (Retry-After)", retry_after=verdict.retry_after,
                              limit=limit)


def api_limits(conn: HTTPConnection) -> ApiLimits:
    """The app's ``ApiLimits`` (built from its process context on first use)."""
    state = conn.app.state
    limits: ApiLimits | None = getattr(state, "rate_limits", None)
    if limits is None:
        limits = ApiLimits(state.ctx)
        state.rate_limits = limits
    return limits

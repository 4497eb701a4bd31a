"""Settings of the edges people touch: the dashboard, the HTTP edge, rate limits, logging."""

import ipaddress
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings

from bisnesgpt.config.types import MemorySize


class EdgeSettings(BaseSettings):
    """What the api role's edge allows, and how every process logs."""

    # --- operator dashboard, served by the api role at /dashboard -------------------
    # A sign-in lasts this long (the session cookie expires; sign in again with a key).
    dashboard_session_hours: Annotated[float, Field(gt=0, le=24 * 30)] = 12.0
    # Secure flag on the session cookie: auto = when the request came over HTTPS (directly or
    # X-Forwarded-Proto), always (TLS terminated before an HTTP proxy hop), never (plain HTTP only).
    dashboard_cookie_secure: Literal["auto", "always", "never"] = "auto"
    # Signs session cookies; empty = derived from ENCRYPTION_KEY (set it to rotate sign-ins alone).
    dashboard_session_secret: SecretStr | None = None
    # How often the live stream re-reads process health and queue counts for open dashboards.
    dashboard_live_interval_ms: Annotated[int, Field(ge=200, le=60_000)] = 2_000
    # Per-minute message metrics (sent by engine, failures by code, accept->sent latency) are
    # rolled up from `messages` into process_metrics this often (one api process at a time).
    dashboard_rollup_interval_ms: Annotated[int, Field(ge=500, le=3_600_000)] = 30_000
    # The attention strip lists a phone's queue as backing up once its oldest unfinished
    # outbound message has waited this long (seconds).
    dashboard_backlog_seconds: Annotated[float, Field(gt=0, le=86_400)] = 60.0

    # --- the HTTP edge: proxies, hosts, body sizes, hostile JSON --------------------------------
    # Reverse proxies (comma-separated addresses or CIDRs; "*" = any peer) whose
    # X-Forwarded-For/-Proto/-Host are believed; from every other peer those headers are dropped.
    forwarded_allow_ips: str = ""
    # Host names requests may name (comma-separated; "*.example.com" = its subdomains; "*" = any).
    # Others are answered 400. Redirects never use the Host header, whatever this says.
    trusted_hosts: str = "*"
    # Request body limits per route family (413 before the body is read in full): the send
    # routes, and every route without a limit of its own (webhooks: META_WEBHOOK_MAX_BYTES;
    # media uploads: MEDIA_MAX_BYTES plus multipart framing).
    body_limit_sends: MemorySize = 1024 * 1024
    body_limit_default: MemorySize = 1024 * 1024
    # JSON bodies nested deeper than this are refused (422) before they are parsed for a route.
    json_max_depth: Annotated[int, Field(ge=4, le=1000)] = 32

    # --- rate limits (counted in Redis: every api instance shares them; 0 turns one off) -----
    # Failed authentications (wrong, revoked or missing keys) per client address: past this
    # many within the window, every authentication from the address is answered 429 with
    # Retry-After until the window has room again (one `auth.rate_limited` event per lock-out).
    auth_failure_limit: Annotated[int, Field(ge=0)] = 20
    auth_failure_window_seconds: Annotated[float, Field(gt=0, le=86_400)] = 60.0
    # Requests per API key per minute (a burst of this many, then evenly spread); 0 = no limit.
    api_key_requests_per_minute: Annotated[int, Field(ge=0)] = 0
    # Dashboard sign-in from one address: after this many failures each further one doubles
    # the wait before the next attempt (from the base, at most the max); a success resets it.
    dashboard_sign_in_free_attempts: Annotated[int, Field(ge=0)] = 5
    dashboard_sign_in_backoff_base_seconds: Annotated[float, Field(gt=0)] = 1.0
    dashboard_sign_in_backoff_max_seconds: Annotated[float, Field(gt=0)] = 300.0
    # Per-company send quotas are set per company (`bisnesgpt companies quota`); a company's
    # quota is re-read from the database at most this often per api process.
    send_quota_cache_seconds: Annotated[float, Field(ge=0, le=3600)] = 5.0

    # --- logging ----------------------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    log_dir: Path = Path("logs")

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _check_proxies(cls, value: str) -> str:
        for part in (p.strip() for p in value.split(",")):
            if part and part != "*":
                try:
                    ipaddress.ip_network(part, strict=False)
                except ValueError as exc:
                    raise ValueError(f"{part!r} is no IP address or CIDR network") from exc
        return value

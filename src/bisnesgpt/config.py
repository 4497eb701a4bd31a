"""Settings: one typed object, built once in each process entry point and passed down.

Environment names are the ones operators already use (ARCHITECTURE §2). A ``.env`` file in
the working directory is read if present; real environment variables win over it. Nothing
below this module reads ``os.environ``.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlsplit

from pydantic import BeforeValidator, Field, SecretStr, ValidationError, field_validator
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, SettingsConfigDict

from bisnesgpt.core.errors import ConfigError
from bisnesgpt.core.service_urls import database_hosts, sentinel_target, sentinel_url, writable_target

Role = Literal["api", "wwebjs", "meta", "legacy"]
ROLES: tuple[Role, ...] = ("api", "wwebjs", "meta", "legacy")
ENGINE_ROLES: tuple[Role, ...] = ("api", "wwebjs", "meta")

Port = Annotated[int, Field(ge=0, le=65535)]
Millis = Annotated[int, Field(ge=1)]
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
_MEMORY_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)B?\s*$", re.IGNORECASE)
_MEMORY_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_memory_size(value: Any) -> Any:
    """PM2-style sizes ("2G", "512M", "300K", plain bytes) -> bytes; 0 means "no limit"."""
    if isinstance(value, str):
        match = _MEMORY_SIZE.match(value)
        if match is None:
            raise ValueError("must be a size like 2G, 512M, 300K or a number of bytes")
        return int(float(match.group(1)) * _MEMORY_UNITS[match.group(2).upper()])
    return value


MemorySize = Annotated[int, BeforeValidator(parse_memory_size), Field(ge=0)]


class Settings(BaseSettings):
    """Every knob of the product. Field ``foo_bar`` is environment variable ``FOO_BAR``."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        validate_default=True,
    )

    # --- identity of this process ------------------------------------------------------
    process_name: Role | None = None
    instance_id: Annotated[int, Field(ge=0)] = 0

    # --- HTTP ---------------------------------------------------------------------------
    host: str = "0.0.0.0"
    api_port: Port = 3000
    wwebjs_port: Port = 3001
    meta_port: Port = 3002
    port: Port = 8443  # the legacy all-in-one process
    # The legacy process also listens on API_PORT, so a rollback does not move the API for
    # clients (they keep API_PORT; PORT serves as before).
    legacy_serve_api_port: bool = False

    # --- PostgreSQL -----------------------------------------------------------------------
    database_url: str | None = None
    database_pool_api_max: Annotated[int, Field(ge=1)] = 20
    database_pool_wwebjs_max: Annotated[int, Field(ge=1)] = 10
    database_pool_meta_max: Annotated[int, Field(ge=1)] = 20
    database_pool_legacy_max: Annotated[int, Field(ge=1)] = 30
    database_connect_timeout: Annotated[float, Field(gt=0)] = 5.0
    # Admission control of the api (and legacy) role: a request that finds every pooled
    # connection busy waits at most this long, then gets 503 + Retry-After; a send arriving
    # while the event loop lags more than ADMISSION_MAX_LOOP_LAG is refused the same way.
    # Overload is answered in bounded time instead of queueing for seconds. 0 turns each off.
    admission_pool_wait: Annotated[int, Field(ge=0)] = 250
    admission_max_loop_lag: Annotated[int, Field(ge=0)] = 500

    # --- Redis ----------------------------------------------------------------------------
    redis_url: str | None = None
    redis_host: str | None = None
    redis_port: Port = 6379
    redis_password: SecretStr | None = None
    # Sentinel-managed Redis (instead of REDIS_URL/REDIS_HOST): the sentinels as host:port,
    # comma-separated; the master's name; the sentinels' own password if they need one.
    # Every Redis use (BullMQ, pub/sub, commands) follows the master across failovers.
    redis_sentinels: str | None = None
    redis_sentinel_master: str = "mymaster"
    redis_sentinel_password: SecretStr | None = None
    redis_db: Annotated[int, Field(ge=0, le=15)] = 0
    # Prefix of every pub/sub channel (pub/sub ignores logical databases: deployments sharing a
    # Redis server would hear each other's session events, QR and pairing codes). Unset: the
    # PostgreSQL database's name and the Redis db number ("bisnesgpt.1"); "": the original
    # channel names (only to share channels with the Node server).
    redis_namespace: Annotated[str, Field(max_length=100, pattern=r"^[A-Za-z0-9_.-]*$")] | None = None

    # --- embedded default (no DATABASE_URL / no REDIS_URL) ---------------------------------
    data_dir: Path = Path("data")
    embedded_postgres_port: Port = 0  # 0 = pick a free port at start
    embedded_redis_port: Port = 0

    # --- process roles ----------------------------------------------------------------------
    enable_wwebjs: bool = True
    enable_meta: bool = True
    api_instances: Annotated[int, Field(ge=1, le=64)] = 1
    meta_instances: Annotated[int, Field(ge=1, le=64)] = 1

    # --- secrets ----------------------------------------------------------------------------
    encryption_key: SecretStr | None = None
    # The key before a rotation: values it sealed still decrypt until `bisnesgpt secrets rotate`
    # re-encrypted them with ENCRYPTION_KEY (then unset it).
    encryption_key_previous: SecretStr | None = None
    admin_api_key: SecretStr | None = None
    meta_webhook_verify_token: SecretStr | None = None
    meta_app_secret: SecretStr | None = None

    # --- health and lifecycle ----------------------------------------------------------------
    heartbeat_interval: Millis = 10_000
    max_heartbeat_age: Millis = 60_000
    shutdown_timeout: Annotated[float, Field(gt=0)] = 10.0  # seconds to drain in-flight work
    # How often every process looks for processes on its own machine that died without
    # stopping (judged by pid): their rows turn ``crashed`` and a ``crash`` event is recorded,
    # whatever supervises them (PM2, systemd, none).
    process_watch_interval: Millis = 1_000
    # Set by the orchestrator: the socket a child pings it through (not for operators).
    bisnesgpt_supervisor_fd: int | None = None

    # --- orchestrator (`bisnesgpt start`): restart policy per role ---------------------------
    # Exponential backoff: delay = <ROLE>_RESTART_DELAY * 2^(restarts in a row - 1), capped at
    # RESTART_DELAY_MAX; the count resets once a child stayed up <ROLE>_MIN_UPTIME. After
    # <ROLE>_MAX_RESTARTS restarts in a row the role is given up (api: the orchestrator exits).
    api_restart_delay: Millis = 2_000
    wwebjs_restart_delay: Millis = 5_000
    meta_restart_delay: Millis = 3_000
    restart_delay_max: Millis = 60_000
    api_min_uptime: Millis = 10_000
    wwebjs_min_uptime: Millis = 30_000
    meta_min_uptime: Millis = 10_000
    api_max_restarts: Annotated[int, Field(ge=0)] = 5
    wwebjs_max_restarts: Annotated[int, Field(ge=0)] = 10
    meta_max_restarts: Annotated[int, Field(ge=0)] = 10
    # RSS of a child (with its own children) above this: drained and restarted. 0 = no limit.
    api_max_memory: MemorySize = 2 * 1024**3
    wwebjs_max_memory: MemorySize = 4 * 1024**3
    meta_max_memory: MemorySize = 1 * 1024**3
    memory_check_interval: Millis = 5_000
    # A new child must ping within this long (imports, pools, components starting).
    child_start_timeout: Millis = 60_000

    # --- maintenance (one process at a time, under a lease) ---------------------------------
    cleanup_interval: Millis = 3_600_000  # cleanup_old_process_metrics/events, expired idempotency keys

    # --- fault injection for tests only -------------------------------------------------------
    # Comma-separated roles that raise at start-up (proves the give-up policy). Never set it
    # in production; unset (the default) it does nothing.
    test_crash_on_start: str = ""

    # --- pacing -----------------------------------------------------------------------------
    wwebjs_max_messages_per_second: Annotated[float, Field(gt=0)] = 10
    meta_max_messages_per_second: Annotated[float, Field(gt=0)] = 20

    # --- tenant webhooks -----------------------------------------------------------
    # Deliver to private, loopback and link-local addresses (local development and tests only).
    webhook_allow_private_destinations: bool = False
    # With private destinations allowed, also keep what they answered in the delivery log
    # (tenants read it: never in production, where it would make an internal service readable).
    webhook_private_response_excerpts: bool = False
    # Run the delivery worker in this process (it lives in the api role, hence also legacy).
    webhook_delivery_enabled: bool = True
    webhook_timeout_seconds: Annotated[float, Field(gt=0, le=120)] = 10.0
    # Failed deliveries are retried with exponential backoff and jitter for this long, then
    # dead-lettered (replayable).
    webhook_retry_horizon_seconds: Annotated[float, Field(gt=0)] = 86_400.0
    webhook_retry_base_seconds: Annotated[float, Field(gt=0)] = 10.0
    webhook_retry_max_delay_seconds: Annotated[float, Field(gt=0)] = 3_600.0
    # In-flight requests per endpoint (across all processes) and per delivering process.
    webhook_endpoint_concurrency: Annotated[int, Field(ge=1, le=100)] = 4
    webhook_worker_concurrency: Annotated[int, Field(ge=1, le=1000)] = 32
    # New rows wake the workers at once (LISTEN/NOTIFY); this poll is the fallback.
    webhook_poll_interval_seconds: Annotated[float, Field(gt=0, le=60)] = 2.0
    webhook_max_endpoints_per_company: Annotated[int, Field(ge=1, le=100)] = 5
    webhook_response_max_bytes: Annotated[int, Field(ge=0, le=65_536)] = 2_048
    webhook_secret_rotation_overlap_seconds: Annotated[float, Field(ge=0)] = 86_400.0
    # An endpoint failing this long (and at least this many attempts in a row) is disabled.
    webhook_auto_disable_after_seconds: Annotated[float, Field(ge=0)] = 259_200.0
    webhook_auto_disable_min_failures: Annotated[int, Field(ge=1)] = 20
    # Delivered and dead rows are kept this long (the delivery log), then deleted.
    webhook_delivery_retention_days: Annotated[int, Field(ge=1)] = 30
    # How often the backlog gauges are refreshed, and the retention clean-up runs (one
    # process at a time, under a lease).
    webhook_gauge_interval_seconds: Annotated[float, Field(gt=0, le=3600)] = 5.0
    webhook_cleanup_interval_seconds: Annotated[float, Field(gt=0)] = 3_600.0
    # --- message pipeline (api): router, outbox, idempotency --------------------------------
    router_cache_ttl: Annotated[float, Field(gt=0, le=3600)] = 10.0  # seconds; pub/sub invalidates sooner
    outbox_reconcile_interval: Annotated[int, Field(ge=50, le=60_000)] = 1000  # ms between reconciler passes
    outbox_min_age: Annotated[int, Field(ge=0, le=600_000)] = 2000  # ms a row waits before the reconciler acts
    idempotency_ttl_hours: Annotated[int, Field(ge=24, le=24 * 30)] = 24  # Idempotency-Key retention
    # --- Meta Cloud API engine (engines/meta) and its webhooks ------------------------------
    meta_graph_url: str = "https://graph.facebook.com"
    meta_graph_version: str = "v23.0"
    d360_base_url: str = "https://waba-v2.360dialog.io"
    # Per business phone number (Meta's default tier); per-phone override in
    # phone_configs.settings {"messages_per_second": n} or {"coexistence": true}.
    meta_phone_messages_per_second: Annotated[float, Field(gt=0, le=10_000)] = 80
    meta_coexistence_messages_per_second: Annotated[float, Field(gt=0, le=10_000)] = 20
    meta_pacing_burst_ms: Annotated[int, Field(ge=0, le=10_000)] = 100
    # How much of a late backlog may go out faster than the rate to catch up (kept below
    # one second's worth: Meta's bucket is per second).
    meta_pacing_catchup_ms: Annotated[int, Field(ge=0, le=1_000)] = 500
    # A job whose slot is this close waits in the process (a timer, no worker slot used for
    # work) instead of re-entering the queue behind every fresh job; at most this many.
    meta_pacing_hold_ms: Annotated[int, Field(ge=0, le=60_000)] = 3_000
    meta_pacing_hold_jobs: Annotated[int, Field(ge=0, le=10_000)] = 300
    # Per recipient (Meta's pair rate: about one message per 6 s, bursts tolerated).
    meta_pair_interval_ms: Annotated[int, Field(ge=0)] = 6_000
    meta_pair_burst: Annotated[int, Field(ge=1)] = 40
    meta_pair_backoff_max_exponent: Annotated[int, Field(ge=1, le=8)] = 5
    meta_retry_base_ms: Millis = 1_000
    meta_retry_max_ms: Millis = 60_000
    meta_http_timeout: Annotated[float, Field(gt=0)] = 30.0
    meta_http_connect_timeout: Annotated[float, Field(gt=0)] = 5.0
    meta_http_max_connections: Annotated[int, Field(ge=1)] = 100
    meta_send_concurrency: Annotated[int, Field(ge=1, le=500)] = 10
    meta_enforce_conversation_window: bool = True
    # The engine remembers a contact's window it saw open for this long (one read per contact,
    # not per message; an inbound message only lengthens a window, so nothing goes stale).
    meta_window_cache_seconds: Annotated[float, Field(ge=0, le=3600)] = 60.0
    meta_webhook_max_bytes: Annotated[int, Field(ge=1024)] = 3 * 1024 * 1024
    meta_status_retry_seconds: Annotated[float, Field(gt=0)] = 120.0
    meta_phone_pause_seconds: Annotated[int, Field(ge=1)] = 3_600
    d360_webhook_token: SecretStr | None = None
    # --- WhatsApp-Web engine (wwebjs) ----------------------------------------------------------
    # Which driver talks to WhatsApp Web: neonize (whatsmeow, the real network) or the
    # sandbox network server (`bisnesgpt sandbox wweb serve`) for development and tests.
    wwebjs_driver: Literal["neonize", "sandbox"] = "neonize"
    wwebjs_sandbox_url: str = "http://127.0.0.1:3010"
    # neonize keeps its device keys in PostgreSQL, in this schema of DATABASE_URL.
    wwebjs_store_schema: Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_]{0,62}$")] = "whatsmeow"
    wwebjs_store_sslmode: Literal["disable", "require", "verify-ca", "verify-full"] = "disable"
    # Starting sessions: at most this many at once, this far apart.
    wwebjs_start_concurrency: Annotated[int, Field(ge=1, le=100)] = 3
    wwebjs_start_stagger_ms: Annotated[int, Field(ge=0)] = 1_000
    # Reconnect with exponential backoff from base to max (a session ready for
    # WWEBJS_STABLE_SECONDS starts again from base).
    wwebjs_reconnect_base_ms: Millis = 2_000
    wwebjs_reconnect_max_ms: Millis = 300_000
    wwebjs_stable_seconds: Annotated[float, Field(gt=0)] = 60
    # Circuit breaker: this many disconnects within the window -> status error "flapping",
    # no more tries until an operator starts the session again.
    wwebjs_breaker_disconnects: Annotated[int, Field(ge=1)] = 5
    wwebjs_breaker_window_seconds: Annotated[float, Field(gt=0)] = 300
    # Watchdog: a session stuck in initializing/authenticated this long is restarted.
    wwebjs_init_timeout_seconds: Annotated[float, Field(gt=0)] = 90
    # A QR nobody scans for this long stops the session (start it again for a new QR).
    wwebjs_qr_timeout_seconds: Annotated[float, Field(gt=0)] = 300
    # Session ownership leases (one process drives a session).
    wwebjs_lease_ttl_seconds: Annotated[float, Field(ge=2)] = 20
    wwebjs_lease_takeover_same_host: bool = True
    wwebjs_reconcile_interval_ms: Millis = 2_000
    # Sessions spread over every live wwebjs process (this host's WWEBJS_INSTANCES and any
    # other host's): each drives its capacity-weighted fair share, at most WWEBJS_MAX_SESSIONS
    # (0 = no limit); one above its share hands at most WWEBJS_HANDOFF_BATCH over per tick.
    wwebjs_instances: Annotated[int, Field(ge=1, le=64)] = 1
    wwebjs_max_sessions: Annotated[int, Field(ge=0)] = 0
    wwebjs_handoff_batch: Annotated[int, Field(ge=1, le=100)] = 2
    # Sending.
    wwebjs_send_timeout_seconds: Annotated[float, Field(gt=0)] = 30
    wwebjs_send_jitter_ms: Annotated[int, Field(ge=0)] = 250
    wwebjs_not_ready_retry_ms: Millis = 2_000
    wwebjs_not_ready_retry_max_ms: Millis = 60_000
    wwebjs_media_max_bytes: Annotated[int, Field(ge=1)] = 64 * 1024 * 1024
    wwebjs_media_timeout_seconds: Annotated[float, Field(gt=0)] = 30
    # Media URLs are fetched by our server: private/loopback/link-local addresses are refused
    # (like webhook destinations) unless this is true (local development, the sandbox).
    wwebjs_media_allow_private_urls: bool = False
    # Sending that does not get numbers banned (every WhatsApp-Web phone; 0 = no cap).
    # "typing…" before each text, for WWEBJS_TYPING_MS_PER_CHAR per character, at most WWEBJS_TYPING_MAX_MS.
    wwebjs_simulate_typing: bool = False
    wwebjs_typing_ms_per_char: Annotated[int, Field(ge=0)] = 40
    wwebjs_typing_max_ms: Annotated[int, Field(ge=0)] = 4_000
    # Messages a phone sends per UTC day, and chats it opens per day (first message to a number
    # that never wrote); over a cap a send waits for the next day ("wait") or fails ("fail",
    # DAILY_LIMIT_REACHED).
    wwebjs_daily_message_cap: Annotated[int, Field(ge=0)] = 0
    wwebjs_daily_new_chat_cap: Annotated[int, Field(ge=0)] = 0
    wwebjs_daily_cap_action: Literal["wait", "fail"] = "wait"
    # A newly paired number's caps grow over this many days: on day d, cap x d / days (at least 1).
    wwebjs_warmup_days: Annotated[int, Field(ge=0)] = 0
    # Before the first message to a number, ask WhatsApp whether it is on WhatsApp (answers kept
    # this long); a number that is not fails NOT_ON_WHATSAPP without a send.
    wwebjs_check_on_whatsapp: bool = False
    wwebjs_on_whatsapp_cache_seconds: Annotated[float, Field(ge=0)] = 86_400

    # --- media (inbound downloads, uploads, the tenant's media routes) -----------------------
    # Where media bytes live: the filesystem under DATA_DIR/media (nothing to configure), or
    # an S3-compatible bucket (AWS S3, MinIO, R2) when MEDIA_S3_BUCKET is set.
    media_s3_bucket: str | None = None
    media_s3_url: str | None = None  # endpoint URL (MinIO, R2, …); unset = AWS for the region
    media_s3_region: str = "us-east-1"
    media_s3_access_key_id: SecretStr | None = None
    media_s3_secret_access_key: SecretStr | None = None
    media_s3_prefix: str = ""  # key prefix inside the bucket (a shared bucket)
    media_max_bytes: Annotated[int, Field(ge=1)] = 100 * 1024 * 1024  # the Cloud API's document limit
    # Media objects older than this are deleted by the maintenance job (messages keep a
    # media_state of "expired"); 0 keeps media for ever.
    media_retention_days: Annotated[int, Field(ge=0)] = 30
    # Signed media URLs (no API key: for <img src> in a browser) last this long.
    media_url_ttl_seconds: Annotated[int, Field(ge=1, le=7 * 86_400)] = 3_600
    # Signs media URLs; empty = derived from ENCRYPTION_KEY.
    media_url_secret: SecretStr | None = None
    # The address tenants reach the API at (https://gw.example.com): signed media URLs in
    # events are absolute with it, paths without it.
    public_url: str | None = None
    # Downloads of inbound media (the media-downloads queue): tries, backoff and concurrency.
    media_download_attempts: Annotated[int, Field(ge=1, le=50)] = 8
    media_download_backoff_ms: Millis = 2_000
    media_download_concurrency: Annotated[int, Field(ge=1, le=200)] = 8
    # The live event stream (/api/v1/events/ws) reads new events this often (one poll per api process).
    event_stream_poll_ms: Annotated[int, Field(ge=20, le=10_000)] = 250
    # Open SSE / WebSocket streams re-check their API key this often (one query per pass for all
    # of them): a revoked key or a disabled company's stream ends within this many seconds.
    stream_auth_recheck_seconds: Annotated[float, Field(gt=0, le=5)] = 2.0

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
    # An API key that authenticated is not read again for this long per process (0, the
    # default: every request reads it). `bisnesgpt keys revoke` is honoured at once (pub/sub);
    # a key changed otherwise (revoked or expired in SQL, Redis unreachable) within this long.
    api_key_cache_seconds: Annotated[float, Field(ge=0, le=60)] = 0.0

    # --- logging ----------------------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    log_dir: Path = Path("logs")

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("meta_graph_version")
    @classmethod
    def _check_graph_version(cls, value: str) -> str:
        if not re.fullmatch(r"v\d+\.\d+", value):
            raise ValueError("must look like v23.0")
        return value

    @field_validator("meta_graph_url", "d360_base_url")
    @classmethod
    def _check_http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http(s):// URL")
        return value.rstrip("/")

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("postgres", "postgresql"):
            raise ValueError("must be a postgresql:// URL")
        if not parts.hostname and "host=" not in parts.query:
            raise ValueError("has no host")
        # A primary and its standbys (host1:port,host2:port): only a writable one is used.
        database_hosts(value)  # raises ValueError naming a malformed host:port
        return writable_target(value)

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if sentinel_target(value) is not None:  # raises ValueError when malformed
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ValueError("must be a redis://, rediss://, unix:// or redis+sentinel:// URL")
        if parts.scheme != "unix" and not parts.hostname:
            raise ValueError("has no host")
        try:
            parts.port  # noqa: B018
        except ValueError as exc:
            raise ValueError("has an invalid port") from exc
        return value

    @field_validator("redis_sentinels")
    @classmethod
    def _check_redis_sentinels(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        sentinel_target(sentinel_url([s.strip() for s in value.split(",") if s.strip()], "m"))
        return value

    @field_validator("encryption_key", "encryption_key_previous")
    @classmethod
    def _check_encryption_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or value.get_secret_value() == "":
            return None
        if not _HEX64.match(value.get_secret_value()):
            raise ValueError("must be 64 hex characters (a 32-byte AES-256 key)")
        return value

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

    @field_validator("wwebjs_sandbox_url")
    @classmethod
    def _check_sandbox_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http(s):// URL of the sandbox network server")
        return value.rstrip("/")

    # --- derived values ---------------------------------------------------------------------

    @property
    def effective_redis_url(self) -> str | None:
        """REDIS_URL wins; else REDIS_SENTINELS (a ``redis+sentinel://`` URL); else
        REDIS_HOST/PORT/PASSWORD; else None (embedded Valkey)."""
        if self.redis_url:
            return self.redis_url
        password = self.redis_password.get_secret_value() if self.redis_password is not None else ""
        if self.redis_sentinels:
            sentinel_password = (self.redis_sentinel_password.get_secret_value()
                                 if self.redis_sentinel_password is not None else None)
            sentinels = [s.strip() for s in self.redis_sentinels.split(",") if s.strip()]
            return sentinel_url(sentinels, self.redis_sentinel_master, db=self.redis_db, password=password or None,
                                sentinel_password=sentinel_password or None)
        if self.redis_host:
            auth = ":" + quote(password, safe="") + "@" if password else ""
            return f"redis://{auth}{self.redis_host}:{self.redis_port}/{self.redis_db}"
        return None

    def pool_max_for(self, role: Role) -> int:
        """DATABASE_POOL_<ROLE>_MAX: the most PostgreSQL connections a process of ``role`` opens."""
        return {
            "api": self.database_pool_api_max,
            "wwebjs": self.database_pool_wwebjs_max,
            "meta": self.database_pool_meta_max,
            "legacy": self.database_pool_legacy_max,
        }[role]

    def http_port_for(self, role: Role) -> int:
        """The port a process of ``role`` serves on (``legacy``: PORT); its instances share it."""
        return {"api": self.api_port, "wwebjs": self.wwebjs_port, "meta": self.meta_port, "legacy": self.port}[
            role
        ]

    def restart_delay_for(self, role: Role) -> int:
        """<ROLE>_RESTART_DELAY (ms): the first backoff of the orchestrator's restarts (legacy: the api's)."""
        return {"api": self.api_restart_delay, "wwebjs": self.wwebjs_restart_delay,
                "meta": self.meta_restart_delay, "legacy": self.api_restart_delay}[role]

    def min_uptime_for(self, role: Role) -> int:
        """<ROLE>_MIN_UPTIME (ms): ready this long, a child's restarts in a row start again from 0."""
        return {"api": self.api_min_uptime, "wwebjs": self.wwebjs_min_uptime,
                "meta": self.meta_min_uptime, "legacy": self.api_min_uptime}[role]

    def max_restarts_for(self, role: Role) -> int:
        """<ROLE>_MAX_RESTARTS: restarts in a row before the orchestrator gives the role up."""
        return {"api": self.api_max_restarts, "wwebjs": self.wwebjs_max_restarts,
                "meta": self.meta_max_restarts, "legacy": self.api_max_restarts}[role]

    def max_memory_for(self, role: Role) -> int:
        """<ROLE>_MAX_MEMORY in bytes (0: no limit; legacy is never restarted for its size)."""
        return {"api": self.api_max_memory, "wwebjs": self.wwebjs_max_memory,
                "meta": self.meta_max_memory, "legacy": 0}[role]

    def instances_of(self, role: Role) -> int:
        """How many processes of ``role`` this deployment runs (0 when disabled)."""
        if not self.role_enabled(role):
            return 0
        return {"api": self.api_instances, "wwebjs": self.wwebjs_instances, "meta": self.meta_instances,
                "legacy": 1}[role]

    def crashes_on_start(self, role: Role) -> bool:
        """Whether TEST_CRASH_ON_START names ``role`` (fault injection for tests only)."""
        return role in {part.strip() for part in self.test_crash_on_start.split(",") if part.strip()}

    def role_enabled(self, role: Role) -> bool:
        """ENABLE_WWEBJS / ENABLE_META for the engines; the api and legacy always run."""
        if role == "wwebjs":
            return self.enable_wwebjs
        if role == "meta":
            return self.enable_meta
        return True


_SECRET_FIELDS = ("key", "secret", "password", "token")


def _describe(error: ErrorDetails) -> str:
    loc = error.get("loc") or ("?",)
    field = str(loc[0])
    env_name = field.upper()
    given = error.get("input")
    secret = any(word in field for word in _SECRET_FIELDS)
    if field.endswith("_url") and isinstance(given, str):
        given = mask_url(given)
    shown = f"={given!r}" if isinstance(given, str | int | float) and not secret else ""
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    return f"invalid setting {env_name}{shown}: {message}"


def load_settings(**overrides: Any) -> Settings:
    """Build settings from env/.env (plus explicit overrides); raise ConfigError on bad input.

    The ConfigError message is one readable line naming the variable; entry points print it
    and exit with status 2.
    """
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(_describe(first)) from exc


def mask_url(url: str | None) -> str:
    """A URL safe to log: the password (if any) replaced by ``***``."""
    if not url:
        return "-"
    parts = urlsplit(url)
    if "sentinel_password=" in parts.query:
        parts = parts._replace(query=re.sub(r"sentinel_password=[^&]*", "sentinel_password=***", parts.query))
    if parts.password is None:
        return parts.geturl()
    netloc = parts.netloc.replace(":" + parts.password + "@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()

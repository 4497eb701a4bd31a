"""Settings of the message path: pacing, tenant webhooks, the pipeline, both engines, media."""

import re
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings

from bisnesgpt.config.types import Millis

# The highest per-phone send rate the settings and a phone's own rate limit accept (messages per
# second): far above any Cloud API tier, low enough to catch a typo of a few zeros.
MAX_PHONE_MESSAGES_PER_SECOND = 10_000

class EngineSettings(BaseSettings):
    """How messages are accepted, paced, sent by each engine and delivered to tenants."""

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
    meta_phone_messages_per_second: Annotated[float, Field(gt=0, le=MAX_PHONE_MESSAGES_PER_SECOND)] = 80
    meta_coexistence_messages_per_second: Annotated[float, Field(gt=0, le=MAX_PHONE_MESSAGES_PER_SECOND)] = 20
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
    # Group commit of send outcomes: the claims and ends (sent/failed, history, events) of up
    # to this many jobs share one transaction, flushed at most this many ms after its first.
    meta_write_batch_max: Annotated[int, Field(ge=1, le=1000)] = 64
    meta_write_batch_ms: Annotated[float, Field(ge=0, le=1000)] = 2.0
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

    @field_validator("meta_graph_version")
    @classmethod
    def _check_graph_version(cls, value: str) -> str:
        if not re.fullmatch(r"v\d+\.\d+", value):
            raise ValueError("must look like v23.0")
        return value

    @field_validator("meta_graph_url", "d360_base_url")
    @classmethod
    def _check_http_url(cls, value: str) -> str:
        return _base_url(value, "")

    @field_validator("wwebjs_sandbox_url")
    @classmethod
    def _check_sandbox_url(cls, value: str) -> str:
        return _base_url(value, " of the sandbox network server")


def _base_url(value: str, of_what: str) -> str:
    """``value`` without a trailing slash, if it is an http(s) URL with a host (else why not, naming ``of_what``)."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an http(s):// URL{of_what}")
    return value.rstrip("/")

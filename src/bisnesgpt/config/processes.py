"""Settings of the processes themselves: identity, ports, PostgreSQL, Redis, secrets, supervision."""

import re
from pathlib import Path
from typing import Annotated
from urllib.parse import quote, urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings

from bisnesgpt.config.types import MemorySize, Millis, Port, Role
from bisnesgpt.core.service_urls import database_hosts, sentinel_target, sentinel_url, writable_target

_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


def _sentinel_hosts(value: str) -> list[str]:
    """REDIS_SENTINELS as its list of host:port (comma-separated, blanks ignored)."""
    return [s.strip() for s in value.split(",") if s.strip()]


class ProcessSettings(BaseSettings):
    """Where a process runs, what it connects to, and how it is supervised."""

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
    # ADMISSION_MAX_IN_FLIGHT bounds the sends one process serves at once: the next is refused
    # at once, which keeps an admitted send's latency near that many service times at any load.
    # Off by default: it also refuses a client's legitimate burst past it (which then retries).
    # Overload is answered in bounded time instead of queueing for seconds. 0 turns each off.
    admission_pool_wait: Annotated[int, Field(ge=0)] = 250
    admission_max_loop_lag: Annotated[int, Field(ge=0)] = 500
    admission_max_in_flight: Annotated[int, Field(ge=0)] = 0

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
        sentinel_target(sentinel_url(_sentinel_hosts(value), "m"))
        return value

    @field_validator("encryption_key", "encryption_key_previous")
    @classmethod
    def _check_encryption_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or value.get_secret_value() == "":
            return None
        if not _HEX64.match(value.get_secret_value()):
            raise ValueError("must be 64 hex characters (a 32-byte AES-256 key)")
        return value

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
            return sentinel_url(_sentinel_hosts(self.redis_sentinels), self.redis_sentinel_master, db=self.redis_db,
                                password=password or None, sentinel_password=sentinel_password or None)
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

"""Resolve PostgreSQL and Redis for a process: the configured servers, or embedded ones.

With no ``DATABASE_URL`` an embedded PostgreSQL runs from ``$DATA_DIR/postgres``; with no
``REDIS_URL``/``REDIS_HOST`` an embedded Valkey from ``$DATA_DIR/redis``. A server already
running for that data dir is reused and left running; one started here is stopped by
``close()`` (or, if this process is killed, by the parent-death signal). A configured URL
that is the running embedded server of the data dir (what the orchestrator hands its
children) is said to be embedded too, not external.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from bisnesgpt.config import Settings, mask_url
from bisnesgpt.infra.embedded import EmbeddedServer, ServerHandle
from bisnesgpt.infra.embedded_postgres import EmbeddedPostgres
from bisnesgpt.infra.embedded_redis import EmbeddedRedis

log = logging.getLogger(__name__)

Mode = Literal["embedded", "external"]


@dataclass
class Services:
    """The servers a process uses, and the embedded ones it started (stopped by ``close``)."""

    database_url: str
    redis_url: str
    database_mode: Mode
    redis_mode: Mode
    postgres: ServerHandle | None = None
    redis: ServerHandle | None = None
    _closed: bool = field(default=False, repr=False)

    def close(self, timeout: float = 30.0) -> None:
        """Stop the embedded servers this process started (Redis first, then PostgreSQL)."""
        if self._closed:
            return
        self._closed = True
        for handle, sig in ((self.redis, signal.SIGTERM), (self.postgres, signal.SIGINT)):
            if handle is None or not handle.started_here or handle.process is None:
                continue
            process = handle.process
            if process.poll() is None:
                process.send_signal(sig)
                try:
                    process.wait(timeout)
                except Exception:
                    process.kill()
                    process.wait(5)
            log.info("stopped embedded %s (pid %d)", "Valkey" if handle is self.redis else "PostgreSQL",
                     handle.pid)


def embedded_postgres(settings: Settings) -> EmbeddedPostgres:
    """The embedded PostgreSQL of ``$DATA_DIR/postgres`` (not started)."""
    return EmbeddedPostgres(settings.data_dir / "postgres", port=settings.embedded_postgres_port)


def embedded_redis(settings: Settings) -> EmbeddedRedis:
    """The embedded Valkey of ``$DATA_DIR/redis`` (not started)."""
    return EmbeddedRedis(settings.data_dir / "redis", port=settings.embedded_redis_port)


def ensure_services(settings: Settings, *, detached: bool = False, need_redis: bool = True) -> Services:
    """Return URLs for PostgreSQL and Redis, starting embedded servers where none is configured.

    ``need_redis=False`` (e.g. ``migrate``) leaves Redis alone; ``redis_url`` is then "".
    """
    pg_handle: ServerHandle | None = None
    redis_handle: ServerHandle | None = None
    database_url = settings.database_url
    redis_url = settings.effective_redis_url if need_redis else ""
    if database_url is None or redis_url is None:
        with _services_lock(settings.data_dir):
            if database_url is None:
                pg_handle = embedded_postgres(settings).ensure(detached=detached)
                database_url = pg_handle.url
            if redis_url is None:
                redis_handle = embedded_redis(settings).ensure(detached=detached)
                redis_url = redis_handle.url
    services = Services(
        database_url=database_url,
        redis_url=redis_url,
        database_mode="embedded" if pg_handle else _mode_of(database_url, embedded_postgres(settings)),
        redis_mode="embedded" if redis_handle or not need_redis else _mode_of(redis_url, embedded_redis(settings)),
        postgres=pg_handle,
        redis=redis_handle,
    )
    log.info("PostgreSQL: %s (%s)", mask_url(services.database_url), services.database_mode)
    if need_redis:
        log.info("Redis: %s (%s)", mask_url(services.redis_url), services.redis_mode)
    return services


def _mode_of(url: str, embedded: EmbeddedServer) -> Mode:
    """``embedded`` when ``url`` is the running embedded server of the data dir (a child of
    ``bisnesgpt start`` is handed its URL), else ``external``."""
    return "embedded" if embedded.running_url() == url else "external"


class _services_lock:
    """An flock on ``$DATA_DIR/.services.lock``: two starters never race to init/start."""

    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = data_dir / ".services.lock"
        self._fd: int | None = None

    def __enter__(self) -> None:
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


@dataclass(frozen=True)
class Located:
    """Where PostgreSQL/Redis are, found without starting anything (None: not running)."""

    database_url: str | None
    redis_url: str | None
    notes: tuple[str, ...] = ()


def locate_services(settings: Settings) -> Located:
    """The configured URLs, or those of the embedded servers *if they are running* (for
    read-only tools like ``bisnesgpt status`` and ``doctor``, which must not start servers)."""
    notes: list[str] = []

    def where(configured: str | None, embedded: EmbeddedServer) -> str | None:
        if configured is not None:
            return configured
        url = embedded.running_url()
        if url is None:
            notes.append(f"embedded {embedded.label} in {embedded.data_dir} is not running")
        return url

    database_url = where(settings.database_url, embedded_postgres(settings))
    redis_url = where(settings.effective_redis_url, embedded_redis(settings))
    return Located(database_url, redis_url, tuple(notes))

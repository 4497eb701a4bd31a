"""Running one process role: pools after start, components, HTTP, phased shutdown.

Order of life (modelled on gunicorn's worker and uvicorn's server):

1. logging; resolve PostgreSQL/Redis (embedded only when run standalone without URLs);
2. inside the event loop: open the DB pool and Redis clients (never before), build the
   FastAPI app from the role's components, start the components, start heartbeats, serve;
3. SIGTERM/SIGINT only set an event; the main coroutine then shuts down in phases within
   ``SHUTDOWN_TIMEOUT``: report ``draining`` (503), drain components (stop taking work,
   finish in-flight jobs), stop HTTP, stop components, final heartbeat, close pools.
   A second signal skips the waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Generator, Sequence

import uvicorn
from fastapi import FastAPI

from bisnesgpt import __version__
from bisnesgpt.api.problems import install_problem_handlers
from bisnesgpt.config import Role, Settings
from bisnesgpt.coordination.channels import PROCESS_STATUS, publish
from bisnesgpt.db.pool import Database
from bisnesgpt.health import metrics
from bisnesgpt.health.events import EventRecorder
from bisnesgpt.health.monitor import HealthMonitor
from bisnesgpt.health.routes import health_router
from bisnesgpt.infra.redis import redis_client
from bisnesgpt.messaging.queues import QueueProducer
from bisnesgpt.processes.component import Component
from bisnesgpt.processes.context import ProcessContext, process_name_for

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: our loop decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening socket with SO_REUSEPORT, so N instances of a role share one port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def build_app(ctx: ProcessContext, components: Sequence[Component], monitor: HealthMonitor) -> FastAPI:
    app = FastAPI(
        title=f"bisnesgpt {ctx.role}",
        version=__version__,
        description="Self-hosted, multi-tenant WhatsApp messaging gateway.",
    )
    app.state.ctx = ctx
    app.state.components = components
    app.state.monitor = monitor
    install_problem_handlers(app)
    app.include_router(health_router(monitor))
    seen: set[int] = set()
    for component in components:
        for router in component.routers():
            if id(router) not in seen:  # legacy may list a component's router twice
                seen.add(id(router))
                app.include_router(router)
    return app


class SupervisorLink:
    """Pings the orchestrator over an inherited pipe once a second from the event loop.

    A blocked loop stops the pings, which is how the orchestrator tells "hung" from "busy".
    """

    def __init__(self, fd: int, on_lost: asyncio.Event) -> None:
        self.fd = fd
        self.on_lost = on_lost
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        os.set_blocking(self.fd, False)
        self._task = asyncio.create_task(self._run(), name="supervisor-link")

    def send(self, message: dict[str, object]) -> None:
        try:
            os.write(self.fd, (json.dumps(message) + "\n").encode())
        except BlockingIOError:
            pass  # the supervisor is slow to read; the next ping will do
        except OSError:
            self.on_lost.set()  # the orchestrator is gone: shut down

    async def _run(self) -> None:
        while True:
            self.send({"type": "heartbeat", "ts": time.time()})
            await asyncio.sleep(1.0)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


async def serve_role(
    role: Role,
    settings: Settings,
    *,
    database_url: str,
    redis_url: str,
    components: Sequence[Component],
) -> int:
    """Run one role until a signal (or the server failing); returns the exit status."""
    process_name = process_name_for(role, settings.instance_id)
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    stop_now = asyncio.Event()
    received: list[str] = []

    def _on_signal(sig: signal.Signals) -> None:
        received.append(sig.name)
        (stop_now if stop_requested.is_set() else stop_requested).set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _on_signal, sig)

    db = Database(database_url, min_size=0, max_size=settings.pool_max_for(role),
                  application_name=f"bisnesgpt-{process_name}",
                  connect_timeout=settings.database_connect_timeout)
    await db.open()
    redis = redis_client(redis_url, name=f"bisnesgpt:{process_name}")
    queues = QueueProducer(redis_url)
    ctx = ProcessContext(
        settings=settings, role=role, process_name=process_name, database_url=database_url,
        redis_url=redis_url, db=db, redis=redis, queues=queues, events=EventRecorder(db, process_name),
    )
    monitor = HealthMonitor(ctx, components)
    app = build_app(ctx, components, monitor)
    port = settings.http_port_for(role)
    sock = bind_socket(settings.host, port)
    server = _Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="off",
                                    timeout_keep_alive=30, timeout_graceful_shutdown=5))
    link = (SupervisorLink(settings.bisnesgpt_supervisor_fd, stop_requested)
            if settings.bisnesgpt_supervisor_fd is not None else None)

    started: list[Component] = []
    exit_status = 0
    try:
        for component in components:
            await component.start(ctx)
            started.append(component)
        monitor.start()
        if link is not None:
            link.start()
        server_task = asyncio.create_task(server.serve(sockets=[sock]), name="http")
        await ctx.events.record("start", {"pid": ctx.pid, "port": port, "version": __version__})
        while not server.started and not server_task.done():  # noqa: ASYNC110 - uvicorn only has a flag
            await asyncio.sleep(0.01)
        if server.started:
            metrics.PROCESS_UP.labels(role).set(1)
            log.info("%s serving on %s:%d (pid %d)", process_name, settings.host, port, ctx.pid)
            await ctx.events.record("ready", {"pid": ctx.pid, "port": port})
            await publish(redis, PROCESS_STATUS, {"processName": process_name, "status": "ready", "pid": ctx.pid})
            if link is not None:
                link.send({"type": "status_update", "status": "ready", "pid": ctx.pid})

        waiter = asyncio.create_task(stop_requested.wait())
        await asyncio.wait({waiter, server_task}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if server_task.done() and not stop_requested.is_set():
            exit_status = 1
            log.error("HTTP server stopped unexpectedly: %r", server_task.exception())
    finally:
        await _shutdown(ctx, settings, started, server, monitor, link, stop_now, received)
        sock.close()
    return exit_status


async def _shutdown(
    ctx: ProcessContext,
    settings: Settings,
    started: Sequence[Component],
    server: _Server,
    monitor: HealthMonitor,
    link: SupervisorLink | None,
    stop_now: asyncio.Event,
    received: Sequence[str],
) -> None:
    deadline = time.monotonic() + settings.shutdown_timeout
    ctx.draining.set()
    metrics.PROCESS_UP.labels(ctx.role).set(0)
    log.info("%s shutting down (%s); draining up to %.1fs", ctx.process_name,
             ",".join(received) or "server stopped", settings.shutdown_timeout)
    await publish(ctx.redis, PROCESS_STATUS, {"processName": ctx.process_name, "status": "draining", "pid": ctx.pid})

    async def _drain_all() -> None:
        await asyncio.gather(*(c.drain(max(0.1, deadline - time.monotonic())) for c in started),
                             return_exceptions=True)

    drain = asyncio.create_task(_drain_all())
    now = asyncio.create_task(stop_now.wait())
    await asyncio.wait({drain, now}, timeout=max(0.1, deadline - time.monotonic()),
                       return_when=asyncio.FIRST_COMPLETED)
    now.cancel()
    if not drain.done():
        log.warning("drain did not finish in time; stopping anyway")
        drain.cancel()
    server.should_exit = True
    if stop_now.is_set():
        server.force_exit = True
    for component in reversed(started):
        try:
            await asyncio.wait_for(component.stop(), 5)
        except Exception as exc:
            log.warning("stopping %s: %r", component.name, exc)
    await ctx.events.record("stop", {"pid": ctx.pid, "signals": list(received)})
    await monitor.stop("stopped")
    if link is not None:
        link.stop()
    await ctx.queues.close()
    with contextlib.suppress(Exception):
        await ctx.redis.aclose()
    await ctx.db.close()


def run_role(role: Role, settings: Settings) -> int:
    """Entry point of ``bisnesgpt run <role>``: one process, this role, until signalled."""
    from bisnesgpt.core.logging import setup_logging
    from bisnesgpt.infra.secrets import resolve_encryption_key
    from bisnesgpt.infra.services import ensure_services
    from bisnesgpt.processes.roles import build_components

    process_name = process_name_for(role, settings.instance_id)
    setup_logging(process_name, settings.log_level, settings.log_format)
    settings = resolve_encryption_key(settings)
    services = ensure_services(settings)
    try:
        components = build_components(role, settings)
        coroutine = serve_role(role, settings, database_url=services.database_url,
                               redis_url=services.redis_url, components=components)
        try:
            import uvloop

            return int(uvloop.run(coroutine))
        except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
            return asyncio.run(coroutine)
    finally:
        services.close()
        sys.stdout.flush()

"""Running one process role: pools after start, components, HTTP, phased shutdown.

Order of life (modelled on gunicorn's worker and uvicorn's server):

1. logging; resolve PostgreSQL/Redis (embedded only when run standalone without URLs);
2. inside the event loop: open the DB pool and Redis clients (never before), record the
   start attempt and claim this instance's ``process_health`` row (``starting``: from now
   on a crash of any kind leaves a trace), heartbeat, build the FastAPI app from the
   role's components, start the components, serve; then ``ready`` (at once in the row);
3. SIGTERM/SIGINT only set an event; the main coroutine then shuts down in phases within
   ``SHUTDOWN_TIMEOUT``: report ``draining`` (503), drain components (stop taking work,
   finish in-flight jobs), stop HTTP, stop components, final heartbeat, close pools.
   A second signal skips the waiting.

A process that dies of an exception writes ``crashed`` as its last heartbeat; unless an
orchestrator supervises it (which records the exit itself) it also ends its start attempt
as crashed and records the ``crash`` event, so a crash loop under PM2 or systemd is seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import socket
import sys
import time
from collections.abc import Callable, Generator, Sequence

import uvicorn
from fastapi import FastAPI

from bisnesgpt import __version__
from bisnesgpt.api.audit import AuditTrail
from bisnesgpt.api.edge import HttpEdge
from bisnesgpt.api.problems import install_problem_handlers
from bisnesgpt.config import Role, Settings
from bisnesgpt.coordination.channels import PROCESS_STATUS, deployment_namespace, publish
from bisnesgpt.coordination.coordinator import Coordinator
from bisnesgpt.coordination.leases import holder_id
from bisnesgpt.core.errors import DatabaseUnavailable, MigrationError, SchemaNotMigrated
from bisnesgpt.core.jsontypes import JsonObject, JsonValue
from bisnesgpt.db import migrate as migrations
from bisnesgpt.db.pool import Database
from bisnesgpt.health import metrics
from bisnesgpt.health.events import EventRecorder
from bisnesgpt.health.monitor import HealthMonitor
from bisnesgpt.health.routes import health_router
from bisnesgpt.infra.redis import redis_client
from bisnesgpt.messaging.queues import QueueProducer
from bisnesgpt.orchestrator import protocol
from bisnesgpt.processes.component import Component, reporters
from bisnesgpt.processes.context import Peer, ProcessContext, process_name_for
from bisnesgpt.processes.link import SupervisorLink
from bisnesgpt.processes.roles import build_components

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


def listening_sockets(role: Role, settings: Settings) -> list[socket.socket]:
    """The role's port; for legacy with LEGACY_SERVE_API_PORT also API_PORT (a rollback keeps the API's port)."""
    ports = [settings.http_port_for(role)]
    if role == "legacy" and settings.legacy_serve_api_port and settings.api_port not in ports:
        ports.append(settings.api_port)
    sockets: list[socket.socket] = []
    try:
        for port in ports:
            sockets.append(bind_socket(settings.host, port))
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def build_app(ctx: ProcessContext, components: Sequence[Component], monitor: HealthMonitor) -> FastAPI:
    """The role's HTTP app: health routes, then every component's routers."""
    app = FastAPI(
        title=f"bisnesgpt {ctx.role}",
        version=__version__,
        description="Self-hosted, multi-tenant WhatsApp messaging gateway.",
        docs_url=None if any(component.serves_docs for component in components) else "/docs",
        # A redirect to the slashless path would be built from the Host header; the edge serves it in place.
        redirect_slashes=False,
    )
    # The edge is outermost (added last): the audit trail sees the client address it judged.
    app.add_middleware(AuditTrail, db=ctx.db)
    app.add_middleware(HttpEdge, settings=ctx.settings)
    # Outside the edge: a gate that refuses (admission) costs the request nothing more.
    for component in {id(c): c for c in components}.values():
        for middleware in component.asgi_middleware():
            app.add_middleware(middleware.cls, *middleware.args, **middleware.kwargs)
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


class StartupCrash(RuntimeError):
    """Raised by TEST_CRASH_ON_START: a role that fails at start-up, for supervisor tests."""

    @classmethod
    def maybe_raise(cls, settings: Settings, role: Role) -> None:
        """Raise if TEST_CRASH_ON_START names ``role``."""
        if settings.crashes_on_start(role):
            raise cls(f"TEST_CRASH_ON_START={settings.test_crash_on_start!r}: {role} crashing at start-up")


class StopRequests:
    """Why this process stops: the first signal asks for a graceful stop, a second one means
    "now"; a stop asked for otherwise (orchestrator message, process:shutdown) does not count
    as a signal."""

    def __init__(self) -> None:
        self.requested = asyncio.Event()
        self.now = asyncio.Event()
        self.received: list[str] = []  # signal names and stop requests, in order
        self._signals: list[str] = []

    def install(self) -> None:
        """Handle SIGTERM and SIGINT in the running loop."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.on_signal, sig)

    def on_signal(self, sig: signal.Signals) -> None:
        """A stop signal arrived."""
        (self.now if self._signals else self.requested).set()
        self._signals.append(sig.name)
        self.received.append(sig.name)

    def request(self, reason: str) -> None:
        """Stop gracefully for ``reason`` (said once)."""
        if not self.requested.is_set():
            self.received.append(reason)
        self.requested.set()


async def serve_role(role: Role, settings: Settings, *, database_url: str, redis_url: str) -> int:
    """Run one role until a signal (or the server failing); returns the exit status."""
    process_name = process_name_for(role, settings.instance_id)
    stops = StopRequests()
    stops.install()
    peers: dict[str, Peer] = {}
    # Ping from the start, so a start-up that hangs is caught like any other hang.
    link = _start_link(settings, process_name, peers, stops.request)
    ctx = await _open_context(role, settings, database_url=database_url, redis_url=redis_url, peers=peers,
                              supervised=link is not None, on_shutdown=stops.request)
    components = build_components(role, ctx)
    monitor = HealthMonitor(ctx, reporters(components))
    await monitor.instance.claim()
    monitor.start()
    try:
        StartupCrash.maybe_raise(settings, role)
        app = build_app(ctx, components, monitor)
        sockets = listening_sockets(role, settings)
    except Exception as exc:
        await _crashed(ctx, monitor, link, _describe(exc))
        await _close_context(ctx)
        raise
    # X-Forwarded-* are judged by the edge (FORWARDED_ALLOW_IPS), not by uvicorn's default trust of loopback.
    server = _Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="off", proxy_headers=False,
                                    timeout_keep_alive=30, timeout_graceful_shutdown=5))
    started: list[Component] = []
    server_task: asyncio.Task[None] | None = None
    failure: str | None = None
    try:
        ctx.coordinator.start()
        for component in components:
            await component.start()
            started.append(component)
        # What start-up built lives as long as the process: out of the collector's way, so a full
        # collection under load walks only what requests allocate.
        gc.collect()
        gc.freeze()
        server_task = asyncio.create_task(server.serve(sockets=sockets), name="http")
        failure = await _serve_until_stopped(ctx, monitor, link, server, server_task, sockets, stops)
    except Exception as exc:
        failure = _describe(exc)
        raise
    finally:
        await _shutdown(ctx, settings, started, server, server_task, link, stops.now, stops.received)
        if failure is not None:
            await _crashed(ctx, monitor, link, failure)
        else:
            await monitor.stop("stopped")
        await _announce(ctx, link, "stopped")
        if link is not None:
            link.stop()
        await _close_context(ctx)
        for sock in sockets:
            sock.close()
    return 0 if failure is None else 1


async def _serve_until_stopped(ctx: ProcessContext, monitor: HealthMonitor, link: SupervisorLink | None,
                               server: _Server, server_task: asyncio.Task[None], sockets: Sequence[socket.socket],
                               stops: StopRequests) -> str | None:
    """Mark the process ready once HTTP serves, then wait for a stop; why it failed, if the server died."""
    ports = [sock.getsockname()[1] for sock in sockets]
    await ctx.events.record("start", {"pid": ctx.pid, "port": ports[0], "version": __version__})
    while not server.started and not server_task.done():  # noqa: ASYNC110 - uvicorn only has a flag
        await asyncio.sleep(0.01)
    if server.started:
        await _mark_ready(ctx, monitor, link, ports)
    waiter = asyncio.create_task(stops.requested.wait())
    await asyncio.wait({waiter, server_task}, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if server_task.done() and not stops.requested.is_set():
        failure = f"HTTP server stopped unexpectedly: {server_task.exception()!r}"
        log.error("%s", failure)
        return failure
    return None


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


async def _crashed(ctx: ProcessContext, monitor: HealthMonitor, link: SupervisorLink | None, error: str) -> None:
    """The last word of a process dying of ``error``: its row says crashed; without an
    orchestrator (which records the exit code itself) its start attempt and a crash event too."""
    await monitor.stop("crashed")
    if link is None:
        await monitor.instance.crashed(error, uptime_s=ctx.uptime)


def _start_link(settings: Settings, process_name: str, peers: dict[str, Peer],
                request_stop: Callable[[str], None]) -> SupervisorLink | None:
    if settings.bisnesgpt_supervisor_fd is None:
        return None
    link = SupervisorLink(
        settings.bisnesgpt_supervisor_fd, interval=protocol.ping_interval(settings.max_heartbeat_age),
        on_lost=lambda: request_stop("orchestrator-lost"), on_shutdown=request_stop,
        on_status=lambda message: _remember_peer(peers, message, process_name),
    )
    link.start()
    return link


async def _open_context(role: Role, settings: Settings, *, database_url: str, redis_url: str,
                        peers: dict[str, Peer], supervised: bool,
                        on_shutdown: Callable[[str], None]) -> ProcessContext:
    """Pools and clients, opened now that the process runs (never at import)."""
    process_name = process_name_for(role, settings.instance_id)
    serves_requests = role == "api" and settings.admission_pool_wait > 0
    db = Database(database_url, min_size=0, max_size=settings.pool_max_for(role),
                  application_name=f"bisnesgpt-{process_name}",
                  connect_timeout=settings.database_connect_timeout,
                  pool_wait=settings.admission_pool_wait / 1000 if serves_requests else None)
    await db.open()
    try:
        await _require_migrated(db)
    except SchemaNotMigrated:
        await db.close()
        raise
    host = socket.gethostname()
    namespace = deployment_namespace(settings.redis_namespace, database_url, redis_url)
    return ProcessContext(
        settings=settings, role=role, process_name=process_name, database_url=database_url,
        redis_url=redis_url, db=db, redis=redis_client(redis_url, name=f"bisnesgpt:{process_name}"),
        queues=QueueProducer(redis_url), events=EventRecorder(db, process_name),
        coordinator=Coordinator(redis_url, namespace=namespace, process_name=process_name, role=role, host=host,
                                peers=peers, on_shutdown=on_shutdown),
        holder=holder_id(process_name), namespace=namespace, host=host, peers=peers, supervised=supervised,
    )


async def _require_migrated(db: Database) -> None:
    """Refuse to run on a database the migrations have not reached (PM2 does not migrate),
    with one line instead of every component failing on missing tables. PostgreSQL being
    down at start is survived like any later outage: the check is skipped then."""
    try:
        async with db.connection() as conn:
            report = await migrations.pending(conn)
    except DatabaseUnavailable as exc:
        log.warning("schema not checked (%s); continuing", exc.detail)
        return
    except MigrationError as exc:
        raise SchemaNotMigrated(exc.detail) from exc
    if report.pending:
        names = ", ".join(m.filename for m in report.pending)
        raise SchemaNotMigrated(f"the database is not migrated ({len(report.pending)} pending: {names}): "
                                "run `bisnesgpt migrate` first (`bisnesgpt start` migrates; PM2 does not)")


async def _mark_ready(ctx: ProcessContext, monitor: HealthMonitor, link: SupervisorLink | None,
                      ports: Sequence[int]) -> None:
    ctx.ready.set()
    monitor.beat_now()  # the row says healthy now, not an interval later
    metrics.PROCESS_UP.labels(ctx.role).set(1)
    log.info("%s serving on %s:%s (pid %d)", ctx.process_name, ctx.settings.host,
             ",".join(str(port) for port in ports), ctx.pid)
    await monitor.instance.ready()
    await ctx.events.record("ready", {"pid": ctx.pid, "port": ports[0], "ports": list(ports)})
    await _announce(ctx, link, "ready", port=ports[0])


def _remember_peer(peers: dict[str, Peer], message: JsonObject, me: str) -> None:
    """Note a sibling's status relayed by the orchestrator."""
    name = message.get("processName")
    if isinstance(name, str) and name != me:
        status, pid = _text(message.get("status")), _number(message.get("pid"))
        entry = peers.setdefault(name, {})
        entry.update({"status": status, "pid": pid, "role": _text(message.get("role"))})
        entry["supervisor"] = {"status": status, "pid": pid, "seenAt": time.time()}


def _text(value: JsonValue) -> str | None:
    return value if isinstance(value, str) else None


def _number(value: JsonValue) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


async def _announce(ctx: ProcessContext, link: SupervisorLink | None, status: str, *,
                    port: int | None = None) -> None:
    """Tell the orchestrator (which relays it to the siblings) and the process:status channel."""
    payload: protocol.StatusUpdate = {"processName": ctx.process_name, "role": ctx.role, "status": status,
                                      "pid": ctx.pid, "host": ctx.host, "ts": time.time()}
    if port is not None:
        payload["port"] = port
    if link is not None:
        link.send(protocol.status_message(payload))
    await publish(ctx.redis, PROCESS_STATUS, dict(payload), namespace=ctx.namespace)


async def _shutdown(
    ctx: ProcessContext,
    settings: Settings,
    started: Sequence[Component],
    server: _Server,
    server_task: asyncio.Task[None] | None,
    link: SupervisorLink | None,
    stop_now: asyncio.Event,
    received: Sequence[str],
) -> None:
    began = time.monotonic()
    deadline = began + settings.shutdown_timeout
    ctx.draining.set()
    metrics.PROCESS_UP.labels(ctx.role).set(0)
    log.info("%s shutting down (%s); draining up to %.1fs", ctx.process_name,
             ",".join(received) or "server stopped", settings.shutdown_timeout)
    await _announce(ctx, link, "draining")

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
    if server_task is not None and not server_task.done():
        # Let in-flight HTTP requests finish (they may still use the pools closed below).
        done, _ = await asyncio.wait({server_task}, timeout=max(1.0, deadline - time.monotonic()))
        if not done:
            server.force_exit = True
            server_task.cancel()
    for component in reversed(started):
        try:
            await asyncio.wait_for(component.stop(), 5)
        except Exception as exc:
            log.warning("stopping %s: %r", component.name, exc)
    await ctx.events.record("stop", {"pid": ctx.pid, "signals": list(received),
                                     "drainSeconds": round(time.monotonic() - began, 3)})


async def _close_context(ctx: ProcessContext) -> None:
    """Close the coordinator, the producer and the pools (the last thing a process does)."""
    await ctx.coordinator.stop()
    await ctx.queues.close()
    with contextlib.suppress(Exception):
        await ctx.redis.aclose()
    await ctx.db.close()


def run_role(role: Role, settings: Settings) -> int:
    """Entry point of ``bisnesgpt run <role>``: one process, this role, until signalled."""
    from bisnesgpt.core.logging import setup_logging
    from bisnesgpt.infra.secrets import resolve_encryption_key
    from bisnesgpt.infra.services import ensure_services

    process_name = process_name_for(role, settings.instance_id)
    setup_logging(process_name, settings.log_level, settings.log_format)
    settings = resolve_encryption_key(settings)
    services = ensure_services(settings)
    try:
        coroutine = serve_role(role, settings, database_url=services.database_url, redis_url=services.redis_url)
        try:
            import uvloop

            return int(uvloop.run(coroutine))
        except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
            return asyncio.run(coroutine)
    finally:
        services.close()
        sys.stdout.flush()

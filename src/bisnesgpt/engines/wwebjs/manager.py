"""The session manager: which sessions run here, started gently, owned exclusively, commanded.

Every reconcile tick (``WWEBJS_RECONCILE_INTERVAL_MS``, or at once when the API publishes a
command on ``process:message``):

1. read the ``wwebjs`` phones from the database (not a hard-coded list) with what the
   operator wants for each (running/stopped, breaker tripped);
2. keep its ``wwebjs_members`` row alive and compute its fair share of the sessions from
   every live process's row (``balance``); take or renew the lease of every session it
   drives or has a command for, and claim unowned ones while below its share — a session
   whose lease another live process holds is left alone (this process is *standby* for it);
   above its share, hand a few sessions over (close, release, wake the others);
3. close sessions whose lease was lost or that are no longer wanted, release their leases;
4. run pending operator commands (start/stop/restart/logout/pairing code) for sessions it
   owns, one at a time per session;
5. queue the wanted, owned, not-running sessions for the starter, which starts at most
   ``WWEBJS_START_CONCURRENCY`` at a time (counting those still initializing), spaced by
   ``WWEBJS_START_STAGGER_MS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Literal, TypedDict

import asyncpg
import redis.asyncio as aioredis

from bisnesgpt.config import Settings
from bisnesgpt.coordination.channels import PROCESS_MESSAGE
from bisnesgpt.coordination.coordinator import Subscriptions
from bisnesgpt.core.errors import BisnesgptError, LeaseLost
from bisnesgpt.db.pool import Database
from bisnesgpt.engines.wwebjs import store
from bisnesgpt.engines.wwebjs.commands import SessionCommands
from bisnesgpt.engines.wwebjs.driver import SessionKey, WebDriver
from bisnesgpt.engines.wwebjs.driver_events import DeliveryAck, InboundMessage, Notification
from bisnesgpt.engines.wwebjs.fleet import SESSION_COMMAND_MESSAGE, SessionFleet
from bisnesgpt.engines.wwebjs.leases import SessionLeases
from bisnesgpt.engines.wwebjs.session import ManagedSession
from bisnesgpt.engines.wwebjs.session_services import SessionConfig, SessionServices
from bisnesgpt.engines.wwebjs.status import SessionStatus
from bisnesgpt.health.events import EventRecorder
from bisnesgpt.messaging.store import MessageRecord

log = logging.getLogger(__name__)

STARTING_STATUSES: frozenset[SessionStatus] = frozenset({"pending", "initializing"})

ReadinessState = Literal["ready", "other_owner", "not_ready", "not_running"]


@dataclass(frozen=True)
class Readiness:
    """Can this process send on a session now, and if not, why."""

    state: ReadinessState
    session: ManagedSession | None = None
    detail: str = ""


class ManagerSummary(TypedDict):
    """What ``/health`` shows of the sessions here (``wwebjs_sessions`` check data)."""

    holder: str
    driver: str
    owned: int
    standby: int
    standbyHolders: list[str]
    statuses: dict[str, int]
    mode: Literal["standby", "active"]
    share: int | None  # the sessions this process should drive (its fair share), once computed
    members: int  # live wwebjs processes sharing the sessions
    capacity: int | None  # WWEBJS_MAX_SESSIONS (None: no limit)




class SessionManager(SessionCommands):
    """The sessions of this process: which it drives (by lease), starting them, and operator commands."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        redis: aioredis.Redis,
        subscriptions: Subscriptions,
        driver: WebDriver,
        auth: store.AuthStore,
        events: EventRecorder,
        *,
        process_name: str,
        holder: str,
        pid: int,
        namespace: str,
        on_inbound: Callable[[SessionKey, InboundMessage], Awaitable[bool]],
        on_ack: Callable[[SessionKey, DeliveryAck], Awaitable[bool]],
        on_notification: Callable[[SessionKey, Notification], Awaitable[bool]] | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.driver = driver
        self.holder = holder
        self.fleet = SessionFleet(settings, db, redis, holder=holder, process_name=process_name, namespace=namespace)
        self.leases = SessionLeases(db, self.holder, settings.wwebjs_lease_ttl_seconds,
                                    takeover_same_host=settings.wwebjs_lease_takeover_same_host)
        self.services = SessionServices(db=db, redis=redis, driver=driver, auth=auth, events=events,
                                        process_name=process_name, holder=self.holder, pid=pid,
                                        namespace=namespace,
                                        on_inbound=on_inbound, on_ack=on_ack, on_ready=self._session_ready,
                                        on_notification=on_notification, fence=self._fence,
                                        on_lease_lost=self.lease_lost)
        # Called with the key of each session that becomes ready (the send worker wakes its jobs).
        self.ready_listeners: list[Callable[[SessionKey], None]] = []
        self.config = SessionConfig.from_settings(settings)
        self.sessions: dict[SessionKey, ManagedSession] = {}
        self.wanted: set[SessionKey] = set()
        self._command_tasks: dict[SessionKey, asyncio.Task[None]] = {}
        self._start_queue: list[SessionKey] = []
        self._tick = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self.started_at = time.time()
        self.last_tick_ok: float | None = None
        self.last_error: str | None = None
        self.was_standby = False
        subscriptions.on(PROCESS_MESSAGE, self._on_process_message)

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the driver and begin the reconcile loop and the starter."""
        self.started_at = time.time()
        await self.driver.open()
        self._tasks = [
            asyncio.create_task(self._loop(), name="wwebjs-reconcile"),
            asyncio.create_task(self._starter(), name="wwebjs-starter"),
        ]
        log.info("session manager started as %s (driver %s)", self.holder, self.driver.name)

    async def stop(self) -> None:
        """Hand every session over: disconnect (credentials stay), release the leases, leave the
        membership and wake the other wwebjs processes, which take the sessions at once."""
        self._stopping = True
        self.fleet.draining = True
        tasks = [*self._tasks, *self._command_tasks.values()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=10)
        closing = [s.close(final_status=("disconnected", {"reason": "wwebjs process stopped"}))
                   for s in self.sessions.values()]
        await asyncio.gather(*closing, return_exceptions=True)
        released = bool(self.sessions) or bool(self.leases.held_names())
        await self.leases.release([k.lease_name for k in self.sessions])
        await self.leases.release(self.leases.held_names())
        self.sessions.clear()
        await self.fleet.leave()
        if released:
            await self.fleet.wake_peers("drained")
        await self.driver.close()

    def poke(self) -> None:
        """Reconcile now instead of at the next interval."""
        self._tick.set()

    # --- what the worker and /health ask ------------------------------------------------------

    def readiness(self, key: SessionKey) -> Readiness:
        """Whether a send on ``key`` can go out here now (its session ready, its lease held), or why not."""
        session = self.sessions.get(key)
        if session is not None and session.running and session.is_ready() and self.leases.held(key.lease_name):
            return Readiness("ready", session)
        other = self.leases.others.get(key.lease_name)
        if other is not None:
            return Readiness("other_owner", detail=f"session driven by {other}")
        if session is not None and session.running:
            return Readiness("not_ready", session, f"session status is {session.status}")
        return Readiness("not_running", detail="session not running here")

    async def _fence(self, conn: asyncpg.Connection, key: SessionKey) -> None:
        await self.leases.fence(conn, key.lease_name)

    async def fence_send(self, key: SessionKey) -> None:
        """Right before a send goes to the driver: LeaseLost unless this process's tenure of the
        session's lease is still the live one (its own clock and the lease row's epoch)."""
        async with self.db.transaction() as conn:
            await self.leases.fence(conn, key.lease_name)

    async def fence_outcome(self, conn: asyncpg.Connection, message: MessageRecord) -> None:
        """Inside the transaction recording a send's failure: LeaseLost (and the session let go)
        unless this process still owns the message's session; its new owner decides then."""
        key = SessionKey(message.company_id, message.phone_index)
        try:
            await self.leases.fence(conn, key.lease_name)
        except LeaseLost:
            self.lease_lost(key)
            raise

    def lease_lost(self, key: SessionKey) -> None:
        """A fence failed: act on the lease no more; the next round stops the session's driver."""
        self.leases.forget([key.lease_name])
        self.poke()

    def _session_ready(self, key: SessionKey) -> None:
        for listener in self.ready_listeners:
            listener(key)

    def owned(self) -> list[SessionKey]:
        """The sessions this process drives and holds the lease of."""
        return [k for k in self.sessions if self.leases.held(k.lease_name)]

    def standby(self) -> dict[str, str]:
        """Wanted sessions another process drives: name -> holder."""
        names = {k.lease_name for k in self.wanted}
        return {name: holder for name, holder in self.leases.others.items() if name in names}

    def ready_count(self) -> int:
        """Sessions ready to send."""
        return sum(1 for s in self.sessions.values() if s.is_ready())

    def summary(self) -> ManagerSummary:
        """Owned and standby counts, sessions by status, and whether this process is standby only."""
        statuses: dict[str, int] = {}
        for session in self.sessions.values():
            statuses[session.status] = statuses.get(session.status, 0) + 1
        standby = self.standby()
        return ManagerSummary(holder=self.holder, driver=self.driver.name, owned=len(self.owned()),
                              standby=len(standby), standbyHolders=sorted(set(standby.values())), statuses=statuses,
                              mode="standby" if standby and not self.sessions else "active",
                              share=self.fleet.share.target if self.fleet.share else None,
                              members=len(self.fleet.members),
                              capacity=self.settings.wwebjs_max_sessions or None)

    # --- reconcile --------------------------------------------------------------------------------

    async def _loop(self) -> None:
        interval = self.settings.wwebjs_reconcile_interval_ms / 1000
        while not self._stopping:
            try:
                await self.reconcile()
                self.last_tick_ok = time.time()
                self.last_error = None
            except BisnesgptError as exc:
                self.last_error = exc.detail
                log.warning("reconcile failed: %s", exc.detail)
            except Exception as exc:
                self.last_error = repr(exc)
                log.exception("reconcile failed")
            await self._enforce_leases()
            self._tick.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._tick.wait(), interval)

    async def reconcile(self) -> None:
        """One round: read what is wanted, take or renew leases, close, command and queue sessions."""
        async with self.db.connection() as conn:
            phones = await store.wwebjs_phones(conn)
            commands = await store.pending_commands(conn)
        by_key = {p.key: p for p in phones}
        self.wanted = {p.key for p in phones if p.should_run}
        commanded = {c.key for c in commands if c.key in by_key}
        # Renew what we hold; claim unowned sessions only up to our fair share, and at most a
        # start batch per round, so that processes share the sessions instead of the first taking all.
        keep = {k.lease_name for k in commanded | set(self.sessions) | set(self._command_tasks)}
        keep |= {name for name in self.leases.held_names() if SessionKey.from_lease_name(name) in self.wanted}
        share = await self.fleet.plan(mine=sum(1 for name in keep if SessionKey.from_lease_name(name) in self.wanted),
                                      wanted=len(self.wanted))
        new = [k.lease_name for k in self.wanted if k.lease_name not in keep and k.lease_name not in self.leases.others]
        random.shuffle(new)  # processes claiming at the same moment then mostly pick different sessions
        batch = min(share.claim, max(0, self.settings.wwebjs_start_concurrency - len(self._start_queue)))
        claim = keep | set(new[:batch])
        held = await self.leases.acquire(claim, observe={k.lease_name for k in self.wanted})
        self._note_standby()
        if share.hand_off:
            held -= await self._hand_off(share.hand_off, held, commanded)

        for key, session in list(self.sessions.items()):
            if key.lease_name not in held:
                log.warning("session %s: lease lost; no longer driving it", key)
                await session.close()
                del self.sessions[key]
            elif not session.running:
                del self.sessions[key]
                if session.ended == "crashed" and key in self.wanted:
                    self._queue_start(key)
            elif key not in self.wanted and key not in self._command_tasks:
                reason = self._not_wanted_reason(by_key.get(key))
                log.info("session %s: no longer wanted (%s); stopping", key, reason)
                await session.close(final_status=("disconnected", {"reason": reason}))
                del self.sessions[key]

        for command in commands:
            if command.key not in by_key:
                continue  # the phone is gone (or no longer wwebjs): the cascade removes it
            if command.key.lease_name in held and command.key not in self._command_tasks:
                self._command_tasks[command.key] = asyncio.create_task(
                    self._run_command(command), name=f"wwebjs-command:{command.id}")

        for key in sorted(self.wanted):
            if key.lease_name in held and key not in self.sessions and key not in self._command_tasks:
                self._queue_start(key)

        still = {k.lease_name for k in self.wanted | set(self.sessions) | set(self._command_tasks)}
        await self.leases.release(name for name in held if name not in still)

    async def _hand_off(self, count: int, held: set[str], commanded: set[SessionKey]) -> set[str]:
        """Give ``count`` sessions to the processes below their share: close them (their
        credentials stay in the store, so the new owner resumes without a QR), release their
        leases and wake the others so one claims them at once. The lease names given up."""
        movable = [key for key in sorted(self.sessions, key=lambda k: (self.sessions[k].is_ready(), str(k)))
                   if key.lease_name in held and key in self.wanted and key not in commanded
                   and key not in self._command_tasks]
        given = movable[:count]
        for key in given:
            session = self.sessions.pop(key)
            await session.close(final_status=("disconnected", {"reason": "handed over to another wwebjs process"}))
        names = {key.lease_name for key in given}
        await self.leases.release(names)
        if given:
            log.info("handed %d session(s) over: %s", len(given), ", ".join(str(k) for k in given))
            await self.fleet.wake_peers("handoff")
        return names

    async def _enforce_leases(self) -> None:
        """Stop driving any session whose lease could not be renewed in time (e.g. PostgreSQL is
        unreachable): another process may take it over once it expires, and two must never drive it."""
        for key, session in list(self.sessions.items()):
            if key in self._command_tasks or self.leases.held(key.lease_name):
                continue
            log.warning("session %s: lease not renewed in time; letting go of it", key)
            await session.close()
            self.sessions.pop(key, None)

    def _note_standby(self) -> None:
        standby = self.standby()
        if standby and not self.was_standby:
            holders = ", ".join(sorted(set(standby.values())))
            log.warning("standby for %d session(s) driven by %s", len(standby), holders)
        self.was_standby = bool(standby)

    @staticmethod
    def _not_wanted_reason(phone: store.WantedPhone | None) -> str:
        if phone is None:
            return "phone removed or no longer a wwebjs phone"
        if not phone.company_active:
            return "company disabled"
        if phone.breaker_tripped_at is not None:
            return phone.breaker_reason or "circuit breaker open"
        return "stopped by operator"

    # --- starting ---------------------------------------------------------------------------------

    def _queue_start(self, key: SessionKey) -> None:
        if key not in self._start_queue:
            self._start_queue.append(key)

    def _starting(self) -> int:
        return sum(1 for s in self.sessions.values() if s.running and s.status in STARTING_STATUSES)

    async def _starter(self) -> None:
        stagger = self.settings.wwebjs_start_stagger_ms / 1000
        limit = self.settings.wwebjs_start_concurrency
        while not self._stopping:
            if not self._start_queue or self._starting() >= limit:
                await asyncio.sleep(0.05)
                continue
            key = self._start_queue.pop(0)
            if key in self.sessions or key not in self.wanted or not self.leases.held(key.lease_name):
                continue
            self._launch(key)
            if stagger:
                await asyncio.sleep(stagger)

    def _launch(self, key: SessionKey, *, pairing_phone: str | None = None) -> ManagedSession:
        session = ManagedSession(key, self.services, self.config, pairing_phone=pairing_phone)
        self.sessions[key] = session
        session.start()
        return session

    # --- operator commands (run by SessionCommands) -------------------------------------------

    def _on_process_message(self, payload: Mapping[str, object]) -> None:
        """Wake the reconcile loop when the API queued a command (best effort; the loop polls)."""
        if payload.get("messageType") == SESSION_COMMAND_MESSAGE:
            self.poke()

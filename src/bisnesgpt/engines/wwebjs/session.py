"""One phone's session, kept alive by one task: connect, pair, run, reconnect, give up.

Life of a session (every change written to ``phone_status`` and published on ``bot:event``)::

    initializing ─▶ qr / pairing_code ─▶ authenticated ─▶ ready
         ▲   │ connect failed: error(reason, retryAt)          │ disconnected(reason)
         │   ▼                                                  ▼
         └── backoff (exponential, reset once ready for WWEBJS_STABLE_SECONDS) ◀──┘

* N disconnects within M minutes trips the circuit breaker: ``error`` "flapping", persisted,
  and the session ends; only an operator's start/restart clears it.
* A session stuck in ``initializing``/``authenticated`` longer than the init timeout is
  restarted by the watchdog (counts as a disconnect); an unscanned QR ends the session
  after the QR timeout (``disconnected`` "qr_timeout", start it again for a new QR).
* Logged out (from the phone or by us): credentials cleared, ``disconnected`` with
  ``loggedOut: true``, the session stays stopped until started again (a new QR).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, TypeVar

import asyncpg

from bisnesgpt.core.errors import BisnesgptError, LeaseLost
from bisnesgpt.engines.wwebjs import store
from bisnesgpt.engines.wwebjs.backoff import Backoff, CircuitBreaker
from bisnesgpt.engines.wwebjs.driver import DriverSession, OutgoingMessage, SentMessage, SessionKey
from bisnesgpt.engines.wwebjs.driver_errors import DriverError, NotConnected, PairingUnavailable, SendTimeout
from bisnesgpt.engines.wwebjs.driver_events import (
    Authenticated,
    DeliveryAck,
    Disconnected,
    GroupParticipantsChanged,
    GroupUpdated,
    InboundMessage,
    LoggedOut,
    Notification,
    PairingCode,
    PollVote,
    QrCode,
    Ready,
    SessionEvent,
)
from bisnesgpt.engines.wwebjs.qr import qr_data_url
from bisnesgpt.engines.wwebjs.session_services import SessionConfig, SessionServices
from bisnesgpt.engines.wwebjs.status import SessionStatus, StatusMetadata, announce_status, write_status

log = logging.getLogger(__name__)

# Why a session's run loop ended by itself (None while it runs, or when it was closed).
SessionEnd = Literal["crashed", "qr_timeout", "flapping", "logged_out"]
# How one connection ended.
OutcomeKind = Literal["connect_failed", "disconnected", "watchdog", "logged_out", "qr_timeout"]
_Delivered = TypeVar("_Delivered", InboundMessage, DeliveryAck, Notification)


@dataclass(frozen=True)
class Outcome:
    """How one connection ended, and whether the session had been ready on it."""

    kind: OutcomeKind
    reason: str
    was_ready: bool = False


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


class ManagedSession:
    """Runs one session until it ends (logged out, QR timeout, breaker) or is closed."""

    def __init__(self, key: SessionKey, services: SessionServices, config: SessionConfig, *,
                 pairing_phone: str | None = None) -> None:
        self.key = key
        self.services = services
        self.config = config
        self.status: SessionStatus = "pending"
        self.status_since = time.monotonic()
        self.phone_number: str | None = None
        self.last_reason: str | None = None
        self.ended: SessionEnd | None = None
        self.backoff = Backoff(config.reconnect_base_ms, config.reconnect_max_ms)
        self.breaker = CircuitBreaker(config.breaker_disconnects, config.breaker_window_seconds)
        self.connects = 0
        self._pairing_phone = pairing_phone
        self._events: asyncio.Queue[SessionEvent] = asyncio.Queue()
        self._driver_session: DriverSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._ready_at: float | None = None
        self._first_qr_at: float | None = None
        self._pairing_waiters: list[asyncio.Future[str]] = []
        self._closing = False

    # --- control (called by the manager) ---------------------------------------------------

    def start(self) -> None:
        """Run the session in a task of its own (until it ends or is closed)."""
        self._task = asyncio.create_task(self._run(), name=f"wwebjs-session:{self.key}")

    @property
    def running(self) -> bool:
        """Whether the run loop is still going (it may be waiting to reconnect)."""
        return self._task is not None and not self._task.done()

    def is_ready(self) -> bool:
        """Whether a send can go out on this session now."""
        return self.status == "ready" and self._driver_session is not None

    def wake(self) -> None:
        """Cut a backoff wait short (an operator asked for a start/restart)."""
        self.backoff.reset()
        self._wake.set()

    async def close(self, *, final_status: tuple[SessionStatus, StatusMetadata] | None = None,
                    timeout: float = 10.0) -> None:
        """Stop driving this session; optionally write a last status (not when the lease was lost)."""
        self._closing = True
        await self._cancel_task(timeout)
        await self._stop_driver()
        for waiter in self._pairing_waiters:
            if not waiter.done():
                waiter.set_exception(PairingUnavailable("session stopped"))
        if final_status is not None:
            await self._set_status(final_status[0], final_status[1])

    async def send(self, message: OutgoingMessage) -> SentMessage:
        """Send through the driver; NotConnected unless ready, SendTimeout when WhatsApp does not answer."""
        session = self._driver_session
        if session is None or self.status != "ready":
            raise NotConnected(f"session {self.key} is {self.status}")
        try:
            return await asyncio.wait_for(session.send(message), self.config.send_timeout_seconds)
        except TimeoutError as exc:
            raise SendTimeout(f"no answer from WhatsApp within {self.config.send_timeout_seconds:g}s") from exc

    def ready_driver(self) -> DriverSession:
        """The driver session, for operations besides sends (groups); NotConnected unless ready."""
        session = self._driver_session
        if session is None or self.status != "ready":
            raise NotConnected(f"session {self.key} is {self.status}")
        return session

    async def request_pairing_code(self, phone_number: str, timeout: float = 20.0) -> str:
        """A pairing code for ``phone_number`` (the session must be waiting to be paired)."""
        if self.status in ("authenticated", "ready"):
            raise PairingUnavailable(f"session {self.key} is already paired (status {self.status}); log out first")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        waiter: asyncio.Future[str] = loop.create_future()
        self._pairing_waiters.append(waiter)
        try:
            # A connection on its way up is about to show a QR: ask it, rather than reconnecting.
            while self.running and self.status in ("pending", "initializing") and loop.time() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            if waiter.done():  # connected with the number: the code already arrived
                return waiter.result()
            session = self._driver_session
            if session is not None and self.status in ("qr", "pairing_code"):
                code = await asyncio.wait_for(session.request_pairing_code(phone_number),
                                              max(0.1, deadline - loop.time()))
                if not waiter.done():
                    waiter.set_result(code)
            else:
                # Not connected (waiting to retry, or not started): connect with the number; the
                # code comes as an event.
                self._pairing_phone = phone_number
                self.wake()
            return await asyncio.wait_for(waiter, max(0.1, deadline - loop.time()))
        finally:
            with contextlib.suppress(ValueError):
                self._pairing_waiters.remove(waiter)

    async def logout(self) -> str:
        """Unlink the device (over the connection if it is up) and end the session."""
        session = self._driver_session
        how = "logged out"
        if session is not None and self.status == "ready":
            try:
                await asyncio.wait_for(session.logout(), 15)
            except (DriverError, TimeoutError) as exc:
                how = f"credentials removed locally; WhatsApp logout failed ({exc}); unlink the device on the phone"
        else:
            how = "credentials removed locally (no live connection); unlink the device on the phone"
        self._closing = True
        await self._cancel_task(10.0)
        await self._stop_driver()
        await self._logged_out("logged out by operator", detail=how)
        return how

    # --- the run loop -------------------------------------------------------------------------

    def closing(self) -> bool:
        """Whether the session is being closed (the run loop then stops at its next step)."""
        return self._closing

    async def _run(self) -> None:
        try:
            while not self.closing():
                outcome = await self._connect_once()
                if self.closing():
                    return
                if not await self._after(outcome):
                    return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("session %s: run loop failed; it will be restarted by the manager", self.key)
            self.ended = "crashed"
            await self._set_status("error", {"reason": "internal error in the session task (see logs)"})
        finally:
            await self._stop_driver()

    async def _connect_once(self) -> Outcome:
        self.connects += 1
        self._drain_events()
        try:
            async with self.services.db.connection() as conn:
                auth_state = await self.services.auth.load(conn, self.key)
        except BisnesgptError as exc:
            return Outcome("connect_failed", f"session store unavailable: {exc.detail}")
        await self._set_status("initializing", {"resumed": auth_state is not None, "attempt": self.connects})
        session = self.services.driver.session(self.key, self._events.put_nowait, auth_state)
        self._driver_session = session
        try:
            await session.start(pairing_phone=self._pairing_phone)
        except DriverError as exc:
            await self._stop_driver()
            return Outcome("connect_failed", exc.detail)
        self._first_qr_at = None
        while True:
            timeout = self._wait_budget(self._first_qr_at)
            try:
                event = await asyncio.wait_for(self._events.get(), timeout)
            except TimeoutError:
                await self._stop_driver()
                if self.status in ("qr", "pairing_code"):
                    return Outcome("qr_timeout", f"qr_timeout: not paired within {self.config.qr_timeout_seconds:g}s")
                return Outcome("watchdog", f"stuck in {self.status} for {self.config.init_timeout_seconds:g}s; "
                                           "restarted by the watchdog")
            outcome = await self._on_event(event)
            if outcome is not None:
                return outcome

    async def _on_event(self, event: SessionEvent) -> Outcome | None:
        """Apply one driver event; an Outcome when the connection is over."""
        if isinstance(event, QrCode):
            self._first_qr_at = self._first_qr_at or time.monotonic()
            await self._set_status("qr", {"qrCode": qr_data_url(event.code)})
        elif isinstance(event, PairingCode):
            self._first_qr_at = self._first_qr_at or time.monotonic()
            await self._set_status("pairing_code", {"pairingCode": event.code, "phoneNumber": event.phone_number})
            for waiter in self._pairing_waiters:
                if not waiter.done():
                    waiter.set_result(event.code)
        elif isinstance(event, Authenticated):
            await self._authenticated(event)
        elif isinstance(event, Ready):
            self.phone_number = event.phone_number or self.phone_number
            self._ready_at = time.monotonic()
            self._pairing_phone = None
            await self._set_status("ready", {"pushName": event.push_name})
            await self._guard_db(store.mark_ready, self.key, self.phone_number)
            self.services.on_ready(self.key)
        elif isinstance(event, Disconnected):
            was_ready = self.status == "ready"
            await self._stop_driver()
            kind: OutcomeKind = "connect_failed" if event.connect_failure and not was_ready else "disconnected"
            return Outcome(kind, event.reason, was_ready)
        elif isinstance(event, LoggedOut):
            await self._stop_driver()
            return Outcome("logged_out", event.reason)
        elif isinstance(event, InboundMessage):
            await self._deliver(self.services.on_inbound, event, event.confirm)
        elif isinstance(event, GroupParticipantsChanged | GroupUpdated | PollVote):
            if self.services.on_notification is not None:
                await self._deliver(self.services.on_notification, event, event.confirm)
        else:
            await self._deliver(self.services.on_ack, event, event.confirm)
        return None

    def _wait_budget(self, first_qr_at: float | None) -> float | None:
        now = time.monotonic()
        if self.status in ("initializing", "authenticated"):
            return max(0.0, self.config.init_timeout_seconds - (now - self.status_since))
        if self.status in ("qr", "pairing_code") and first_qr_at is not None:
            return max(0.0, self.config.qr_timeout_seconds - (now - first_qr_at))
        return None

    async def _after(self, outcome: Outcome) -> bool:
        """Act on how a connection ended; False when the session is over."""
        self.last_reason = outcome.reason
        if outcome.kind == "logged_out":
            await self._logged_out(outcome.reason)
            return False
        if outcome.kind == "qr_timeout":
            await self._guard_db(store.set_desired_state, self.key, "stopped", "qr_timeout")
            await self._set_status("disconnected", {"reason": outcome.reason})
            self.ended = "qr_timeout"
            return False
        if outcome.kind in ("disconnected", "watchdog"):
            if outcome.was_ready:
                # A live session was lost: an alert for operators (reconnecting attempts after it are not).
                await self.services.events.record("wwebjs_session_disconnected", {
                    "session": str(self.key), "companyId": self.key.company_id, "phoneIndex": self.key.phone_index,
                    "kind": outcome.kind, "reason": outcome.reason}, "error")
            if self._ready_at is not None and time.monotonic() - self._ready_at >= self.config.stable_seconds:
                self.backoff.reset()
            self._ready_at = None
            if self.breaker.record():
                reason = self.breaker.describe()
                await self._guard_db(store.trip_breaker, self.key, reason)
                await self._set_status("error", {"reason": reason, "lastDisconnect": outcome.reason,
                                                 "breaker": "open"})
                await self.services.events.record("wwebjs_session_flapping", {
                    "session": str(self.key), "reason": reason, "lastDisconnect": outcome.reason}, "warning")
                self.ended = "flapping"
                return False
        delay_ms = self.backoff.next_delay_ms()
        retry_at = time.time() + delay_ms / 1000
        status: SessionStatus = "error" if outcome.kind == "connect_failed" else "disconnected"
        await self._set_status(status, {"reason": outcome.reason, "retryInMs": delay_ms, "retryAt": _iso(retry_at),
                                        "attempt": self.backoff.failures})
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), delay_ms / 1000)
        return True

    async def _authenticated(self, event: Authenticated) -> None:
        self.phone_number = event.phone_number or self.phone_number
        saved = await self._guard_db(self._save_auth, event)
        await self._set_status("authenticated", {"deviceId": event.device_id, "stored": saved})

    async def _save_auth(self, conn: asyncpg.Connection, event: Authenticated) -> None:
        await self.services.auth.save(conn, self.key, event.auth_state, device_id=event.device_id,
                                      phone_number=event.phone_number)

    async def _logged_out(self, reason: str, *, detail: str | None = None) -> None:
        async def _forget(conn: asyncpg.Connection) -> None:
            await self.services.auth.clear(conn, self.key)
            await store.set_desired_state(conn, self.key, "stopped", "logged_out")

        await self._guard_db(_forget)
        metadata: StatusMetadata = {"reason": reason, "loggedOut": True}
        if detail:
            metadata["detail"] = detail
        await self._set_status("disconnected", metadata)
        self.ended = "logged_out"

    async def _deliver(self, handler: Callable[[SessionKey, _Delivered], Awaitable[bool]], event: _Delivered,
                       confirm: Callable[[], Awaitable[None]] | None) -> None:
        try:
            handled = await handler(self.key, event)
        except BisnesgptError as exc:
            # Not confirmed: WhatsApp (or the sandbox) redelivers it on the next connection.
            log.warning("session %s: %s not stored (%s); left for redelivery", self.key, type(event).__name__,
                        exc.detail)
            return
        if handled and confirm is not None:
            with contextlib.suppress(DriverError, OSError):
                await confirm()

    # --- helpers --------------------------------------------------------------------------------

    async def _cancel_task(self, timeout: float) -> None:
        """Cancel the run loop and wait for it (our own cancellation still propagates)."""
        task = self._task
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
            await asyncio.wait({task}, timeout=timeout)

    def _drain_events(self) -> None:
        while not self._events.empty():
            self._events.get_nowait()

    async def _stop_driver(self) -> None:
        session, self._driver_session = self._driver_session, None
        if session is None:
            return
        try:
            await asyncio.wait_for(session.stop(), 10)
        except Exception as exc:
            log.warning("session %s: stopping the driver session: %r", self.key, exc)

    async def _fence(self, conn: asyncpg.Connection) -> None:
        if self.services.fence is not None:
            await self.services.fence(conn, self.key)

    def _lost(self, exc: LeaseLost) -> None:
        log.warning("session %s: %s; nothing written, stopping it here", self.key, exc.detail)
        self.services.on_lease_lost(self.key)

    async def _guard_db(self, fn: Callable[..., Awaitable[None]], *args: object) -> bool:
        try:
            async with self.services.db.transaction() as conn:
                await self._fence(conn)
                await fn(conn, *args)
            return True
        except LeaseLost as exc:
            self._lost(exc)
            return False
        except BisnesgptError as exc:
            log.warning("session %s: %s not written: %s", self.key, getattr(fn, "__name__", "update"), exc.detail)
            return False

    async def _set_status(self, status: SessionStatus, metadata: StatusMetadata) -> None:
        if status != self.status:
            self.status_since = time.monotonic()
        self.status = status
        services = self.services
        full: dict[str, object] = {k: v for k, v in metadata.items() if v is not None}
        full.update({"owner": services.holder, "pid": services.pid, "driver": services.driver.name,
                     "since": _iso(time.time())})
        try:
            async with services.db.transaction() as conn:
                await self._fence(conn)
                await write_status(conn, self.key, status, full, phone_number=self.phone_number)
        except LeaseLost as exc:
            self._lost(exc)
            return  # not ours to announce either
        except BisnesgptError as exc:
            log.warning("session %s: status %s not written: %s", self.key, status, exc.detail)
        log.info("session %s: %s %s", self.key, status, full.get("reason") or "")
        await announce_status(services.redis, self.key, status, full, namespace=services.namespace,
                              process_name=services.process_name, pid=services.pid, phone_number=self.phone_number)

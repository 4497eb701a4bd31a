"""The ``neonize`` driver: WhatsApp Web multi-device through whatsmeow (the Go library neonize binds).

* Session store: whatsmeow's own tables, in PostgreSQL (DATABASE_URL), in their own schema
  (WWEBJS_STORE_SCHEMA, created at start; whatsmeow creates and upgrades its tables on
  first use). neonize picks the PostgreSQL dialect for names starting with ``postgres``;
  the schema is selected with ``search_path`` in the DSN.
* One client per phone. A new phone is a new device (QR or pairing code); a paired phone is
  resumed by its device JID, which is the only thing kept in our session store.
* QR codes arrive as strings; the session manager renders them as PNG data URLs (segno).
* Media by URL is downloaded here with the size limit (WWEBJS_MEDIA_MAX_BYTES) and uploaded
  by whatsmeow. neonize needs ffmpeg for video/sticker thumbnails.

whatsmeow reconnects by itself; the session manager owns reconnects instead, so a
disconnect stops the client and the manager decides when to try again (backoff, breaker).

This module holds the driver and a session's lifecycle and events; the session's sends are
``neonize_send``, its group calls ``neonize_calls``, the inbound translation ``neonize_inbound``
and the device JID and store DSN ``neonize_device``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bisnesgpt.core.errors import BisnesgptError
from bisnesgpt.db.pool import Database
from bisnesgpt.db.queries import load_queries
from bisnesgpt.engines.wwebjs.driver import AuthState, MediaDownload, SessionKey
from bisnesgpt.engines.wwebjs.driver_errors import DriverConnectError, DriverError, NotConnected, PairingUnavailable
from bisnesgpt.engines.wwebjs.driver_events import EventSink, InboundMessage, PollVote
from bisnesgpt.engines.wwebjs.drivers.neonize_calls import NeonizeCalls
from bisnesgpt.engines.wwebjs.drivers.neonize_device import DeviceJid, readable_error, store_dsn
from bisnesgpt.engines.wwebjs.drivers.neonize_groups import group_events_of
from bisnesgpt.engines.wwebjs.drivers.neonize_inbound import RECEIPT_LEVELS, chat_of, inbound_of, sender_of
from bisnesgpt.engines.wwebjs.drivers.neonize_send import NeonizeSending
from bisnesgpt.engines.wwebjs.media import MediaDownloadFailed, MediaFetcher

log = logging.getLogger(__name__)
SQL = load_queries("bisnesgpt.engines.wwebjs.drivers")

# A connect attempt that fails does so within milliseconds (DNS, TCP, TLS); one that is
# still running after this long is connected and waiting for a QR scan or the server.
STARTUP_GRACE = 3.0


class NeonizeDriver:
    """Sessions on WhatsApp's network through neonize, with whatsmeow's store in PostgreSQL."""

    name = "neonize"

    def __init__(self, db: Database, database_url: str, *, schema: str, sslmode: str, media: MediaFetcher) -> None:
        self.db = db
        self.schema = schema
        self.database_url = database_url
        self.sslmode = sslmode
        self._attempts = itertools.count(1)
        self.media = media
        self.load_error: str | None = None

    async def open(self) -> None:
        """Create whatsmeow's schema and load the Go library (a failure to load fails every session start)."""
        async with self.db.transaction() as conn:
            await conn.execute(SQL.name_store_schema, self.schema)
            await conn.execute(SQL.create_store_schema)
        try:
            import neonize.aioze.client  # noqa: F401 - loads the Go library once, at start
        except (ImportError, OSError) as exc:
            self.load_error = f"neonize cannot be loaded on this machine: {exc}"
            log.exception("%s", self.load_error)

    def session(self, key: SessionKey, sink: EventSink, auth_state: AuthState | None) -> NeonizeSession:
        """A new neonize client for ``key``, resuming the device of ``auth_state`` if it has one."""
        return NeonizeSession(self, key, sink, auth_state)

    def attempt_dsn(self) -> tuple[str, str]:
        """A DSN whose connections are recognisable as this connection attempt's."""
        name = f"bisnesgpt-wa-{os.getpid()}-{next(self._attempts)}"
        return store_dsn(self.database_url, self.schema, self.sslmode, name), name

    async def release_connections(self, application_name: str) -> int:
        """Close the PostgreSQL connections neonize left open for one finished attempt.

        neonize opens a new database handle (a Go sql.DB) for every connect and never closes
        it; each attempt's own ``application_name`` lets them be closed from here (otherwise
        every retry leaks a PostgreSQL connection).
        """
        try:
            return int(await self.db.fetchval(SQL.terminate_attempt_connections, application_name) or 0)
        except BisnesgptError as exc:
            log.warning("could not close neonize's connections %s: %s", application_name, exc.detail)
            return 0

    async def close(self) -> None:
        """Nothing to release: each session closes its own client."""
        return None


class NeonizeSession(NeonizeSending, NeonizeCalls):
    """One phone's neonize client: connect (QR, pairing code or resume), events, sends."""

    def __init__(self, driver: NeonizeDriver, key: SessionKey, sink: EventSink,
                 auth_state: AuthState | None) -> None:
        super().__init__(key, sink)
        self.driver = driver
        self.jid = DeviceJid.from_auth(auth_state or {})
        self.client: Any = None
        self._application_name: str | None = None
        self._task: asyncio.Task[Any] | None = None

    @property
    def connected(self) -> bool:
        """Whether the neonize client exists (it may still be connecting)."""
        return self.client is not None

    # --- lifecycle --------------------------------------------------------------------------------

    async def start(self, *, pairing_phone: str | None = None) -> None:
        """Connect; a new device (no stored JID) shows a QR, or a pairing code for ``pairing_phone``."""
        if self.driver.load_error:
            raise DriverConnectError(self.driver.load_error)
        from neonize.aioze.client import NewAClient
        from neonize.proto.Neonize_pb2 import JID

        stored = self.jid
        jid = JID(User=stored.user, Server=stored.server, Device=stored.device, RawAgent=stored.raw_agent,
                  Integrator=0, IsEmpty=False) if stored else None
        dsn, self._application_name = self.driver.attempt_dsn()
        self.client = NewAClient(dsn, jid=jid, uuid=None if jid else str(self.key), new_device=jid is None)
        self._subscribe(self.client)
        try:
            task = await self.client.connect()
        except Exception as exc:
            raise DriverConnectError(readable_error(exc)) from exc
        done, _ = await asyncio.wait({task}, timeout=STARTUP_GRACE)
        if task in done:
            error = task.exception()
            await self._stop_client()
            raise DriverConnectError(readable_error(error) if error else "the WhatsApp connection ended at once")
        self._task = task
        task.add_done_callback(self._connection_ended)
        if pairing_phone and jid is None:
            await self.request_pairing_code(pairing_phone)

    def _connection_ended(self, task: asyncio.Task[Any]) -> None:
        error = None if task.cancelled() else task.exception()
        self.report_connection_lost(readable_error(error) if error else "connection to WhatsApp ended")

    async def stop(self) -> None:
        """Stop the client (the device stays paired) and close the attempt's database connections."""
        self.stopped = True
        await self._stop_client()

    async def _stop_client(self) -> None:
        client, self.client = self.client, None
        self.ready = False
        if client is None:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.stop(), 10)
        if self._task is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(self._task, 5)
        if self._application_name is not None:
            await self.driver.release_connections(self._application_name)

    async def logout(self) -> None:
        """Unlink the device on WhatsApp."""
        self.require_connected()
        try:
            await self.client.logout()
        except Exception as exc:
            raise DriverError(f"logout failed: {readable_error(exc)}") from exc

    async def request_pairing_code(self, phone_number: str) -> str:
        """A pairing code for ``phone_number`` (digits only are sent), also reported as an event."""
        self.require_pairable()
        digits = "".join(ch for ch in phone_number if ch.isdigit())
        try:
            code = str(await self.client.PairPhone(digits, True))
        except Exception as exc:
            raise PairingUnavailable(f"pairing code request failed: {readable_error(exc)}") from exc
        self.report_pairing_code(code, digits)
        return code

    # --- events -----------------------------------------------------------------------------------

    def _subscribe(self, client: Any) -> None:
        from neonize.aioze.events import (
            ConnectedEv,
            ConnectFailureEv,
            DisconnectedEv,
            GroupInfoEv,
            LoggedOutEv,
            MessageEv,
            PairStatusEv,
            ReceiptEv,
            StreamReplacedEv,
            TemporaryBanEv,
        )

        async def on_qr(_client: Any, data: bytes) -> None:
            self.report_qr(data.decode() if isinstance(data, bytes) else str(data))

        async def on_pair(_client: Any, event: Any) -> None:
            if int(event.Status) == 2:  # SUCCESS
                jid = event.ID
                self.jid = DeviceJid(jid.User, jid.Server, jid.Device, jid.RawAgent)
                self.report_authenticated(self.jid.as_auth(), phone_number=jid.User,
                                          device_id=f"{jid.User}:{jid.Device}@{jid.Server}")
            else:
                self.report_disconnected(f"pairing failed: {event.Error}")

        async def on_connected(_client: Any, _event: Any) -> None:
            user = self.jid.user if self.jid else None
            if not self.ready and self.jid:
                self.report_authenticated(self.jid.as_auth(), phone_number=user)
            self.report_ready(user)

        async def on_logged_out(_client: Any, event: Any) -> None:
            self.report_logged_out(f"logged out by WhatsApp (reason {int(event.Reason)})")

        async def on_disconnected(_client: Any, _event: Any) -> None:
            self.report_connection_lost("connection to WhatsApp lost")

        async def on_replaced(_client: Any, _event: Any) -> None:
            self.report_disconnected("replaced: this device connected from another client")

        async def on_connect_failure(_client: Any, event: Any) -> None:
            self.report_disconnected(f"WhatsApp refused the connection: {event.Message or int(event.Reason)}",
                                     connect_failure=True)

        async def on_ban(_client: Any, event: Any) -> None:
            self.report_disconnected(f"temporarily banned by WhatsApp (code {int(event.Code)}, "
                                     f"expires in {int(event.Expire)} s)")

        async def on_message(client: Any, event: Any) -> None:
            if event.Message.HasField("pollUpdateMessage"):
                vote = await self._poll_vote(client, event)
                if vote is not None:
                    self.sink(vote)
                return
            inbound = self._inbound(event)
            if inbound is not None:
                self.report_inbound(inbound)

        async def on_receipt(_client: Any, event: Any) -> None:
            level = RECEIPT_LEVELS.get(int(event.Type))
            if level is not None:
                stamp = getattr(event, "Timestamp", 0)  # whatsmeow's receipt time (Unix seconds)
                at = float(stamp) if isinstance(stamp, int | float) and stamp > 0 else None
                for message_id in event.MessageIDs:
                    self.report_ack(str(message_id), level, at=at)

        async def on_group_info(_client: Any, event: Any) -> None:
            for group_event in group_events_of(event):
                self.sink(group_event)

        client.qr(on_qr)
        for event_type, handler in ((PairStatusEv, on_pair), (ConnectedEv, on_connected),
                                    (LoggedOutEv, on_logged_out), (DisconnectedEv, on_disconnected),
                                    (StreamReplacedEv, on_replaced), (ConnectFailureEv, on_connect_failure),
                                    (TemporaryBanEv, on_ban), (MessageEv, on_message), (ReceiptEv, on_receipt),
                                    (GroupInfoEv, on_group_info)):
            client.event(event_type)(handler)

    async def _poll_vote(self, client: Any, event: Any) -> PollVote | None:
        """A vote on a poll: whatsmeow decrypts it (``decrypt_poll_vote``); the options come as SHA-256."""
        info = event.Info
        source = info.MessageSource
        if source.IsFromMe:
            return None
        try:
            vote = await client.decrypt_poll_vote(event)
        except Exception as exc:  # neonize's DecryptPollVoteError: not our poll, or keys missing
            log.warning("session %s: poll vote %s not readable: %s", self.key, info.ID, readable_error(exc))
            return None
        voter, lid = sender_of(source)
        chat = chat_of(source)
        return PollVote(id=info.ID, poll_id=event.Message.pollUpdateMessage.pollCreationMessageKey.ID, chat_id=chat,
                        voter=voter, timestamp=float(info.Timestamp),
                        selected_hashes=tuple(bytes(h).hex() for h in vote.selectedOptions), voter_lid=lid)

    def _inbound(self, event: Any) -> InboundMessage | None:
        return inbound_of(event, self._media_download)

    def _media_download(self, message: Any) -> MediaDownload:
        """whatsmeow downloads and decrypts the media (its media key, CDN path) into a file we then stream."""
        async def chunks() -> AsyncIterator[bytes]:
            client = self.client
            if client is None:
                raise NotConnected("the session is not connected: media cannot be downloaded now")
            with tempfile.TemporaryDirectory(prefix="bisnesgpt-media-") as folder:
                path = Path(folder) / "media"
                try:
                    await client.download_any(message, str(path))
                except Exception as exc:  # neonize raises its own error types for CDN and decryption failures
                    raise MediaDownloadFailed(f"whatsmeow could not download the media: {exc}") from exc
                with path.open("rb") as handle:
                    while chunk := await asyncio.to_thread(handle.read, 256 * 1024):
                        yield chunk

        return chunks

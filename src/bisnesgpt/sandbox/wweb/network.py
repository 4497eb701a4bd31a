"""The sandbox WhatsApp-Web network: pairing, delivery, receipts and faults (no HTTP here).

One ``Network`` per sandbox server process. It behaves like WhatsApp's servers do towards
a linked device: a new device gets rotating QR codes (or a pairing code) until someone
"scans" it through the admin API; a linked device resumes with its stored credentials; a
second connection for the same device replaces the first (WhatsApp's "conflict"), which the
records flag as an overlap; sent messages get server/device/read receipts after configurable
delays, replayed after a reconnect until the client confirms them; inbound messages are
queued while the device is offline.

The network is a ``Switchboard`` (shared state) with its parts: ``SessionLinker`` (hello and
pairing), ``Routing`` (frames and inbound messages), ``FaultInjector``; this module is what
the server and the tests call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, TypedDict

from bisnesgpt.core.jsontypes import JsonObject
from bisnesgpt.sandbox.wweb import protocol as p
from bisnesgpt.sandbox.wweb.config import NetworkConfig
from bisnesgpt.sandbox.wweb.connection import Connection, ConnectionState, Socket
from bisnesgpt.sandbox.wweb.faults import FaultInjector, InjectedFault
from bisnesgpt.sandbox.wweb.groups import Groups
from bisnesgpt.sandbox.wweb.protocol import Welcome
from bisnesgpt.sandbox.wweb.records import Records
from bisnesgpt.sandbox.wweb.routing import InjectedInbound, Routing
from bisnesgpt.sandbox.wweb.sessions import Linked, SessionLinker
from bisnesgpt.sandbox.wweb.switchboard import FaultsView, NetworkError, Switchboard

__all__ = ["Network", "NetworkConfig", "NetworkError", "SessionView"]


class DeviceView(TypedDict):
    """A session's linked device as the admin API shows it."""

    deviceId: str
    phone: str
    pushName: str | None
    pairedAt: float
    loggedOut: bool
    logoutReason: str | None


class SessionView(TypedDict):
    """A session as the admin API shows it: its connection now, its device, its counts."""

    session: str
    connected: bool
    state: ConnectionState | Literal["offline"]
    connectionId: int | None
    client: JsonObject | None
    qr: str | None
    pairingCode: str | None
    device: DeviceView | None
    faults: FaultsView
    connections: int
    overlaps: int
    sent: int
    received: int


class Network(Switchboard):
    """The network one sandbox server runs (see the module docstring)."""

    def __init__(self, records: Records, config: NetworkConfig, media_dir: Path) -> None:
        super().__init__(records, config, media_dir)
        self.linker = SessionLinker(self)
        self.groups = Groups(self)
        self.routing = Routing(self, self.linker, self.groups)
        self.injector = FaultInjector(self)
        records.close_dangling()

    async def shutdown(self) -> None:
        """Drop pending timers and disconnect every client (the server is stopping)."""
        self.cancel_timers()
        for conn in list(self.live.values()):
            await conn.kick("disconnect", "sandbox shutting down")

    # --- connection lifecycle ------------------------------------------------------------------

    def connect(self, socket: Socket, remote: str | None) -> Connection:
        """A new socket, recorded; it names its session in its hello."""
        return Connection(socket, self.records.open_connection({}, remote), self.hung)

    def closed(self, conn: Connection, reason: str) -> None:
        """The socket is gone: recorded, and no longer the session's live connection."""
        if conn.state != "closed":
            conn.state = "closed"
            conn.close_reason = reason
        self.records.close_connection(conn.id, conn.close_reason or reason)
        if conn.session is not None and self.live.get(conn.session) is conn:
            del self.live[conn.session]

    def welcome(self) -> Welcome:
        """The first frame on every socket."""
        return {"type": "welcome", "keepalive": {"interval": self.config.keepalive_interval,
                                                 "timeout": self.config.keepalive_timeout}}

    async def hello(self, conn: Connection, frame: JsonObject) -> None:
        """The client's first frame (``SessionLinker.hello``)."""
        await self.linker.hello(conn, frame)

    async def frame(self, conn: Connection, frame: JsonObject) -> None:
        """Every later frame (``Routing.frame``)."""
        await self.routing.frame(conn, frame)

    # --- admin actions ----------------------------------------------------------------------------

    async def scan(self, session: str, *, phone: str | None = None, code: str | None = None,
                   push_name: str | None = None) -> Linked:
        """A phone scans the session's QR or enters its code (``SessionLinker.scan``)."""
        return await self.linker.scan(session, phone=phone, code=code, push_name=push_name)

    async def inject(self, session: str, body: JsonObject) -> InjectedInbound:
        """A contact writes to the session (``Routing.inject``)."""
        return await self.routing.inject(session, body)

    async def group_act(self, group_id: str, body: JsonObject) -> JsonObject:
        """Another phone creates, joins, leaves or changes a group (``Groups.act``)."""
        return await self.groups.act(group_id, body)

    def group_views(self) -> list[JsonObject]:
        """Every group with its members, roles, settings and invite link."""
        return [{**self.groups.view(row["id"], row["body"], None, full=False),
                 "inviteLink": p.INVITE_PREFIX + str(row["body"].get("invite"))}
                for row in self.records.groups()]

    async def fault(self, session: str, body: JsonObject) -> InjectedFault:
        """Put the session under a fault, or clear them (``FaultInjector.fault``)."""
        return await self.injector.fault(session, body)

    # --- views ------------------------------------------------------------------------------------

    def session_view(self, session: str) -> SessionView:
        """The session now: connection, pairing, device, faults, and counts from the records."""
        conn = self.live.get(session)
        device = self.records.device(session)
        connections = self.records.connections(session)
        messages = self.records.messages(session=session)
        pairing = conn.pairing if conn is not None else None
        view: SessionView = {
            "session": session,
            "connected": conn is not None and conn.open,
            "state": conn.state if conn is not None else "offline",
            "connectionId": conn.id if conn is not None else None,
            "client": conn.client if conn is not None else None,
            "qr": pairing.qr if pairing is not None else None,
            "pairingCode": pairing.code if pairing is not None else None,
            "device": None,
            "faults": self.faults_for(session).describe(),
            "connections": len(connections),
            "overlaps": sum(c["overlapped"] for c in connections),
            "sent": sum(1 for m in messages if m["direction"] == "out"),
            "received": sum(1 for m in messages if m["direction"] == "in"),
        }
        if device is not None:
            view["device"] = {"deviceId": device["device_id"], "phone": device["phone"],
                              "pushName": device["push_name"], "pairedAt": device["paired_at"],
                              "loggedOut": device["logged_out_at"] is not None,
                              "logoutReason": device["logout_reason"]}
        return view

    def sessions(self) -> list[str]:
        """Every session live now or on record, sorted."""
        return sorted(set(self.live) | self.records.sessions())

    def config_view(self) -> JsonObject:
        """The settings as the admin API shows them."""
        return self.config.as_json()

"""What both drivers' sessions share: who they are, where their events go, and the checks before acting.

A driver session reports to the session manager through its ``sink``; the methods here
build those events, so a driver only says what happened. ``ready`` is true from the
``Ready`` event until the connection is gone; ``stopped`` once the manager stopped the
session (a connection lost after that is not reported: the manager asked for it).
"""

from __future__ import annotations

from bisnesgpt.engines.wwebjs.driver import AuthState, Confirm, SessionKey
from bisnesgpt.engines.wwebjs.driver_errors import NotConnected, PairingUnavailable
from bisnesgpt.engines.wwebjs.driver_events import (
    AckLevel,
    Authenticated,
    DeliveryAck,
    Disconnected,
    EventSink,
    InboundMessage,
    LoggedOut,
    PairingCode,
    QrCode,
    Ready,
)


class SessionBase:
    """The state and event reporting of one phone's driver session (subclasses say if it is ``connected``)."""

    def __init__(self, key: SessionKey, sink: EventSink) -> None:
        self.key = key
        self.sink = sink
        self.ready = False
        self.stopped = False

    @property
    def connected(self) -> bool:
        """Whether there is a connection to talk over (a socket, a client) right now."""
        raise NotImplementedError

    def require_connected(self) -> None:
        """Raise ``NotConnected`` unless there is a connection to talk over."""
        if not self.connected:
            raise NotConnected("not connected")

    def require_ready(self) -> None:
        """Raise ``NotConnected`` unless a send can go out now."""
        if not self.connected or not self.ready:
            raise NotConnected(f"session {self.key} is not ready")

    def require_pairable(self) -> None:
        """Raise ``PairingUnavailable`` unless the connection is up and waiting to be paired."""
        if not self.connected or self.ready:
            raise PairingUnavailable("a pairing code needs a connection waiting to be paired")

    # --- what happened (to the manager) ---------------------------------------------------------

    def report_qr(self, code: str) -> None:
        """A QR code to show (it rotates while nobody scans)."""
        self.sink(QrCode(code))

    def report_pairing_code(self, code: str, phone_number: str) -> None:
        """A code to enter on the phone ``phone_number``."""
        self.sink(PairingCode(code, phone_number))

    def report_authenticated(self, auth_state: AuthState, *, phone_number: str | None,
                             device_id: str | None = None) -> None:
        """Paired (or resumed): ``auth_state`` is what resumes the session next time."""
        self.sink(Authenticated(auth_state, phone_number=phone_number, device_id=device_id))

    def report_ready(self, phone_number: str | None, push_name: str | None = None) -> None:
        """Connected and able to send."""
        self.ready = True
        self.sink(Ready(phone_number, push_name))

    def report_disconnected(self, reason: str, *, connect_failure: bool = False) -> None:
        """The connection is over (or will be); the manager decides about reconnecting."""
        self.sink(Disconnected(reason, connect_failure=connect_failure))

    def report_connection_lost(self, reason: str) -> None:
        """The connection ended, unless the manager stopped the session itself (then nothing is said)."""
        if not self.stopped:
            self.report_disconnected(reason)

    def report_logged_out(self, reason: str) -> None:
        """The device was unlinked: its credentials are void."""
        self.sink(LoggedOut(reason))

    def report_inbound(self, message: InboundMessage) -> None:
        """A message someone sent to this phone."""
        self.sink(message)

    def report_ack(self, message_id: str, level: AckLevel, confirm: Confirm | None = None, *,
                   at: float | None = None) -> None:
        """A receipt for one of our messages (``at``: WhatsApp's time of it, Unix seconds)."""
        self.sink(DeliveryAck(message_id, level, confirm=confirm, at=at))

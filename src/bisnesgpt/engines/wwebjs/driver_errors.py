"""The errors a driver raises: each says whether trying later may work and what code a failed message records."""

from __future__ import annotations

from typing import ClassVar

from bisnesgpt.core.errors import BisnesgptError


class DriverError(BisnesgptError):
    """Something the driver could not do; ``retryable`` says whether trying later may work.

    ``code`` and ``summary`` are what a message that fails this way records as its error
    code and title; a subclass sets them (and ``retryable``) as class keywords.
    """

    summary: ClassVar[str] = "WhatsApp Web driver error"
    retryable: ClassVar[bool] = True
    code: str = "DRIVER_ERROR"

    def __init_subclass__(cls, *, summary: str | None = None, code: str | None = None,
                          retryable: bool | None = None) -> None:
        """Take the subclass's ``summary``, ``code`` and ``retryable`` class keywords."""
        super().__init_subclass__()
        if summary is not None:
            cls.summary = summary
        if code is not None:
            cls.code = code
        if retryable is not None:
            cls.retryable = retryable


class DriverConnectError(DriverError, summary="Cannot reach WhatsApp Web", code="CONNECT_FAILED"):
    """Could not connect (network, WhatsApp unreachable, sandbox server down)."""


class NotConnected(DriverError, summary="Session not connected", code="SESSION_NOT_CONNECTED"):
    """The session has no live connection right now."""


class SendTimeout(DriverError, summary="No answer to a send in time", code="SEND_TIMEOUT"):
    """WhatsApp did not acknowledge a send in time."""


class SendRejected(DriverError, summary="Message rejected", retryable=False):
    """WhatsApp refused the message for good (bad recipient, media too large, ...); ``code`` says why."""

    def __init__(self, detail: str, *, code: str) -> None:
        super().__init__(detail)
        self.code = code


class GroupRefused(DriverError, summary="Group operation refused", retryable=False):
    """WhatsApp refused a group operation (``code``: GROUP_NOT_FOUND, NOT_GROUP_ADMIN, NOT_IN_GROUP,
    INVITE_INVALID, BAD_GROUP_REQUEST)."""

    def __init__(self, detail: str, *, code: str) -> None:
        super().__init__(detail)
        self.code = code


class PairingUnavailable(DriverError, summary="Pairing not possible now", code="PAIRING_UNAVAILABLE",
                         retryable=False):
    """A pairing code can only be requested while the session waits to be paired."""

"""A phone's connection status as everyone shows it: the console, ``/api/bot-status``, ``phones list``.

The engines record what they saw in ``phone_status``; this turns a row into what is true
*now*. The one case where the two differ is a pause: the meta engine pauses a Cloud API
phone's sending after 368 / 131031 until ``metadata.pausedUntil``; once that moment has
passed the phone is no longer paused, but nothing has been sent yet to show it connected,
so it reads ``pending`` until the next send succeeds (which records ``ready``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import get_args

from bisnesgpt.phones.store import PhoneStatus

PHONE_STATUSES: tuple[PhoneStatus, ...] = get_args(PhoneStatus)


@dataclass(frozen=True)
class LiveStatus:
    """What a phone's status is now, why (the engine's reason) and, while paused, until when."""

    status: PhoneStatus
    reason: str | None
    paused_until: datetime | None = None


def paused_until(metadata: Mapping[str, object]) -> datetime | None:
    """When a pause recorded in the status metadata ends (None: no readable end)."""
    value = metadata.get("pausedUntil")
    if not isinstance(value, str):
        return None
    try:
        until = datetime.fromisoformat(value)
    except ValueError:
        return None
    return until if until.tzinfo else until.replace(tzinfo=UTC)


def live_status(stored: str | None, metadata: Mapping[str, object], *, now: datetime | None = None) -> LiveStatus:
    """The status of a phone now, from its ``phone_status`` row (None: nothing recorded yet)."""
    raw_reason = metadata.get("reason") or metadata.get("error")
    reason = str(raw_reason) if raw_reason else None
    if stored is None or stored not in PHONE_STATUSES:
        return LiveStatus("pending", reason)
    status = stored
    if status != "paused":
        return LiveStatus(status, reason)
    until = paused_until(metadata)
    if until is None or until <= (now or datetime.now(UTC)):
        ended = f" at {until:%H:%M} UTC" if until else ""
        return LiveStatus("pending", f"the sending pause ended{ended}; the phone shows connected once a message "
                                     "goes out")
    return LiveStatus("paused", reason, until)

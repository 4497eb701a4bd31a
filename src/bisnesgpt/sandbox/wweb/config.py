"""The sandbox network's settings: delays, keepalive, numbers that are not on WhatsApp.

Set from ``bisnesgpt sandbox wweb serve``'s options and changeable at run time through
``PUT /admin/config`` (each value converted to the setting's type, as ``int()``/``float()``
would).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from bisnesgpt.core.jsontypes import JsonObject
from bisnesgpt.sandbox.jsonvalues import update_settings

NOT_ON_WHATSAPP_SUFFIX = "404"


def not_on_whatsapp(digits: str, listed: list[str]) -> bool:
    """Whether the sandbox has nobody on WhatsApp at ``digits``: a number ending in 404 (one the API
    accepts, e.g. 60123456404), one starting with 0 (never a full number), or one in ``listed``."""
    return digits.endswith(NOT_ON_WHATSAPP_SUFFIX) or digits.startswith("0") or digits in listed


@dataclass
class NetworkConfig:
    """How the network behaves towards every session (delays in milliseconds, keepalive in seconds)."""

    qr_delay_ms: int = 100
    qr_rotate_ms: int = 20_000
    auth_delay_ms: int = 200
    ready_delay_ms: int = 200
    ack_server_ms: int = 50
    ack_device_ms: int = 300
    ack_read_ms: int = 1_000
    auto_read: bool = True
    # Recorded at once, answered this much later (a slow network: a client killed in between
    # resends, and the record shows the duplicate).
    result_delay_ms: int = 0
    # Each send frame is handled latency_ms plus a random 0..latency_jitter_ms after it arrives
    # (a network path whose delay varies: sends in flight together may overtake each other).
    latency_ms: int = 0
    latency_jitter_ms: int = 0
    keepalive_interval: float = 5.0
    keepalive_timeout: float = 15.0
    hello_timeout: float = 10.0
    # Besides every number ending in 404 (not_on_whatsapp): these, too, are not on WhatsApp.
    not_on_whatsapp: list[str] = field(default_factory=list)

    def update(self, changes: JsonObject) -> None:
        """Apply ``PUT /admin/config``; an unknown name is a KeyError, a bad value a TypeError/ValueError."""
        update_settings(self, changes)

    def as_json(self) -> JsonObject:
        """The settings as the admin API shows them."""
        return asdict(self)

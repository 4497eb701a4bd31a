"""A phone's send rate as its engine applies it: its own, the default, the one in effect.

Read as the engines read it: Cloud API and 360dialog phones by ``rates_for_phone`` (the meta
engine's pacing), WhatsApp-Web sessions by the one WWEBJS_MAX_MESSAGES_PER_SECOND. The API
route, the dashboard's phone card and ``bisnesgpt phones set`` show it from here.
"""

from __future__ import annotations

from dataclasses import dataclass

from bisnesgpt.config import Settings
from bisnesgpt.core.jsontypes import JsonObject
from bisnesgpt.engines.meta.pacing import rates_for_phone
from bisnesgpt.phones.service import PER_PHONE_RATE_TYPES, RATE_SETTING


@dataclass(frozen=True)
class RateLimit:
    """A phone's send rate (messages per second): its own, the default it falls back to, the one in effect.

    Cloud API and 360dialog phones each have their own (``per_phone``); WhatsApp-Web sessions
    share WWEBJS_MAX_MESSAGES_PER_SECOND (their per-phone limits are the anti-ban daily caps).
    """

    configured: float | None
    default: float
    effective: float
    per_phone: bool


def rate_limit(settings: Settings, connection_type: str | None, phone_settings: JsonObject) -> RateLimit:
    """What the phone's engine paces it by (given its ``phone_configs.settings``), read as the engine reads it."""
    if (connection_type or "wwebjs") not in PER_PHONE_RATE_TYPES:
        rate = settings.wwebjs_max_messages_per_second
        return RateLimit(None, rate, rate, per_phone=False)
    own = phone_settings.get(RATE_SETTING)
    configured = float(own) if isinstance(own, int | float) and own > 0 else None
    default = rates_for_phone(settings, {k: v for k, v in phone_settings.items() if k != RATE_SETTING})
    return RateLimit(configured, default.messages_per_second,
                     rates_for_phone(settings, phone_settings).messages_per_second, per_phone=True)

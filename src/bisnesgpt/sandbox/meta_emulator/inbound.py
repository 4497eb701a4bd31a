"""A user writes to a phone: ``POST /_emulator/inbound`` becomes an inbound message webhook.

The message is the caller's own ``message`` object when given (Meta's shape, passed on as
it is with ``from``, ``id``, ``timestamp`` and ``type`` filled in), else built from ``text``
or from ``media_base64`` (stored as media of the phone, so the product can download it).
The sender counts as having written, which opens the 24-hour window for replies.
"""

from __future__ import annotations

import base64
import binascii
import time
from dataclasses import dataclass
from typing import TypedDict

from bisnesgpt.core.jsontypes import JsonObject
from bisnesgpt.sandbox.jsonvalues import as_float
from bisnesgpt.sandbox.meta_emulator.messages import MEDIA_TYPES
from bisnesgpt.sandbox.meta_emulator.payloads import ChangeValue, envelope
from bisnesgpt.sandbox.meta_emulator.state import EmulatedPhone, EmulatorState, digits, new_wamid
from bisnesgpt.sandbox.meta_emulator.webhooks import WebhookSender


class InjectedInbound(TypedDict):
    """The answer of ``POST /_emulator/inbound``: the message as sent and its delivery number."""

    message: JsonObject
    delivery: int


@dataclass(eq=False)
class Inbound:
    """Builds injected inbound messages and schedules their webhooks."""

    state: EmulatorState
    sender: WebhookSender

    def inject(self, values: JsonObject) -> InjectedInbound:
        """Deliver one message from ``values["from"]`` to the phone; a ValueError says what is wrong."""
        phone = self.state.phones.get(str(values.get("phone_number_id") or ""))
        if phone is None:
            raise ValueError("unknown phone_number_id")
        sender = digits(values.get("from"))
        if len(sender) < 6:
            raise ValueError("'from' must be a phone number")
        given = values.get("message") or {}
        if not isinstance(given, dict):
            raise TypeError("message must be an object")
        message: JsonObject = dict(given)
        kind = str(message.get("type") or values.get("type") or "text")
        message.setdefault("from", sender)
        message.setdefault("id", new_wamid())
        message.setdefault("timestamp", str(int(time.time())))
        message["type"] = kind
        if kind not in message:
            message[kind] = self._content(phone, kind, values)
        self.state.set_written(phone.phone_number_id, sender, True)
        value: ChangeValue = {"contacts": [{"profile": {"name": str(values.get("name") or "Emulated User")},
                                            "wa_id": sender}],
                              "messages": [message]}
        delivery = self.sender.schedule(envelope(phone, value), delay_s=as_float(values.get("delay_ms") or 0) / 1000,
                                        kind="inbound", summary={"wamid": str(message["id"]), "from": sender})
        return {"message": message, "delivery": delivery}

    def _content(self, phone: EmulatedPhone, kind: str, values: JsonObject) -> JsonObject:
        """The message's ``text`` or media object, from the shorthand fields of the admin call."""
        if kind == "text":
            return {"body": str(values.get("text") or "")}
        if kind not in MEDIA_TYPES or values.get("media_base64") is None:
            raise ValueError(f"give the '{kind}' object (or text / media_base64)")
        try:
            content = base64.b64decode(str(values["media_base64"]), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("media_base64 is not base64") from exc
        mime = str(values.get("mime_type") or "application/octet-stream")
        media = self.state.store_media(phone.phone_number_id, content, mime)
        obj: JsonObject = {"id": media.id, "mime_type": mime, "sha256": media.sha256_b64}
        if values.get("caption"):
            obj["caption"] = str(values["caption"])
        if values.get("filename"):
            obj["filename"] = str(values["filename"])
        return obj

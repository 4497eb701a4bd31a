"""Which message types each engine can send, checked when a message is accepted.

The Cloud API cannot edit or delete a message; WhatsApp Web has no templates, interactive
or contacts messages. Such a message could only fail later, so the API refuses it at once
with ``422 UNSUPPORTED_MESSAGE_TYPE`` (as ``TEMPLATE_REQUIRED`` is refused), nothing stored.
The engines check again when sending (``engines.meta.messages``, ``engines.wwebjs.outgoing``);
a unit test keeps these sets equal to theirs.
"""

from __future__ import annotations

from bisnesgpt.core.errors import ValidationFailed

MEDIA_TYPES = frozenset({"image", "video", "audio", "document", "sticker"})
# What each engine (the route's process name) sends.
SENDABLE_TYPES: dict[str, frozenset[str]] = {
    "meta": frozenset({"text", *MEDIA_TYPES, "location", "contacts", "interactive", "template", "reaction"}),
    "wwebjs": frozenset({"text", *MEDIA_TYPES, "location", "reaction", "edit", "delete"}),
}
_ENGINE_NAMES = {"meta": "a Cloud API phone", "wwebjs": "a WhatsApp-Web phone"}
_INSTEAD = {"meta": "edits and deletes need a WhatsApp-Web phone",
            "wwebjs": "templates, interactive and contacts messages need a Cloud API phone"}


class UnsupportedMessageType(ValidationFailed):
    """The phone's engine cannot send this type of message at all."""


def check_sendable(process_name: str, message_type: str, phone_index: int) -> None:
    """Raise ``UnsupportedMessageType`` if the engine ``process_name`` cannot send ``message_type``."""
    sendable = SENDABLE_TYPES.get(process_name)
    if sendable is None or message_type in sendable:
        return
    raise UnsupportedMessageType(
        f"phone {phone_index} is {_ENGINE_NAMES[process_name]}, which cannot send '{message_type}' messages: "
        f"{_INSTEAD[process_name]} (choose another phoneIndex)",
        errors=[{"field": "type", "message": f"'{message_type}' is not supported on {_ENGINE_NAMES[process_name]}",
                 "type": "value_error"}],
        extra={"code": "UNSUPPORTED_MESSAGE_TYPE", "phoneIndex": phone_index, "messageType": message_type},
    )

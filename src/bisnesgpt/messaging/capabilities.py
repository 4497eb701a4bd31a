"""Which message types each engine can send, checked when a message is accepted.

The Cloud API cannot edit, delete or forward a message, nor send a poll; WhatsApp Web has no
templates or interactive messages. Such a message could only fail later, so the API refuses it at once
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
    "wwebjs": frozenset({"text", *MEDIA_TYPES, "location", "contacts", "poll", "status", "reaction", "edit",
                         "delete", "forward"}),
}
_ENGINE_NAMES = {"meta": "a Cloud API phone", "wwebjs": "a WhatsApp-Web phone"}
_INSTEAD = {"meta": "edits, deletes, forwards, polls and status posts need a WhatsApp-Web phone",
            "wwebjs": "templates and interactive messages need a Cloud API phone"}


# What only some engines do within a message: WhatsApp Web's mentions and pacing hints (the Cloud API has neither).
MENTION_ENGINES = frozenset({"wwebjs"})


class UnsupportedMessageType(ValidationFailed):
    """The phone's engine cannot send this type of message at all."""


def _refusal(error: type[ValidationFailed], process_name: str, phone_index: int, why: str, *, field: str,
             message: str, code: str, **extra: str) -> ValidationFailed:
    """``error`` for something phone ``phone_index``'s engine does not offer: the phone and its engine named,
    then ``why``; ``field`` and ``message`` as the field error, ``code`` (and ``extra``) as the problem's."""
    return error(
        f"phone {phone_index} is {_ENGINE_NAMES.get(process_name, process_name)}{why}",
        errors=[{"field": field, "message": message, "type": "value_error"}],
        extra={"code": code, "phoneIndex": phone_index, **extra},
    )


def check_sendable(process_name: str, message_type: str, phone_index: int) -> None:
    """Raise ``UnsupportedMessageType`` if the engine ``process_name`` cannot send ``message_type``."""
    sendable = SENDABLE_TYPES.get(process_name)
    if sendable is None or message_type in sendable:
        return
    raise _refusal(UnsupportedMessageType, process_name, phone_index,
                   f", which cannot send '{message_type}' messages: {_INSTEAD[process_name]} (choose another "
                   "phoneIndex)",
                   field="type", message=f"'{message_type}' is not supported on {_ENGINE_NAMES[process_name]}",
                   code="UNSUPPORTED_MESSAGE_TYPE", messageType=message_type)


# What each engine offers besides sending: groups are WhatsApp Web's (the Cloud API has none).
GROUP_ENGINES = frozenset({"wwebjs"})


class UnsupportedOperation(ValidationFailed):
    """The phone's engine does not offer this operation at all (e.g. groups on a Cloud API phone)."""


def check_groups(process_name: str, phone_index: int) -> None:
    """Raise ``UnsupportedOperation`` unless the engine ``process_name`` manages groups."""
    if process_name in GROUP_ENGINES:
        return
    raise _refusal(UnsupportedOperation, process_name, phone_index,
                   ", which has no groups: groups need a WhatsApp-Web phone (choose another phoneIndex)",
                   field="phoneIndex", message="groups are offered on WhatsApp-Web phones only", code="UNSUPPORTED")


def check_mentions(process_name: str, mentions: bool, phone_index: int) -> None:
    """Raise ``UnsupportedMessageType`` for mentions on an engine without them."""
    if not mentions or process_name in MENTION_ENGINES:
        return
    raise _refusal(UnsupportedMessageType, process_name, phone_index,
                   ", which cannot @-mention: leave out text.mentions or choose a WhatsApp-Web phone",
                   field="text.mentions", message="mentions need a WhatsApp-Web phone",
                   code="UNSUPPORTED_MESSAGE_TYPE", messageType="text")


def check_pacing(process_name: str, pacing: bool, phone_index: int) -> None:
    """Raise ``UnsupportedOperation`` for per-message pacing (``simulateTyping``, ``delayMs``) off WhatsApp Web."""
    if not pacing or process_name in MENTION_ENGINES:
        return
    raise _refusal(UnsupportedOperation, process_name, phone_index,
                   ": simulateTyping and delayMs are for WhatsApp-Web phones (the Cloud API paces itself); "
                   "leave them out",
                   field="simulateTyping", message="WhatsApp-Web phones only", code="UNSUPPORTED")

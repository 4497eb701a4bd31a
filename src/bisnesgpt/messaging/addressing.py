"""Recipients: phone numbers and chat ids normalised to one form before anything is stored.

A person is ``<E.164 digits>@c.us`` (``to`` = the digits); a group is ``<group id>@g.us``
(``to`` = the group id, ``recipient_type`` = ``group``). Accepted input: ``+60 12-345 6789``,
``0060123456789``, ``60123456789``, ``60123456789@c.us``, ``60123456789@s.whatsapp.net``,
``120363012345678901@g.us``. A number without its country code cannot be told apart from a
foreign one, so it is rejected rather than guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import phonenumbers

from bisnesgpt.core.errors import ValidationFailed

PERSON_SUFFIX = "@c.us"
GROUP_SUFFIX = "@g.us"
_PERSON_SUFFIXES = ("@c.us", "@s.whatsapp.net")
_SEPARATORS = re.compile(r"[\s\-().]")
_DIGITS = re.compile(r"^\d{7,15}$")
# Group ids: new style 18+ digits, old style "<creator digits>-<unix time>".
_GROUP_ID = re.compile(r"^\d{5,20}(-\d{5,12})?$")


# The chat a status (story) post goes to.
STATUS_CHAT = "status@broadcast"


@dataclass(frozen=True)
class Recipient:
    """Where a message goes: the stored chat id and the Cloud API ``to``."""

    chat_id: str
    to: str
    is_group: bool

    @property
    def recipient_type(self) -> Literal["individual", "group"]:
        """The Cloud API's ``recipient_type`` for this chat."""
        return "group" if self.is_group else "individual"


def invalid(field: str, message: str) -> ValidationFailed:
    """The 422 problem for one invalid request field."""
    return ValidationFailed(f"{field}: {message}", errors=[{"field": field, "message": message,
                                                            "type": "value_error"}])


def normalize_phone(raw: str, *, field: str = "to") -> str:
    """E.164 digits (no ``+``) of a phone number given with its country code."""
    text = _SEPARATORS.sub("", raw.strip())
    if text.startswith("+"):
        text = text[1:]
    elif text.startswith("00"):
        text = text[2:]
    if not _DIGITS.match(text):
        raise invalid(field, "must be a phone number with country code (7-15 digits, e.g. +60123456789)")
    if text.startswith("0"):
        raise invalid(field, f"{text} starts with 0, a number without its country code: give it with its country "
                             f"code instead of the 0 (e.g. 60{text[1:]} in Malaysia)")
    try:
        number = phonenumbers.parse("+" + text, None)
    except phonenumbers.NumberParseException as exc:
        unknown = exc.error_type == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE
        raise invalid(field, f"{text} {'does not start with a known country code' if unknown else 'is not a number'}"
                             ": give it with its country code, e.g. 60123456789") from exc
    if not phonenumbers.is_possible_number(number):
        raise invalid(field, "not a possible phone number for its country code (include the country code)")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)[1:]


def normalize_recipient(raw: str, *, field: str = "chatId") -> Recipient:
    """A chat id or phone number → ``Recipient`` (422 problem naming ``field`` if invalid)."""
    text = raw.strip()
    if len(text) > 64 or not text:
        raise invalid(field, "must be a phone number or a chat id (at most 64 characters)")
    lowered = text.lower()
    if lowered.endswith(GROUP_SUFFIX):
        group_id = text[: -len(GROUP_SUFFIX)]
        if not _GROUP_ID.match(group_id):
            raise invalid(field, "not a valid group chat id (expected <digits>@g.us)")
        return Recipient(group_id + GROUP_SUFFIX, group_id, True)
    for suffix in _PERSON_SUFFIXES:
        if lowered.endswith(suffix):
            text = text[: -len(suffix)]
            break
    if "@" in text:
        raise invalid(field, "unknown chat id suffix (expected @c.us, @s.whatsapp.net or @g.us)")
    digits = normalize_phone(text, field=field)
    return Recipient(digits + PERSON_SUFFIX, digits, False)


def chat_of_wweb_id(external_id: str) -> Recipient | None:
    """The chat named inside a WhatsApp-Web serialized id (``true_60123@c.us_3EB0…``), if any."""
    parts = external_id.split("_")
    if len(parts) >= 3 and parts[0] in ("true", "false"):
        try:
            return normalize_recipient(parts[1])
        except ValidationFailed:
            return None
    return None

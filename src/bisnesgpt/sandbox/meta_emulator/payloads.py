"""Webhook payloads as Meta builds them: the envelope around a change, statuses, contacts.

The shapes follow Meta's webhook examples (``spec/``, ``POST /whatsapp/webhooks``); inbound
messages injected through the admin API are the caller's own objects and pass through as
they are.
"""

from __future__ import annotations

import time
from typing import Literal, NotRequired, TypedDict

from bisnesgpt.core.jsontypes import JsonObject
from bisnesgpt.sandbox.meta_emulator.graph_errors import StatusError, status_error
from bisnesgpt.sandbox.meta_emulator.state import Billing, EmulatedPhone

StatusName = Literal["sent", "delivered", "read", "failed"]


class Metadata(TypedDict):
    """Which business phone a change is about."""

    display_phone_number: str
    phone_number_id: str


class Conversation(TypedDict):
    """The conversation a sent/delivered status opened or continued (Meta's pricing unit)."""

    id: str
    expiration_timestamp: str
    origin: dict[str, str]


class Pricing(TypedDict):
    """How Meta bills the message: per-message pricing (PMP); a free-form reply inside the
    customer-service window is a free ``service`` message, a template is billed in its category."""

    billable: bool
    pricing_model: str
    category: str


class Status(TypedDict):
    """One entry of a change's ``statuses[]``."""

    id: str
    status: StatusName
    timestamp: str
    recipient_id: str
    conversation: NotRequired[Conversation]
    pricing: NotRequired[Pricing]
    errors: NotRequired[list[StatusError]]


class ContactProfile(TypedDict):
    """The profile name WhatsApp shows for a user who wrote."""

    name: str


class Contact(TypedDict):
    """One entry of an inbound change's ``contacts[]``."""

    profile: ContactProfile
    wa_id: str


class ChangeValue(TypedDict, total=False):
    """A change's ``value``: statuses of sent messages, or messages a user sent (with the contacts)."""

    messaging_product: str
    metadata: Metadata
    statuses: list[Status]
    contacts: list[Contact]
    messages: list[JsonObject]


class Change(TypedDict):
    """One change of an entry (``field`` is ``messages`` for both statuses and inbound)."""

    value: ChangeValue
    field: str


class WebhookEntry(TypedDict):
    """The changes of one WhatsApp Business Account."""

    id: str
    changes: list[Change]


class WebhookPayload(TypedDict):
    """A webhook body as Meta POSTs it."""

    object: str
    entry: list[WebhookEntry]


def envelope(phone: EmulatedPhone, value: ChangeValue, field_name: str = "messages") -> WebhookPayload:
    """A webhook payload around one change ``value`` for ``phone``."""
    value = {"messaging_product": "whatsapp",
             "metadata": {"display_phone_number": phone.display_phone_number,
                          "phone_number_id": phone.phone_number_id},
             **value}
    return {"object": "whatsapp_business_account",
            "entry": [{"id": phone.waba_id, "changes": [{"value": value, "field": field_name}]}]}


def status_value(wamid: str, status: StatusName, wa_id: str, *, error_code: int | None = None,
                 error_details: str | None = None, billing: Billing | None = None,
                 at: float | None = None) -> ChangeValue:
    """The change value of one status of ``wamid`` at ``at`` (its conversation and pricing once sent or
    delivered, errors if failed)."""
    moment = time.time() if at is None else at
    entry: Status = {"id": wamid, "status": status, "timestamp": str(int(moment)), "recipient_id": wa_id}
    if status in ("sent", "delivered") and billing is not None:
        entry["conversation"] = {"id": billing.conversation_id, "expiration_timestamp": str(billing.expiration),
                                 "origin": {"type": billing.category}}
        entry["pricing"] = {"billable": billing.billable, "pricing_model": "PMP", "category": billing.category}
    if status == "failed" and error_code is not None:
        entry["errors"] = [status_error(error_code, error_details)]
    return {"statuses": [entry]}

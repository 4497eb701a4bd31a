"""Send jobs in either format: ours, and the original Node router's.

Ours is ``{messageId, companyId, phoneIndex}`` (the message is already stored). The Node
server's is ``{companyId, phoneIndex, messageData: {to, message, type, mediaUrl}}``: the
worker records it in ``messages`` first, so a blue-green migration from the Node server
loses nothing. Node BullMQ numbers jobs per queue (1, 2, 3 … in each), so a Node job's id
is no message id: the message gets one of its own and keeps the job id as its
``external_ref``, the key that makes a second run of the job find its own message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, TypedDict

from bisnesgpt.core.ids import new_message_id
from bisnesgpt.core.jsontypes import JsonObject, JsonValue
from bisnesgpt.messaging import store
from bisnesgpt.messaging.queues import QueueSpec


class SendJobData(TypedDict):
    """Our send job's data: the stored message it is about."""

    messageId: str
    companyId: str
    phoneIndex: int


class AboutAMessage(Protocol):
    """Anything that names a stored message (a ``MessageRecord``, the reconciler's rows)."""

    @property
    def message_id(self) -> str:
        """Our id of the message."""

    @property
    def company_id(self) -> str:
        """The company it belongs to."""

    @property
    def phone_index(self) -> int:
        """The company's phone that sends it."""


def send_job_data(message: AboutAMessage) -> SendJobData:
    """The data of the job that sends ``message`` (the API's enqueue and the outbox reconciler's)."""
    return {"messageId": message.message_id, "companyId": message.company_id, "phoneIndex": message.phone_index}


@dataclass(frozen=True)
class JobRef:
    """Which message a job is about."""

    message_id: str
    company_id: str | None
    phone_index: int | None
    node_format: bool
    external_ref: str | None = None  # a Node-format job's BullMQ id (unique within its queue only)


def parse_job_data(job_id: str | None, data: JsonObject) -> JobRef:
    """Our format or the original Node router's; raises ValueError on anything else."""
    if "messageId" in data:
        company_id, phone_index = data.get("companyId"), data.get("phoneIndex")
        return JobRef(str(data["messageId"]), None if company_id is None else str(company_id),
                      phone_index if isinstance(phone_index, int) else None, False)
    if "companyId" in data and isinstance(data.get("messageData"), dict):
        return JobRef(new_message_id(), str(data["companyId"]), as_int(data.get("phoneIndex") or 0), True,
                      None if job_id is None else str(job_id))
    raise ValueError(f"unrecognised job data keys: {sorted(data)}")


def node_job_to_message(ref: JobRef, data: JsonObject, spec: QueueSpec) -> store.NewOutboundMessage:
    """Map ``{companyId, phoneIndex, messageData:{to, message, …}}`` to a message row."""
    message_data = data["messageData"]
    if not isinstance(message_data, dict):
        raise TypeError("Node job has no messageData object")
    to = str(message_data.get("to") or message_data.get("chatId") or "")
    digits = "".join(ch for ch in to.split("@", 1)[0] if ch.isdigit())
    if not digits:
        raise ValueError("Node job messageData has no recipient ('to')")
    kind = str(message_data.get("type") or "text")
    message = message_data.get("message")
    text = message if isinstance(message, str) else None
    payload: JsonObject = {"messaging_product": "whatsapp", "to": digits, "type": kind}
    media_url: str | None = None
    if kind == "text":
        payload["text"] = {"body": text or ""}
    else:
        link = message_data.get("mediaUrl") or message_data.get("url")
        if link is not None and not isinstance(link, str):
            raise TypeError(f"Node job media URL is not text: {link!r}")
        media_url = link
        payload[kind] = {"link": media_url, **({"caption": text} if text else {})}
    return store.NewOutboundMessage(
        message_id=ref.message_id,
        company_id=str(ref.company_id),
        phone_index=int(ref.phone_index or 0),
        provider=spec.process_name,
        connection_type=None,
        chat_id=f"{digits}@c.us",
        message_type=kind,
        payload=payload,
        queue_name=spec.name,
        process_name=spec.process_name,
        content=text,
        media_url=media_url,
        raw=data,
        source="node-job",
        external_ref=ref.external_ref,
    )


def as_int(value: JsonValue) -> int:
    """``int(value)`` for a number read from JSON (job data, a published change); raises like ``int()``."""
    if isinstance(value, str | int | float):
        return int(value)
    raise TypeError(f"int() argument must be a string or a number, not {type(value).__name__!r}")

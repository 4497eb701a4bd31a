"""Send jobs in either format: ours, and the original Node router's.

Ours is ``{messageId, companyId, phoneIndex}`` (the message is already stored). The Node
server's is ``{companyId, phoneIndex, messageData: {to, message, type, mediaUrl}}``: the
worker records it in ``messages`` first, so a blue-green migration from the Node server
loses nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bisnesgpt.core.ids import new_message_id
from bisnesgpt.messaging import store
from bisnesgpt.messaging.queues import QueueSpec


@dataclass(frozen=True)
class JobRef:
    """Which message a job is about."""

    message_id: str
    company_id: str | None
    phone_index: int | None
    node_format: bool


def parse_job_data(job_id: str | None, data: dict[str, Any]) -> JobRef:
    """Our format or the original Node router's; raises ValueError on anything else."""
    if "messageId" in data:
        return JobRef(str(data["messageId"]), data.get("companyId"), data.get("phoneIndex"), False)
    if "companyId" in data and isinstance(data.get("messageData"), dict):
        return JobRef(str(job_id or new_message_id()), str(data["companyId"]),
                      int(data.get("phoneIndex") or 0), True)
    raise ValueError(f"unrecognised job data keys: {sorted(data)}")


def node_job_to_message(ref: JobRef, data: dict[str, Any], spec: QueueSpec) -> store.NewOutboundMessage:
    """Map ``{companyId, phoneIndex, messageData:{to, message, …}}`` to a message row."""
    message_data: dict[str, Any] = data["messageData"]
    to = str(message_data.get("to") or message_data.get("chatId") or "")
    digits = "".join(ch for ch in to.split("@", 1)[0] if ch.isdigit())
    if not digits:
        raise ValueError("Node job messageData has no recipient ('to')")
    kind = str(message_data.get("type") or "text")
    text = message_data.get("message") if isinstance(message_data.get("message"), str) else None
    payload: dict[str, Any] = {"messaging_product": "whatsapp", "to": digits, "type": kind}
    media_url: str | None = None
    if kind == "text":
        payload["text"] = {"body": text or ""}
    else:
        media_url = message_data.get("mediaUrl") or message_data.get("url")
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
    )

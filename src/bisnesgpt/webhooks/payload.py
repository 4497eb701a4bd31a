"""The one canonical JSON body of an event, whichever engine produced it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TypedDict

from bisnesgpt.core.jsontypes import JsonObject


class EventDocument(TypedDict):
    """The body a receiver gets: the event's envelope and its ``data`` (``data.raw`` only on request)."""

    id: str
    type: str
    created_at: str
    company_id: str
    phone_index: int | None
    data: JsonObject


def iso_utc(moment: datetime) -> str:
    """``2024-05-01T12:34:56.789012Z`` (UTC, microseconds: sortable and exact)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_document(*, event_id: str, event_type: str, created_at: datetime, company_id: str,
                   phone_index: int | None, data: JsonObject, raw: JsonObject | None,
                   include_raw: bool) -> EventDocument:
    """``{id, type, created_at, company_id, phone_index, data}``; ``data.raw`` only on request."""
    body_data = dict(data)
    body_data.pop("raw", None)
    if include_raw and raw is not None:
        body_data["raw"] = raw
    return {
        "id": event_id,
        "type": event_type,
        "created_at": iso_utc(created_at),
        "company_id": company_id,
        "phone_index": phone_index,
        "data": body_data,
    }


def encode_body(document: EventDocument) -> bytes:
    """Compact UTF-8 JSON: the exact bytes that are signed and sent."""
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8")

"""What needs an operator now: the attention strip every dashboard page shows.

Three kinds of item, each with where it can be fixed:

* ``phone`` — a phone that is not connected: disconnected / error, paused by the Cloud API
  (368 / 131031, until a time), or a WhatsApp-Web session waiting to be linked (QR or
  pairing code). A session an operator stopped on purpose is not listed.
* ``backlog`` — a phone whose oldest unfinished outbound message has waited longer than
  ``DASHBOARD_BACKLOG_SECONDS``: how many wait, the oldest one's age, and why — the session
  is not ready, the phone is paused, the queue is paused, or (otherwise) the phone's rate limit.
* ``webhook`` — a tenant webhook endpoint in a failure streak, or disabled after one.

A company key sees its own company's items only (the same scope as every dashboard route).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal
from urllib.parse import quote

from typing_extensions import TypedDict

from bisnesgpt.api.schemas.common import iso
from bisnesgpt.dashboard import phones
from bisnesgpt.db.queries import load_queries
from bisnesgpt.messaging.queues import queue_for_connection_type
from bisnesgpt.processes.context import ProcessContext

SQL = load_queries("bisnesgpt.dashboard")

AttentionKind = Literal["phone", "backlog", "webhook"]
Severity = Literal["warning", "error"]
# Phone statuses that need someone, and how bad they are.
PHONE_SEVERITY: dict[str, Severity] = {"disconnected": "error", "error": "error", "paused": "error",
                                       "qr": "warning", "pairing_code": "warning"}


class AttentionItem(TypedDict):
    """One thing that needs an operator, and the page where it can be fixed."""

    kind: AttentionKind
    severity: Severity
    companyId: str
    phoneIndex: int | None
    title: str
    detail: str
    link: str
    since: str | None


class Attention(TypedDict):
    """Everything that needs an operator now, worst first (``status``: ``attention`` when any)."""

    status: Literal["ok", "attention"]
    items: list[AttentionItem]


def phone_link(company_id: str, phone_index: int) -> str:
    """The phones page, filtered to the company, with the phone's card to look at."""
    return f"/dashboard/phones?company={quote(company_id)}#phone-{quote(company_id)}-{phone_index}"


def _ago(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def _phone_item(card: phones.PhoneCard) -> AttentionItem | None:
    severity = PHONE_SEVERITY.get(card["status"])
    if severity is None or (card["kind"] == "wwebjs" and card.get("desiredState") == "stopped"):
        return None
    name = f"{card['companyName']} · phone {card['phoneIndex']}"
    if card["status"] == "paused":
        until = card["pausedUntil"]
        title = f"{name}: sending paused" + (f" until {until[11:16]} UTC" if until else "")
    elif card["status"] in ("qr", "pairing_code"):
        title = f"{name}: waiting to be linked ({card['status'].replace('_', ' ')})"
    else:
        title = f"{name}: {card['status']}"
    reason = card["reason"]
    return {"kind": "phone", "severity": severity, "companyId": card["companyId"], "phoneIndex": card["phoneIndex"],
            "title": title, "detail": str(reason) if reason else "", "since": card["statusUpdatedAt"],
            "link": phone_link(card["companyId"], card["phoneIndex"])}


def _backlog_reason(card: phones.PhoneCard | None, paused_queues: set[str]) -> str:
    if card is None:
        return "the phone is not configured any more"
    if card["status"] == "paused":
        return "phone paused"
    if card["kind"] == "wwebjs" and card["status"] != "ready":
        return f"session not ready ({card['status'].replace('_', ' ')})"
    if queue_for_connection_type(card["connectionType"]).name in paused_queues:
        return "queue paused"
    return "rate limit"


async def attention(ctx: ProcessContext, company_id: str | None, *, paused_queues: set[str]) -> Attention:
    """Every item for company ``company_id`` (None: every company), errors first, oldest first."""
    cards, _counts = await phones.list_phones(ctx.db, company_id)
    by_phone = {(c["companyId"], c["phoneIndex"]): c for c in cards}
    items: list[AttentionItem] = [item for item in map(_phone_item, cards) if item is not None]
    now = datetime.now(UTC)
    for row in await ctx.db.fetch(SQL.attention_backlogs, company_id, ctx.settings.dashboard_backlog_seconds):
        card = by_phone.get((row["company_id"], row["phone_index"]))
        reason = _backlog_reason(card, paused_queues)
        name = f"{card['companyName'] if card else row['company_id']} · phone {row['phone_index']}"
        age = (now - row["oldest"]).total_seconds()
        items.append({"kind": "backlog", "severity": "error" if reason != "rate limit" else "warning",
                      "companyId": row["company_id"], "phoneIndex": row["phone_index"],
                      "title": f"{name}: {row['waiting']} message(s) waiting, the oldest for {_ago(age)}",
                      "detail": reason, "since": iso(row["oldest"]),
                      "link": "/dashboard/queues" if reason == "queue paused"
                      else phone_link(row["company_id"], row["phone_index"])})
    for row in await ctx.db.fetch(SQL.attention_webhooks, company_id):
        disabled = not row["enabled"]
        title = (f"webhook {row['url']}: disabled after failing" if disabled
                 else f"webhook {row['url']}: {row['consecutive_failures']} failed deliveries in a row")
        items.append({"kind": "webhook", "severity": "error", "companyId": row["company_id"], "phoneIndex": None,
                      "title": title,
                      "detail": f"endpoint {row['id']}: " + (row["disabled_reason"] or "deliveries are being retried"),
                      "since": iso(row["failing_since"] or row["disabled_at"]),
                      # The webhooks page tests, re-enables or removes it.
                      "link": f"/dashboard/webhooks?company={row['company_id']}#webhook-{row['id']}"})
    items.sort(key=lambda i: (i["severity"] != "error", i["since"] or ""))
    return {"status": "attention" if items else "ok", "items": items}

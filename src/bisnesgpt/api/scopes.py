"""What each authenticated route needs of a scoped API key: one table for the whole API.

A company key may be narrowed to some scopes (``tenancy.store.SCOPES``) and some of its
company's phones. Every route a key can call is listed here with the scope it needs and where
it names the phone it acts on:

* ``path`` / ``query``: the phone index is the ``phone_index``/``phoneIndex`` path or query
  parameter (absent: phone 0, as the routes default);
* ``query_or_every``: an optional ``phoneIndex`` filter, absent meaning every phone — a
  phone-limited key must name one of its phones;
* ``body``: the route itself checks the phone its body names (sends, phone onboarding) or
  the phone of the message it reads;
* ``every``: the route spans every phone of the company (lists, webhooks, usage) — refused
  to a phone-limited key;
* ``none``: not about a phone (media by id: unguessable, and only seen through messages).

A key with every scope and no phone limit (every key made before scopes existed) passes
without a look at the table; a limited key calling a route missing from it is refused (the
operator-only routes, and the audit log, which only a key without limits reads)
(``tests/security/test_scoped_keys.py`` compares the table with the OpenAPI document).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bisnesgpt.tenancy.store import Scope

PhoneRule = Literal["path", "query", "query_or_every", "body", "every", "none"]


@dataclass(frozen=True)
class RouteRule:
    """What a route needs of a limited key: a scope, and how the phone it acts on is found."""

    scope: Scope
    phone: PhoneRule


SEND = RouteRule("messages:send", "body")
READ_CHAT = RouteRule("messages:read", "query")
ACT_ON_CHAT = RouteRule("messages:send", "query")
SESSION = RouteRule("sessions:manage", "path")
WEBHOOKS = RouteRule("webhooks:manage", "every")
# Groups: reading what the phone's groups are, and changing them (create, join, members, settings).
READ_GROUPS = RouteRule("messages:read", "query")
MANAGE_GROUPS = RouteRule("messages:send", "query")

_V2 = "/api/v2/messages"
_SESSION = "/api/sessions/{company_id}/{phone_index}"
_HOOK = "/api/v1/webhooks/{endpoint_id}"

ROUTE_RULES: dict[tuple[str, str], RouteRule] = {
    # sending (and changing what was sent)
    **{("POST", f"{_V2}/{kind}/{{companyId}}/{{chatId}}"): SEND
       for kind in ("text", "image", "video", "audio", "document", "template")},
    ("PUT", f"{_V2}/{{companyId}}/{{chatId}}/{{messageId}}"): SEND,
    ("DELETE", f"{_V2}/{{companyId}}/{{chatId}}/{{messageId}}"): SEND,
    ("POST", "/api/messages/react/{companyId}/{messageId}"): SEND,
    ("POST", "/api/v1/messages"): SEND,
    ("POST", "/api/v1/media"): RouteRule("messages:send", "none"),
    # reading
    ("GET", "/api/v1/messages/{messageId}"): RouteRule("messages:read", "body"),
    ("GET", "/api/v1/messages"): RouteRule("messages:read", "query_or_every"),
    ("GET", "/api/v1/media/{mediaId}"): RouteRule("messages:read", "none"),
    ("GET", "/api/v1/media/{mediaId}/info"): RouteRule("messages:read", "none"),
    ("GET", "/api/v1/usage"): RouteRule("messages:read", "every"),
    # conversations
    ("GET", "/api/v1/chats"): READ_CHAT,
    ("GET", "/api/v1/chats/{chatId}/messages"): READ_CHAT,
    ("POST", "/api/v1/chats/{chatId}/read"): ACT_ON_CHAT,
    ("POST", "/api/v1/chats/{chatId}/typing"): ACT_ON_CHAT,
    ("GET", "/api/v1/contacts"): READ_CHAT,
    ("POST", "/api/v1/contacts/check"): READ_CHAT,
    # groups (WhatsApp Web)
    ("GET", "/api/v1/groups"): READ_GROUPS,
    ("GET", "/api/v1/groups/{groupId}"): READ_GROUPS,
    ("GET", "/api/v1/groups/{groupId}/invite"): READ_GROUPS,
    ("POST", "/api/v1/groups"): MANAGE_GROUPS,
    ("POST", "/api/v1/groups/join"): MANAGE_GROUPS,
    ("PATCH", "/api/v1/groups/{groupId}"): MANAGE_GROUPS,
    ("POST", "/api/v1/groups/{groupId}/participants"): MANAGE_GROUPS,
    ("POST", "/api/v1/groups/{groupId}/invite/revoke"): MANAGE_GROUPS,
    ("POST", "/api/v1/groups/{groupId}/leave"): MANAGE_GROUPS,
    ("GET", "/api/v1/groups/{groupId}/picture"): READ_GROUPS,
    ("PUT", "/api/v1/groups/{groupId}/picture"): MANAGE_GROUPS,
    ("DELETE", "/api/v1/groups/{groupId}/picture"): MANAGE_GROUPS,
    # phones and WhatsApp-Web sessions
    ("POST", "/api/whatsapp/meta-direct/connect"): RouteRule("sessions:manage", "body"),
    ("POST", "/api/whatsapp/360dialog/onboard"): RouteRule("sessions:manage", "body"),
    ("GET", "/api/whatsapp/config/{companyId}"): RouteRule("sessions:manage", "every"),
    ("DELETE", "/api/whatsapp/config/{companyId}/{phoneIndex}"): RouteRule("sessions:manage", "path"),
    ("PUT", "/api/whatsapp/config/{companyId}/{phoneIndex}/rate-limit"): RouteRule("sessions:manage", "path"),
    ("GET", "/api/bot-status/{companyId}"): RouteRule("sessions:manage", "every"),
    ("GET", "/api/v1/phones/{phoneIndex}"): RouteRule("messages:read", "path"),
    ("GET", "/api/sessions/{company_id}"): RouteRule("sessions:manage", "every"),
    ("GET", "/api/sessions/{company_id}/events"): RouteRule("sessions:manage", "every"),
    ("GET", _SESSION): SESSION,
    ("GET", f"{_SESSION}/qr"): SESSION,
    ("POST", f"{_SESSION}/pairing-code"): SESSION,
    ("GET", f"{_SESSION}/commands/{{command_id}}"): SESSION,
    ("POST", f"{_SESSION}/{{action}}"): SESSION,
    ("GET", f"{_SESSION}/antiban"): SESSION,
    ("PATCH", f"{_SESSION}/antiban"): SESSION,
    ("PATCH", "/api/sessions/{company_id}/antiban"): RouteRule("sessions:manage", "every"),
    # webhooks
    ("POST", "/api/v1/webhooks"): WEBHOOKS,
    ("GET", "/api/v1/webhooks"): WEBHOOKS,
    ("GET", _HOOK): WEBHOOKS,
    ("PATCH", _HOOK): WEBHOOKS,
    ("DELETE", _HOOK): WEBHOOKS,
    ("POST", f"{_HOOK}/rotate-secret"): WEBHOOKS,
    ("GET", f"{_HOOK}/deliveries"): WEBHOOKS,
    ("GET", f"{_HOOK}/deliveries/{{delivery_id}}"): WEBHOOKS,
    ("POST", f"{_HOOK}/deliveries/retry-dead"): WEBHOOKS,
    ("POST", f"{_HOOK}/deliveries/{{delivery_id}}/retry"): WEBHOOKS,
    ("POST", f"{_HOOK}/replay"): WEBHOOKS,
}
# The live event stream (a WebSocket, outside the table's HTTP routes) carries every
# message and session event of the company.
EVENT_STREAM = RouteRule("messages:read", "every")

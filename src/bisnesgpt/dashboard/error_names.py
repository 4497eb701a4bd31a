"""Human names for the provider error codes the console shows: the Cloud API's and the WhatsApp-Web engine's.

One table: the Cloud API's (Graph) numeric codes as Meta documents them, and the codes the
WhatsApp-Web engine stores on a failed message (``NOT_ON_WHATSAPP``, ``DAILY_LIMIT_REACHED``
…). The pages read it once (``GET /dashboard/api/error-names``) and put the name beside
every code they show: failed jobs, message lists and timelines, phone status.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from typing_extensions import TypedDict

from bisnesgpt.dashboard.auth import Caller, dashboard_caller

Who = Annotated[Caller, Depends(dashboard_caller)]

CLOUD_API_NAMES: dict[str, str] = {
    "0": "authentication failed",
    "1": "API unknown error (temporary)",
    "2": "API service temporarily unavailable",
    "3": "capability or permission missing",
    "4": "app rate limit",
    "10": "permission denied",
    "17": "user request limit",
    "32": "page request limit",
    "100": "invalid parameter",
    "190": "access token expired/invalid",
    "200": "permission not granted",
    "368": "temporarily blocked for policy",
    "613": "calls over the rate limit",
    "80007": "WABA rate limit",
    "130429": "throughput limit",
    "131000": "something went wrong (temporary)",
    "131005": "access denied",
    "131008": "required parameter missing",
    "131009": "parameter value invalid",
    "131016": "service unavailable",
    "131021": "sender and recipient are the same",
    "131026": "not deliverable",
    "131031": "account locked",
    "131037": "display name not approved",
    "131042": "payment problem",
    "131045": "phone number not registered",
    "131047": "re-engagement window closed (24 h)",
    "131049": "not delivered to keep engagement healthy",
    "131051": "message type not supported",
    "131052": "media download error",
    "131053": "media upload error",
    "131056": "pair rate limit",
    "131057": "account in maintenance",
    "132000": "template parameter count mismatch",
    "132001": "template does not exist",
    "133000": "incomplete deregistration",
    "133004": "server temporarily unavailable",
    "133010": "phone number not registered",
    "135000": "generic user error",
}

WHATSAPP_WEB_NAMES: dict[str, str] = {
    "NOT_ON_WHATSAPP": "number not on WhatsApp",
    "RECIPIENT_NOT_ON_WHATSAPP": "number not on WhatsApp",
    "DAILY_LIMIT_REACHED": "daily sending cap reached",
    "MEDIA_URL_REFUSED": "media URL refused (not allowed)",
    "MEDIA_DOWNLOAD_FAILED": "media could not be downloaded",
    "MEDIA_TOO_LARGE": "media too large",
    "MEDIA_NOT_FOUND": "media not found",
    "MEDIA_ID_UNSUPPORTED": "media id not usable on WhatsApp Web",
    "MEDIA_STORE_UNAVAILABLE": "media store unavailable",
    "INVALID_PAYLOAD": "message invalid",
    "UNSUPPORTED_MESSAGE_TYPE": "message type not supported",
    "SEND_TIMEOUT": "WhatsApp did not confirm in time",
    "SESSION_NOT_CONNECTED": "session not connected",
    "CONNECT_FAILED": "session cannot reach WhatsApp",
    "DRIVER_ERROR": "session driver error",
    "BAD_CHAT_REQUEST": "chat request refused",
    "BAD_GROUP_REQUEST": "group request refused",
    "PAIRING_UNAVAILABLE": "pairing code unavailable",
    "STATUS_RECIPIENTS_UNSUPPORTED": "status recipients not supported",
    "PICTURE_REMOVAL_UNSUPPORTED": "picture removal not supported",
    "NOT_IN_GROUP": "not a member of the group",
    "NOT_GROUP_ADMIN": "not an admin of the group",
    "GROUP_NOT_FOUND": "group not found",
    "INVITE_INVALID": "invite link invalid or revoked",
}

# Codes the gateway itself stores on a failed message, whichever the engine.
GATEWAY_NAMES: dict[str, str] = {
    "NETWORK": "provider unreachable",
    "TEMPLATE_REQUIRED": "outside the 24 h window: a template is needed",
    "PARTNER_REMOVED": "360dialog partner removed the number",
    "PHONE_NOT_CONFIGURED": "phone not configured",
    "PHONE_NOT_FOUND": "phone not found",
    "COMPANY_NOT_FOUND": "company not found",
    "MESSAGE_NOT_FOUND": "message not found",
    "WRONG_ENGINE": "sent to the wrong engine",
    "JOB_ID_COLLISION": "queue job id collision",
    "INTERNAL": "internal error",
}

ERROR_NAMES: dict[str, str] = {**CLOUD_API_NAMES, **WHATSAPP_WEB_NAMES, **GATEWAY_NAMES}


def error_name(code: str | int | None) -> str | None:
    """The human name of a provider error code (``131047``, ``"NOT_ON_WHATSAPP"``); None when unknown."""
    if code is None:
        return None
    return ERROR_NAMES.get(str(code).strip().upper())


class ErrorNames(TypedDict):
    """Every known provider error code and its name."""

    names: dict[str, str]


def error_name_routes(router: APIRouter) -> None:
    """``GET /dashboard/api/error-names`` on ``router`` (any signed-in caller: the table holds no tenant data)."""

    @router.get("/error-names", summary="The human names of provider error codes (Cloud API and WhatsApp Web)",
                responses={200: {"content": {"application/json": {"example": {"names": {
                    "131047": "re-engagement window closed (24 h)", "NOT_ON_WHATSAPP": "number not on WhatsApp"}}}}}})
    async def names(_who: Who) -> ErrorNames:
        return {"names": ERROR_NAMES}

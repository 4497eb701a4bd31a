"""Graph API errors as the Cloud API answers them (``GraphAPIError`` envelope) and as
status webhooks carry them (``errors[]`` of a ``failed`` status)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import NotRequired, TypedDict


@dataclass(frozen=True)
class GraphErrorSpec:
    """How the Cloud API answers one error code: HTTP status, title, default details, exception type."""

    http_status: int
    title: str
    details: str
    type: str = "OAuthException"


ERRORS: dict[int, GraphErrorSpec] = {
    0: GraphErrorSpec(401, "AuthException", "We were unable to authenticate the app user."),
    4: GraphErrorSpec(400, "Application request limit reached", "Too many API calls for this app."),
    100: GraphErrorSpec(400, "Invalid parameter", "The request included invalid or unsupported parameters."),
    131009: GraphErrorSpec(400, "Parameter value is not valid", "One or more parameter values are invalid."),
    190: GraphErrorSpec(401, "Invalid OAuth access token", "The access token has expired or is invalid."),
    368: GraphErrorSpec(400, "Temporarily blocked for policies violations",
                        "The WhatsApp Business Account is restricted from messaging users."),
    2500: GraphErrorSpec(400, "Unknown path components", "The request path is not part of the Cloud API."),
    80007: GraphErrorSpec(400, "Rate limit issues", "The WhatsApp Business Account has reached its rate limit."),
    130429: GraphErrorSpec(400, "Rate limit hit", "Cloud API message throughput has been reached."),
    131000: GraphErrorSpec(500, "Something went wrong", "Message failed to send due to an unknown error.",
                           "GraphMethodException"),
    131008: GraphErrorSpec(400, "Required parameter is missing", "The request is missing a required parameter."),
    131016: GraphErrorSpec(503, "Service unavailable", "A service is temporarily unavailable.",
                           "GraphMethodException"),
    131026: GraphErrorSpec(400, "Message undeliverable", "Unable to deliver message."),
    131031: GraphErrorSpec(400, "Business Account locked", "The WhatsApp Business Account has been locked."),
    131047: GraphErrorSpec(400, "Re-engagement message",
                           "Message failed to send because more than 24 hours have passed since the customer "
                           "last replied to this number."),
    131051: GraphErrorSpec(400, "Unsupported message type", "Message type is not currently supported."),
    131053: GraphErrorSpec(400, "Media upload error", "Unable to upload the media used in the message."),
    131056: GraphErrorSpec(400, "(Business Account, Consumer Account) pair rate limit hit",
                           "Message failed to send because there were too many messages sent from this phone "
                           "number to the same phone number in a short period of time."),
    131057: GraphErrorSpec(503, "Account in maintenance mode", "The business account is in maintenance mode.",
                           "GraphMethodException"),
    132001: GraphErrorSpec(404, "Template name does not exist in the translation",
                           "The template does not exist in the specified language or has not been approved."),
    133004: GraphErrorSpec(503, "Server temporarily unavailable", "The server is temporarily unavailable.",
                           "GraphMethodException"),
}
UNKNOWN = GraphErrorSpec(400, "Error", "An error occurred.")


class ErrorData(TypedDict):
    """``error_data`` of an error: the details sentence (and, in HTTP answers, the product)."""

    messaging_product: NotRequired[str]
    details: str


class GraphError(TypedDict):
    """The ``error`` object of a ``GraphAPIError`` answer."""

    message: str
    type: str
    code: int
    error_data: NotRequired[ErrorData]
    fbtrace_id: str
    error_subcode: NotRequired[int]
    is_transient: NotRequired[bool]


class GraphErrorBody(TypedDict):
    """The body of every Graph error answer."""

    error: GraphError


class StatusError(TypedDict):
    """One entry of a ``failed`` status webhook's ``errors[]``."""

    code: int
    title: str
    message: str
    error_data: ErrorData
    href: str


def fbtrace_id() -> str:
    """A trace id shaped like Graph's (Meta support asks for it; here it only has to look right)."""
    return "A" + secrets.token_urlsafe(16)


def spec_for(code: int) -> GraphErrorSpec:
    """The answer for ``code``; codes the table does not know get a generic 400."""
    return ERRORS.get(code, UNKNOWN)


def error_body(code: int, *, details: str | None = None, message: str | None = None,
               subcode: int | None = None) -> tuple[int, GraphErrorBody]:
    """(HTTP status, ``{"error": {...}}``) for a Graph error code."""
    spec = spec_for(code)
    error: GraphError = {
        "message": message or f"(#{code}) {spec.title}",
        "type": spec.type,
        "code": code,
        "error_data": {"messaging_product": "whatsapp", "details": details or spec.details},
        "fbtrace_id": fbtrace_id(),
    }
    if subcode is not None:
        error["error_subcode"] = subcode
    if spec.http_status >= 500:
        error["is_transient"] = True
    return spec.http_status, {"error": error}


def unknown_object(object_id: str, method: str) -> tuple[int, GraphErrorBody]:
    """Graph's answer for an id that is not an object you may use (code 100, subcode 33)."""
    message = (f"Unsupported {method.lower()} request. Object with ID '{object_id}' does not exist, cannot be loaded "
               "due to missing permissions, or does not support this operation. Please read the Graph API "
               "documentation at https://developers.facebook.com/docs/graph-api")
    return 400, {"error": {"message": message, "type": "GraphMethodException", "code": 100, "error_subcode": 33,
                           "fbtrace_id": fbtrace_id()}}


def status_error(code: int, details: str | None = None) -> StatusError:
    """One entry of a failed status's ``errors[]``."""
    spec = spec_for(code)
    return {"code": code, "title": spec.title, "message": spec.title,
            "error_data": {"details": details or spec.details},
            "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"}

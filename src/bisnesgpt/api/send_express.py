"""The most common send without FastAPI's per-request dependency solving.

``POST /api/v2/messages/text/{companyId}/{chatId}`` with a JSON body and nothing else is
the request clients make most. FastAPI's handler solves the caller, path, query and header
dependencies and validates the body through its own machinery for each one: in the accept
benchmark about a fifth of the api process's CPU per send. ``express_route`` gives such a
route a second handler in front of FastAPI's: for a request in the common shape — no query
string, a JSON content type, path parameters and ``Idempotency-Key`` within the route's
limits, a body the model accepts as it is — the route's ``express`` callable authenticates
and dispatches exactly as the endpoint does. Everything else (and every mistake) goes to
FastAPI's handler, which answers as it always did: ``common_text`` decides before anything
is authenticated, counted or stored, so the fallback starts from an untouched request.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from bisnesgpt.api.edge import NOT_JSON, PARSED_JSON
from bisnesgpt.api.schemas.common import COMPANY_ID_PATTERN

Body = TypeVar("Body", bound=BaseModel)
Express = Callable[[Request], Awaitable[Response | None]]

_COMPANY_ID = re.compile(COMPANY_ID_PATTERN)
# The route's limits (send_routes' ChatPath and IdempotencyHeader are declared with them).
CHAT_ID_MAX = 64
IDEMPOTENCY_KEY_MAX = 255


@dataclass(frozen=True)
class CommonSend(Generic[Body]):
    """A send to the chat in the path, in the common shape, read and validated."""

    company_id: str
    chat_id: str
    idempotency_key: str | None
    body: Body


def express_route(express: Express) -> type[APIRoute]:
    """An ``APIRoute`` class whose handler tries ``express`` first (None: FastAPI's handler answers)."""

    class ExpressRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            full = super().get_route_handler()

            async def handler(request: Request) -> Response:
                response = await express(request)
                return response if response is not None else await full(request)

            return handler

    return ExpressRoute


async def common_text(request: Request, model: type[Body]) -> CommonSend[Body] | None:
    """The request's path, key and body when it is in the common shape (see the module docstring); None otherwise.

    Takes the document the edge parsed, else reads and parses the body (Starlette keeps it for
    FastAPI's handler); no other effect.
    """
    if request.scope.get("query_string"):
        return None
    headers = request.headers
    if headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        return None
    keys = headers.getlist("idempotency-key")
    if len(keys) > 1 or (keys and len(keys[0]) > IDEMPOTENCY_KEY_MAX):
        return None
    company_id, chat_id = request.path_params.get("companyId"), request.path_params.get("chatId")
    if (not isinstance(company_id, str) or not _COMPANY_ID.fullmatch(company_id)
            or not isinstance(chat_id, str) or not 0 < len(chat_id) <= CHAT_ID_MAX):
        return None
    document = request.scope.get(PARSED_JSON, NOT_JSON)  # the edge's parse of the body, if it made one
    try:
        body = model.model_validate(json.loads(await request.body()) if document is NOT_JSON else document)
    except ValueError:  # not JSON, or not the model (ValidationError): FastAPI's handler says what is wrong
        return None
    return CommonSend(company_id, chat_id, keys[0] if keys else None, body)

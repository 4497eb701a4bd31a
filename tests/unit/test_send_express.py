"""The express handler of the common text send: which requests it takes, and that it hands
every other one to FastAPI's handler untouched (no services: a two-route app in memory)."""

from __future__ import annotations

import json
from typing import Annotated

import httpx
import pytest
from fastapi import Body, FastAPI, Query, Request
from fastapi.responses import JSONResponse
from starlette.responses import Response

from bisnesgpt.api.edge import PARSED_JSON
from bisnesgpt.api.schemas.send_v2 import V2Text
from bisnesgpt.api.send_express import CHAT_ID_MAX, IDEMPOTENCY_KEY_MAX, common_text, express_route

pytestmark = pytest.mark.unit

PATH = "/api/v2/messages/text/{companyId}/{chatId}"
GOOD = {"message": "hi", "phoneIndex": 1}


def app_with_express() -> FastAPI:
    """The text route with an express handler that answers what it read (``by: express``);
    FastAPI's own endpoint answers ``by: fastapi`` with the body it validated."""
    app = FastAPI()

    async def express(request: Request) -> Response | None:
        common = await common_text(request, V2Text)
        if common is None:
            return None
        return JSONResponse({"by": "express", "company": common.company_id, "chat": common.chat_id,
                             "key": common.idempotency_key, "body": common.body.model_dump(exclude_none=True)})

    async def endpoint(companyId: str, chatId: str, body: Annotated[V2Text, Body()],
                       wait: Annotated[float, Query()] = 0) -> JSONResponse:
        return JSONResponse({"by": "fastapi", "body": body.model_dump(exclude_none=True), "wait": wait})

    app.router.add_api_route(PATH, endpoint, methods=["POST"], route_class_override=express_route(express))
    return app


async def post(url: str, *, content: bytes | str | None = None, headers: dict[str, str] | None = None,
               body: object = GOOD) -> httpx.Response:
    transport = httpx.ASGITransport(app=app_with_express())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        if content is None:
            content = json.dumps(body)
        return await client.post(url, content=content,
                                 headers={"Content-Type": "application/json", **(headers or {})})


async def test_the_common_shape_is_answered_by_the_express_handler() -> None:
    answer = await post("/api/v2/messages/text/acme/60123456789@c.us", headers={"Idempotency-Key": "k-1"})
    assert answer.status_code == 200
    assert answer.json() == {"by": "express", "company": "acme", "chat": "60123456789@c.us", "key": "k-1",
                             "body": GOOD}
    charset = await post("/api/v2/messages/text/acme/x", headers={"Content-Type": "application/json; charset=utf-8"})
    assert charset.json()["by"] == "express"


@pytest.mark.parametrize(("url", "headers"), [
    ("/api/v2/messages/text/acme/x?wait=1", {}),  # any query string
    ("/api/v2/messages/text/acme/x", {"Content-Type": "text/plain"}),
    ("/api/v2/messages/text/acme/x", {"Idempotency-Key": "k" * (IDEMPOTENCY_KEY_MAX + 1)}),
    ("/api/v2/messages/text/ac%20me/x", {}),  # not a company id
    (f"/api/v2/messages/text/acme/{'6' * (CHAT_ID_MAX + 1)}", {}),
])
async def test_anything_else_goes_to_fastapi_with_its_body(url: str, headers: dict[str, str]) -> None:
    answer = await post(url, headers=headers)
    # FastAPI's handler ran, and read the body the express handler had read before it.
    assert answer.status_code in (200, 422)
    if answer.status_code == 200:
        assert answer.json()["by"] == "fastapi" and answer.json()["body"] == GOOD


async def test_bodies_the_model_refuses_get_fastapis_own_answer() -> None:
    for content in ('{"message": ""}', '{"message": "hi", "unknown": 1}', "[1]", "{not json"):
        answer = await post("/api/v2/messages/text/acme/x", content=content)
        assert answer.status_code == 422, content
        assert "detail" in answer.json() and answer.json().get("by") is None


async def test_two_idempotency_keys_are_not_the_common_shape() -> None:
    transport = httpx.ASGITransport(app=app_with_express())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        answer = await client.post("/api/v2/messages/text/acme/x", content=json.dumps(GOOD),
                                   headers=[("Content-Type", "application/json"), ("Idempotency-Key", "a"),
                                            ("Idempotency-Key", "b")])
    assert answer.json()["by"] == "fastapi"


async def test_the_document_the_edge_parsed_is_not_parsed_again() -> None:
    app = app_with_express()
    parsed = {"message": "as the edge parsed it"}

    async def edge(scope: dict[str, object], receive: object, send: object) -> None:
        scope[PARSED_JSON] = parsed
        await app(scope, receive, send)  # type: ignore[arg-type]

    transport = httpx.ASGITransport(app=edge)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        answer = await client.post("/api/v2/messages/text/acme/x", content=json.dumps(GOOD),
                                   headers={"Content-Type": "application/json"})
    assert answer.json()["by"] == "express" and answer.json()["body"] == {**parsed, "phoneIndex": 0}

"""The Cloud API's routes for both auth profiles, each opening the request's ``RequestContext``.

* ``meta``: ``Authorization: Bearer``, ``/{version}/{object id}/…`` (any ``vNN.N`` version);
* ``d360``: ``D360-API-KEY``, no version and no phone id in the path (the key names the phone);
* the media download URL takes either; any other path is Graph's 2500.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from bisnesgpt.sandbox.meta_emulator.accounts import bearer_token
from bisnesgpt.sandbox.meta_emulator.context import RequestContext
from bisnesgpt.sandbox.meta_emulator.media import ATTACHMENTS_PATH
from bisnesgpt.sandbox.meta_emulator.state import EmulatedPhone

if TYPE_CHECKING:
    from bisnesgpt.sandbox.meta_emulator.app import Emulator

VERSION_RE = re.compile(r"^v\d+\.\d+$")


def cloud_api_router(emulator: Emulator) -> APIRouter:
    """The Graph look-alike routes (after the admin routes: the last one takes every other path)."""
    router = APIRouter()
    answers, gate, messages, media = emulator.answers, emulator.gate, emulator.messages, emulator.media
    accounts = emulator.accounts

    def version_problem(request: Request, version: str, ctx: RequestContext) -> JSONResponse | None:
        if VERSION_RE.match(version):
            return None
        return answers.error(ctx, 2500, message=f"Unknown path components: {request.url.path}")

    def meta_phone(request: Request, version: str, object_id: str,
                   ctx: RequestContext) -> EmulatedPhone | JSONResponse:
        """The phone ``/{version}/{object_id}/…`` addresses, or the answer refusing the call."""
        problem = version_problem(request, version, ctx)
        if problem is not None:
            return problem
        phone = emulator.state.phones.get(object_id)
        problem = gate.bearer_refusal(request, phone, ctx)
        if problem is not None:
            return problem
        return phone if phone is not None else answers.unknown(ctx, object_id, "post")

    @router.api_route(ATTACHMENTS_PATH, methods=["GET"], include_in_schema=False)
    @router.api_route(ATTACHMENTS_PATH.rstrip("/"), methods=["GET"], include_in_schema=False)
    async def download(request: Request) -> Response:
        return media.download(request, RequestContext.open(request, "any", "media_download"))

    # --- 360dialog profile: D360-API-KEY, no version, no phone id ----------------------------------
    @router.post("/messages")
    async def d360_send(request: Request) -> Response:
        ctx = RequestContext.open(request, "d360", "send")
        phone = gate.d360_phone(request, ctx)
        return phone if isinstance(phone, Response) else await messages.send(request, phone, ctx)

    @router.post("/media")
    async def d360_upload(request: Request) -> Response:
        ctx = RequestContext.open(request, "d360", "media_upload")
        phone = gate.d360_phone(request, ctx)
        return phone if isinstance(phone, Response) else await media.upload(request, phone, ctx)

    @router.get("/health_status")
    async def d360_health_status(request: Request) -> Response:
        ctx = RequestContext.open(request, "d360", "health_status")
        phone = gate.d360_phone(request, ctx)
        return phone if isinstance(phone, Response) else accounts.d360_health_status(ctx, phone)

    @router.get("/{media_id}")
    async def d360_retrieve(request: Request, media_id: str) -> Response:
        ctx = RequestContext.open(request, "d360", "media_retrieve")
        phone = gate.d360_phone(request, ctx)
        return phone if isinstance(phone, Response) else media.retrieve(request, media_id, ctx, d360_phone=phone)

    @router.delete("/{media_id}")
    async def d360_delete(request: Request, media_id: str) -> Response:
        ctx = RequestContext.open(request, "d360", "media_delete")
        phone = gate.d360_phone(request, ctx)
        return phone if isinstance(phone, Response) else media.delete(request, media_id, ctx, d360_phone=phone)

    # --- Meta profile: Bearer token, /{version}/{object id}/… --------------------------------------
    @router.post("/{version}/{object_id}/messages")
    async def meta_send(request: Request, version: str, object_id: str) -> Response:
        ctx = RequestContext.open(request, "meta", "send", object_id)
        phone = meta_phone(request, version, object_id, ctx)
        return phone if isinstance(phone, Response) else await messages.send(request, phone, ctx)

    @router.post("/{version}/{object_id}/media")
    async def meta_upload(request: Request, version: str, object_id: str) -> Response:
        ctx = RequestContext.open(request, "meta", "media_upload", object_id)
        phone = meta_phone(request, version, object_id, ctx)
        return phone if isinstance(phone, Response) else await media.upload(request, phone, ctx)

    @router.get("/{version}/{waba_id}/phone_numbers")
    async def waba_phone_numbers(request: Request, version: str, waba_id: str) -> Response:
        ctx = RequestContext.open(request, "meta", "waba_phone_numbers")
        problem = version_problem(request, version, ctx) or gate.bearer_refusal(request, None, ctx)
        return problem or accounts.waba_phone_numbers(ctx, waba_id, bearer_token(request))

    @router.get("/{version}/{object_id}")
    async def meta_retrieve(request: Request, version: str, object_id: str) -> Response:
        ctx = RequestContext.open(request, "meta", "media_retrieve", request.query_params.get("phone_number_id"))
        return version_problem(request, version, ctx) or media.retrieve(request, object_id, ctx)

    @router.delete("/{version}/{object_id}")
    async def meta_delete(request: Request, version: str, object_id: str) -> Response:
        ctx = RequestContext.open(request, "meta", "media_delete")
        return version_problem(request, version, ctx) or media.delete(request, object_id, ctx)

    @router.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)
    async def unknown_path(request: Request, path: str) -> Response:
        ctx = RequestContext.open(request, "any", "unknown")
        return answers.error(ctx, 2500, message=f"Unknown path components: /{path}")

    return router

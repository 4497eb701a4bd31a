"""``GET /api/v1/events/ws``: the tenant's events live over a WebSocket, as its webhooks carry them.

Each message is one event document, the same JSON and id a webhook delivery of it has
(without ``data.raw``). Query: ``types`` (comma-separated event types), ``phoneIndex``,
``since`` (an event id: the events after it are replayed first, then the stream goes on
live without a gap), ``companyId`` (operator keys: one company; without it, every
company). The key comes as ``Authorization: Bearer``, ``X-API-Key`` or, for browsers that
cannot set headers, ``?apiKey=``. Refusals close the socket with a 44xx code and a reason:
4401 (no or a bad key), 4404 (another company, or an unknown ``since``), 4422 (a bad
filter); 4008 ends a client too slow to keep up (resume with ``since``); 4401 also ends a
stream whose key is revoked, or whose company is disabled, while it is open (``StreamGuard``).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated

from fastapi import APIRouter, Query, WebSocket, WebSocketDisconnect

from bisnesgpt.api.auth import authenticate_connection
from bisnesgpt.api.scopes import EVENT_STREAM
from bisnesgpt.api.stream_guard import StreamGuard, Watch
from bisnesgpt.core.errors import BisnesgptError, Forbidden, NotFound, TooManyRequests, Unauthorized, ValidationFailed
from bisnesgpt.messaging.events import EVENT_TYPES
from bisnesgpt.processes.context import ProcessContext
from bisnesgpt.webhooks.stream import EventFeed, StreamFilter, Subscriber, streamed

CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_INVALID = 4422
CLOSE_TOO_SLOW = 4008
CLOSE_RATE_LIMITED = 4429
# Why a connection is refused before it streams -> the close code that says so (HTTP's, + 4000).
REFUSALS: dict[type[BisnesgptError], int] = {
    Unauthorized: CLOSE_UNAUTHORIZED, Forbidden: CLOSE_FORBIDDEN, NotFound: CLOSE_NOT_FOUND,
    TooManyRequests: CLOSE_RATE_LIMITED, ValidationFailed: CLOSE_INVALID,
}


def _key(websocket: WebSocket, api_key: str | None) -> str | None:
    header = websocket.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    return websocket.headers.get("x-api-key") or api_key or None


def _types(value: str | None) -> frozenset[str]:
    wanted = frozenset(t.strip() for t in (value or "").split(",") if t.strip())
    unknown = sorted(wanted - set(EVENT_TYPES))
    if unknown:
        raise ValidationFailed(f"types: unknown event type(s) {unknown}; known: {list(EVENT_TYPES)}")
    return wanted


def build(ctx: ProcessContext, feed: EventFeed, guard: StreamGuard) -> APIRouter:
    """The WebSocket route over ``feed`` (``guard`` ends the streams of revoked keys)."""
    router = APIRouter(tags=["events"])

    @router.websocket("/api/v1/events/ws")
    async def events_ws(
        websocket: WebSocket,
        types: Annotated[str | None, Query(max_length=500)] = None,
        phoneIndex: Annotated[int | None, Query(ge=0, le=99)] = None,
        since: Annotated[str | None, Query(max_length=64)] = None,
        companyId: Annotated[str | None, Query(max_length=64)] = None,
        apiKey: Annotated[str | None, Query(max_length=256)] = None,
    ) -> None:
        await websocket.accept()
        try:
            principal = await authenticate_connection(websocket, _key(websocket, apiKey))
            company_id = principal.company_scope(companyId)
            principal.require_scope(EVENT_STREAM.scope)
            if phoneIndex is None:
                principal.require_every_phone("the stream without phoneIndex")
            else:
                principal.require_phone(phoneIndex)
            stream_filter = StreamFilter(company_id, _types(types), phoneIndex)
        except tuple(REFUSALS) as exc:
            await websocket.close(next(code for kind, code in REFUSALS.items() if isinstance(exc, kind)),
                                  exc.detail[:120])
            return
        subscriber = feed.subscribe(stream_filter)  # before the replay: nothing falls between the two
        watch = guard.watch(principal, subscriber.end)
        try:
            await _serve(websocket, feed, subscriber, since, watch)
        except WebSocketDisconnect:
            pass
        finally:
            feed.unsubscribe(subscriber)
            guard.forget(watch)

    return router


async def _serve(websocket: WebSocket, feed: EventFeed, subscriber: Subscriber, since: str | None,
                 watch: Watch | None) -> None:
    sent: set[str] = set()
    if since:
        replayed = await feed.replay(subscriber.filter, since)
        if replayed is None:
            await websocket.close(CLOSE_NOT_FOUND, "since: no such event for this key (or past the retention)")
            return
        for replayed_event in replayed:
            await websocket.send_text(streamed(replayed_event).text)
            sent.add(replayed_event["id"])
    receiving = asyncio.create_task(_until_closed(websocket, subscriber))
    try:
        while True:
            event = await subscriber.queue.get()
            if event is None:
                if watch is not None and watch.ended:
                    await websocket.close(CLOSE_UNAUTHORIZED, "the API key was revoked or its company disabled")
                elif not receiving.done():  # the feed ended it, not the client
                    await websocket.close(CLOSE_TOO_SLOW, "too slow to keep up: reconnect with since=<last event id>")
                return
            if event.document["id"] not in sent:
                await websocket.send_text(event.text)
    finally:
        receiving.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await receiving


async def _until_closed(websocket: WebSocket, subscriber: Subscriber) -> None:
    """Read (and ignore) what the client sends until it disconnects; then end the stream."""
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
    subscriber.end()

"""The ``api`` role's HTTP components: each builds its services from the process context and
hands them to its route builders, which get per-request things (the caller) through FastAPI
dependencies.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.middleware import Middleware

from bisnesgpt.api import (
    antiban_routes,
    audit_routes,
    event_stream,
    media_routes,
    message_routes,
    phone_routes,
    send_routes,
    usage_routes,
)
from bisnesgpt.api.admission import AdmissionGate, LoopLag, SendAdmission
from bisnesgpt.api.chat_routes import ChatRoutes
from bisnesgpt.api.group_routes import GroupRoutes
from bisnesgpt.api.key_cache import cache_for
from bisnesgpt.api.rate_limits import publish_settings
from bisnesgpt.api.session_events import SessionEventHub
from bisnesgpt.api.session_routes import SessionRoutes
from bisnesgpt.api.stream_guard import StreamGuard
from bisnesgpt.api.uploaded_media import UploadedMedia
from bisnesgpt.api.webhook_routes import WebhookRoutes
from bisnesgpt.engines.meta.claims import CloudApiClaims
from bisnesgpt.engines.meta.client import CloudApiClient
from bisnesgpt.infra.secrets import secret_box
from bisnesgpt.media.library import MediaLibrary, build_store
from bisnesgpt.media.signing import MediaUrlSigner
from bisnesgpt.messaging.router import MessageRouter, announce_change
from bisnesgpt.messaging.sending import SendService
from bisnesgpt.phones.service import PhoneConfigService
from bisnesgpt.processes.component import Check, Component, HealthReporter
from bisnesgpt.processes.context import ProcessContext
from bisnesgpt.webhooks.service import WebhookService
from bisnesgpt.webhooks.stream import EventFeed


class ApiComponent(Component):
    """``GET /api/health``: the API process's own health under the original path."""

    name = "api"

    def __init__(self, ctx: ProcessContext) -> None:
        self._router = APIRouter()
        publish_settings(ctx.settings)  # the rate limits in force, on /metrics from the start

        @self._router.get("/api/health", tags=["health"], summary="The API process's health (same as /health)")
        async def api_health(request: Request) -> JSONResponse:
            status, body = await request.app.state.monitor.body()
            return JSONResponse(body, status_code=status)

    def routers(self) -> Sequence[APIRouter]:
        """``/api/health``."""
        return (self._router,)


class PipelineComponent(Component, HealthReporter):
    """The message pipeline: send, read and phone-configuration routes, and the router's cache."""

    name = "pipeline"

    def __init__(self, ctx: ProcessContext) -> None:
        self.ctx = ctx
        settings = ctx.settings
        self.router = MessageRouter(ctx.db, settings, ctx.coordinator, ttl_seconds=settings.router_cache_ttl)
        self.sender = SendService(ctx.db, self.router, ctx.queues,
                                  idempotency_ttl=timedelta(hours=settings.idempotency_ttl_hours))
        self.phones = PhoneConfigService(ctx.db, secret_box(settings), on_change=self._config_changed,
                                         claims=CloudApiClaims(settings))
        self.loop_lag = LoopLag()
        self.admission = SendAdmission(settings.admission_max_loop_lag / 1000, self.loop_lag,
                                       settings.admission_max_in_flight)
        # Only rows are read for uploaded media at accept: the store itself is never opened here.
        uploads = UploadedMedia(MediaLibrary(ctx.db, build_store(settings), settings))
        self._routers = (send_routes.build(self.sender, uploads), message_routes.build(ctx.db),
                         phone_routes.build(ctx.db, self.phones, settings), usage_routes.build(ctx.db),
                         audit_routes.build(ctx.db), antiban_routes.build(ctx.db, settings))

    async def _config_changed(self, company_id: str, phone_index: int, connection_type: str | None) -> None:
        self.router.invalidate(company_id, phone_index)
        await announce_change(self.ctx.redis, self.ctx.namespace, company_id, phone_index, connection_type,
                              self.ctx.process_name)

    def routers(self) -> Sequence[APIRouter]:
        """Send, message, phone and usage routes."""
        return self._routers

    def asgi_middleware(self) -> Sequence[Middleware]:
        """The send routes' admission gate."""
        return (Middleware(AdmissionGate, admission=self.admission),)

    async def start(self) -> None:
        """Sample the event loop's lag for the send routes' admission (when a limit is set)."""
        if self.admission.max_lag:
            self.loop_lag.periodic.start()

    async def stop(self) -> None:
        """Stop the lag sampler."""
        await self.loop_lag.periodic.stop()

    def messages_processed(self) -> int:
        """Messages this API instance accepted (stored and queued) since it started."""
        return self.sender.accepted

    async def checks(self) -> dict[str, Check]:
        """``router``: whether config changes are heard (the cache is bypassed otherwise)."""
        listening = self.router.listening
        return {"router": Check(True, "config changes subscribed" if listening else "cache bypassed (no pub/sub)",
                                {"listening": listening})}


class SessionsApiComponent(Component, HealthReporter):
    """The WhatsApp-Web session API (through the database and pub/sub) and its live events."""

    name = "sessions-api"

    def __init__(self, ctx: ProcessContext) -> None:
        self.hub = SessionEventHub(ctx.coordinator)
        self.guard = StreamGuard(ctx.db, ctx.settings.stream_auth_recheck_seconds, self.name,
                                 on_revoked_key=cache_for(ctx).drop)
        self._routes = SessionRoutes(ctx, self.hub, self.guard)

    def routers(self) -> Sequence[APIRouter]:
        """``/api/sessions/…`` and ``/api/admin/sessions…``."""
        return (self._routes.router,)

    async def start(self) -> None:
        """Begin re-checking the keys of open streams."""
        self.guard.start()

    async def drain(self, timeout: float) -> None:
        """End the live streams (their clients reconnect to another instance)."""
        self.hub.close()

    async def stop(self) -> None:
        """End any stream still open."""
        self.hub.close()
        await self.guard.stop()

    async def checks(self) -> dict[str, Check]:
        """Informational: pub/sub being down degrades live streams only, never the API."""
        connected = self.hub.connected
        return {"session_api": Check(True, "live events subscribed" if connected else "live events not subscribed",
                                     {"subscribers": len(self.hub.subscriptions), "subscribed": connected})}


class WebhooksApiComponent(Component):
    """``/api/v1/webhooks``: tenant webhook endpoints, their deliveries, retry and replay."""

    name = "webhooks-api"

    def __init__(self, ctx: ProcessContext) -> None:
        self._routes = WebhookRoutes(WebhookService(ctx.db, secret_box(ctx.settings), ctx.settings))

    def routers(self) -> Sequence[APIRouter]:
        """``/api/v1/webhooks…``."""
        return (self._routes.router,)


class MediaApiComponent(Component, HealthReporter):
    """``/api/v1/media``: uploads, downloads (by key and by signed URL) from the media store."""

    name = "media-api"

    def __init__(self, ctx: ProcessContext) -> None:
        self.store = build_store(ctx.settings)
        self.library = MediaLibrary(ctx.db, self.store, ctx.settings)
        self._router = media_routes.build(self.library, MediaUrlSigner.from_settings(ctx.settings))

    def routers(self) -> Sequence[APIRouter]:
        """``/api/v1/media…``."""
        return (self._router,)

    async def start(self) -> None:
        """Open the store (S3's client; the folder on the filesystem)."""
        await self.store.open()

    async def stop(self) -> None:
        """Close the store."""
        await self.store.close()

    async def checks(self) -> dict[str, Check]:
        """``mediaStore``: which store serves media (informational)."""
        return {"mediaStore": Check(True, f"media in {self.store.name}", {"store": self.store.name})}


class EventStreamComponent(Component, HealthReporter):
    """``/api/v1/events/ws``: tenant events live over WebSockets, from one poll of ``tenant_events``."""

    name = "event-stream"

    def __init__(self, ctx: ProcessContext) -> None:
        self.feed = EventFeed(ctx.db, ctx.settings.event_stream_poll_ms / 1000)
        self.guard = StreamGuard(ctx.db, ctx.settings.stream_auth_recheck_seconds, self.name,
                                 on_revoked_key=cache_for(ctx).drop)
        self._router = event_stream.build(ctx, self.feed, self.guard)

    def routers(self) -> Sequence[APIRouter]:
        """``/api/v1/events/ws``."""
        return (self._router,)

    async def start(self) -> None:
        """Begin polling for new events, and re-checking the keys of open streams."""
        self.feed.start()
        self.guard.start()

    async def drain(self, timeout: float) -> None:
        """End the streams (clients reconnect elsewhere with ``since``)."""
        await self.feed.stop()

    async def stop(self) -> None:
        """Stop polling."""
        await self.feed.stop()
        await self.guard.stop()

    async def checks(self) -> dict[str, Check]:
        """``eventStream``: the poll runs; how many clients listen (informational)."""
        running = self.feed.running
        return {"eventStream": Check(True, "polling events" if running else "not polling",
                                     {"clients": len(self.feed.subscribers), "delivered": self.feed.delivered})}


class ConversationsApiComponent(Component):
    """``/api/v1/chats…`` and ``/api/v1/contacts…``: conversations, read state, typing, contacts."""

    name = "conversations-api"

    def __init__(self, ctx: ProcessContext) -> None:
        settings = ctx.settings
        self.client = CloudApiClient.from_settings(settings)
        self._routes = ChatRoutes(ctx, self.client, secret_box(settings), settings)

    def routers(self) -> Sequence[APIRouter]:
        """The conversation routes."""
        return (self._routes.router,)

    async def start(self) -> None:
        """Open the Cloud API client (mark-as-read, typing)."""
        await self.client.open()

    async def stop(self) -> None:
        """Close it."""
        await self.client.close()


class GroupsApiComponent(Component):
    """``/api/v1/groups…``: a WhatsApp-Web phone's groups, carried out by the session's owner."""

    name = "groups-api"

    def __init__(self, ctx: ProcessContext) -> None:
        self._routes = GroupRoutes(ctx)

    def routers(self) -> Sequence[APIRouter]:
        """The group routes."""
        return (self._routes.router,)

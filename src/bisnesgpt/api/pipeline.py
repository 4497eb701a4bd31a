"""The message pipeline inside the ``api`` role: send, read and phone-configuration routes.

``PipelineComponent`` builds the routers at construction (so the OpenAPI document exists
before start) and the services they use at start, when the pools are open.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from fastapi import APIRouter

from bisnesgpt.config import Settings
from bisnesgpt.core.errors import ServiceUnavailable
from bisnesgpt.db.pool import Database
from bisnesgpt.infra.secrets import secret_box
from bisnesgpt.messaging.router import MessageRouter, announce_change
from bisnesgpt.messaging.sending import SendService
from bisnesgpt.phones.service import PhoneConfigService
from bisnesgpt.processes.component import Check, Component
from bisnesgpt.processes.context import ProcessContext


class Pipeline:
    """The services behind the routes; set when the component starts."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._db: Database | None = None
        self._sender: SendService | None = None
        self._phones: PhoneConfigService | None = None

    def bind(self, db: Database, sender: SendService, phones: PhoneConfigService) -> None:
        self._db, self._sender, self._phones = db, sender, phones

    @property
    def db(self) -> Database:
        if self._db is None:
            raise ServiceUnavailable("the API is still starting")
        return self._db

    @property
    def sender(self) -> SendService:
        if self._sender is None:
            raise ServiceUnavailable("the API is still starting")
        return self._sender

    @property
    def phones(self) -> PhoneConfigService:
        if self._phones is None:
            raise ServiceUnavailable("the API is still starting")
        return self._phones


class PipelineComponent(Component):
    name = "pipeline"

    def __init__(self, settings: Settings) -> None:
        from bisnesgpt.api import message_routes, phone_routes, send_routes

        self.settings = settings
        self.pipeline = Pipeline(settings)
        self._routers = (send_routes.build(self.pipeline), message_routes.build(self.pipeline),
                         phone_routes.build(self.pipeline))
        self._router: MessageRouter | None = None
        self._sender: SendService | None = None

    def routers(self) -> Sequence[APIRouter]:
        return self._routers

    async def start(self, ctx: ProcessContext) -> None:
        router = MessageRouter(ctx.db, self.settings, ttl_seconds=self.settings.router_cache_ttl)
        router.start(ctx.redis_url)
        self._router = router

        async def config_changed(company_id: str, phone_index: int, connection_type: str | None) -> None:
            router.invalidate(company_id, phone_index)
            await announce_change(ctx.redis, company_id, phone_index, connection_type, ctx.process_name)

        sender = SendService(ctx.db, router, ctx.queues,
                             idempotency_ttl=timedelta(hours=self.settings.idempotency_ttl_hours))
        phones = PhoneConfigService(ctx.db, secret_box(self.settings), on_change=config_changed)
        self.pipeline.bind(ctx.db, sender, phones)
        self._sender = sender

    async def stop(self) -> None:
        if self._router is not None:
            await self._router.stop()

    def messages_processed(self) -> int:
        """Messages this API instance accepted (stored and queued) since it started."""
        return self._sender.accepted if self._sender is not None else 0

    async def checks(self) -> dict[str, Check]:
        router = self._router
        listening = router is not None and router.listening
        return {"router": Check(True, "config changes subscribed" if listening else "cache bypassed (no pub/sub)",
                                {"listening": listening})}

"""The Cloud API emulator's HTTP surface: a Graph look-alike plus ``/_emulator`` admin routes.

Cloud API (both auth profiles, any ``/vNN.N`` version prefix; routes in ``routes.py``):

* ``POST /{version}/{phone_number_id}/messages`` (``Authorization: Bearer``) and
  ``POST /messages`` (``D360-API-KEY``) — validated against Meta's message-type schemas;
  the real success shape or the real error envelope; throughput (130429), pair rate
  (131056), unknown templates (132001), the 24-h window (131047, by webhook, as Meta
  does), injected error rules; then the signed status webhooks (``messages.py``);
* ``GET /{version}/{phone_number_id}[?fields=…]`` — the phone number object (display
  number, verified name, quality rating, code verification and name status;
  ``phone_numbers.py``);
* ownership: ``GET /{version}/{waba_id}/phone_numbers`` (the WABA's numbers the token may
  read) and ``GET /health_status`` (``D360-API-KEY``: the key's number and WABA), which the
  gateway asks before it accepts a claimed phone (``accounts.py``);
* media: ``POST …/media`` (multipart ``file``, ``type``, ``messaging_product``) → digit
  id; ``GET /{version}/{media_id}`` / ``GET /{media_id}`` → an expiring URL;
  ``GET /whatsapp_business/attachments/?mid=…&ext=…&hash=…`` (with the phone's credentials)
  → the bytes; ``DELETE`` likewise; unknown ids → 400 code 100 subcode 33 (``media.py``).

Admin (``/_emulator/…``, ``admin.py``): phones, templates, contacts that have not written,
error rules, webhook behaviour, injected inbound messages and raw webhooks, and the request
log. How a request's context travels and is logged: ``context.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from bisnesgpt.sandbox.meta_emulator.accounts import Accounts
from bisnesgpt.sandbox.meta_emulator.admin import admin_router
from bisnesgpt.sandbox.meta_emulator.auth import Gate
from bisnesgpt.sandbox.meta_emulator.context import Answers
from bisnesgpt.sandbox.meta_emulator.inbound import Inbound
from bisnesgpt.sandbox.meta_emulator.media import Media
from bisnesgpt.sandbox.meta_emulator.messages import Messages
from bisnesgpt.sandbox.meta_emulator.phone_numbers import PhoneNumbers
from bisnesgpt.sandbox.meta_emulator.record import WebhookLog
from bisnesgpt.sandbox.meta_emulator.routes import cloud_api_router
from bisnesgpt.sandbox.meta_emulator.spec import MessageValidator, default_validator
from bisnesgpt.sandbox.meta_emulator.state import EmulatorState
from bisnesgpt.sandbox.meta_emulator.webhooks import WebhookSender


class Emulator:
    """One emulator: its state, the webhook sender, and the handlers the routes call."""

    def __init__(self, state: EmulatorState, validator: MessageValidator | None = None) -> None:
        self.state = state
        self.webhook_record = WebhookLog()
        self.sender = WebhookSender(state.webhook, self.webhook_record)
        self.answers = Answers(state.requests)
        self.gate = Gate(state, self.answers)
        self.phone_numbers = PhoneNumbers(self.answers)
        self.messages = Messages(state, validator or default_validator(), self.sender, self.answers)
        self.media = Media(state, self.gate, self.answers, self.phone_numbers)
        self.inbound = Inbound(state, self.sender)
        self.accounts = Accounts(state, self.answers)


def create_app(state: EmulatorState, validator: MessageValidator | None = None) -> FastAPI:
    """The emulator as an ASGI app (the CLI serves it with uvicorn)."""
    emulator = Emulator(state, validator)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        emulator.sender.start()
        yield
        await emulator.sender.stop()

    app = FastAPI(title="bisnesgpt Cloud API emulator", lifespan=lifespan, docs_url="/_emulator/docs",
                  openapi_url="/_emulator/openapi.json", redoc_url=None)
    app.state.emulator = emulator
    app.include_router(admin_router(emulator))
    app.include_router(cloud_api_router(emulator))
    return app

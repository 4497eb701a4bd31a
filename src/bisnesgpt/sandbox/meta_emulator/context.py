"""What one Cloud API request is about, and how it is answered and logged.

Every Cloud API route opens one ``RequestContext`` (``RequestContext.open``) and hands it
down as the ``ctx`` argument of each handler it calls; handlers write what they learn into
it (the body, the message type, the recipient, the matched error rule) and nothing else
carries per-request state. Every answer then goes through ``Answers``, which renders it as
Graph does and logs it: the context's fields followed by the outcome, one request log entry
per request.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Unpack

from fastapi import Request
from fastapi.responses import JSONResponse

from bisnesgpt.core.jsontypes import JsonObject, JsonValue
from bisnesgpt.sandbox.meta_emulator.graph_errors import error_body, unknown_object
from bisnesgpt.sandbox.meta_emulator.record import Created, Operation, Profile, RequestFields, RequestLog
from bisnesgpt.sandbox.meta_emulator.state import ErrorRule


@dataclass
class RequestContext:
    """One request as the handlers come to know it; unset fields stay out of the log."""

    method: str
    path: str
    profile: Profile
    operation: Operation
    phone_number_id: str | None = None
    body: JsonObject | None = None
    # Set together once the body is known to be a send (type and recipient as given).
    type: str | None = None
    to: JsonValue = None
    wa_id: str | None = None
    # The error rule this send matched: decides the answer, is not itself logged.
    rule: ErrorRule | None = None
    # When the request arrived (wall clock); the log's ``ts`` is when it was answered.
    received_ts: float = field(default_factory=time.time)

    @classmethod
    def open(cls, request: Request, profile: Profile, operation: Operation,
             phone_number_id: str | None = None) -> RequestContext:
        """The context of a request arriving at a route of ``profile`` for ``operation``."""
        return cls(request.method, request.url.path, profile, operation, phone_number_id)

    def fields(self) -> RequestFields:
        """The request log's view of the request, in the log's key order."""
        fields: RequestFields = {"method": self.method, "path": self.path, "profile": self.profile,
                                 "operation": self.operation, "phone_number_id": self.phone_number_id,
                                 "received_ts": self.received_ts}
        if self.body is not None:
            fields["body"] = self.body
        if self.type is not None:
            fields["type"], fields["to"] = self.type, self.to
        if self.wa_id is not None:
            fields["wa_id"] = self.wa_id
        return fields


@dataclass(eq=False)
class Answers:
    """Graph's answers (success bodies and error envelopes), each logged with its request."""

    log: RequestLog

    def ok(self, ctx: RequestContext, content: object, **created: Unpack[Created]) -> JSONResponse:
        """A 200 with ``content``, logged with what the request created."""
        self.log.add(ctx.fields(), http_status=200, **created)
        return JSONResponse(content)

    def error(self, ctx: RequestContext, code: int, *, details: str | None = None, message: str | None = None,
              headers: dict[str, str] | None = None, status: int | None = None) -> JSONResponse:
        """Graph's error envelope for ``code``, at the error table's HTTP status unless ``status`` is given."""
        table_status, body = error_body(code, details=details, message=message)
        status = status or table_status
        self.log.add(ctx.fields(), http_status=status, error_code=code)
        return JSONResponse(body, status_code=status, headers=headers)

    def unknown(self, ctx: RequestContext, object_id: str, method: str) -> JSONResponse:
        """Graph's answer for an id that is no object the caller may use (code 100, subcode 33)."""
        status, body = unknown_object(object_id, method)
        self.log.add(ctx.fields(), http_status=status, error_code=100, error_subcode=33)
        return JSONResponse(body, status_code=status)

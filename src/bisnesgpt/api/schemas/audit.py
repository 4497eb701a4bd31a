"""The audit log's JSON: one change per entry, newest first, with a cursor to older ones."""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, Field

from bisnesgpt.api.audit import AuditEntry
from bisnesgpt.api.schemas.common import iso


class AuditEntryView(BaseModel):
    """One change made through the API or the dashboard."""

    id: int
    at: str | None = Field(description="When it was answered (ISO 8601, UTC)")
    actor: str = Field(description="admin (an operator) or company")
    actorCompanyId: str | None = Field(description="The caller's company (null: an operator)")
    keyId: int | None = Field(description="The API key used (null: the settings' operator key, or hidden from a "
                                          "company when an operator made the change)")
    via: str = Field(description="api or dashboard")
    clientAddress: str | None = Field(description="Where the request came from (hidden from a company when an "
                                                  "operator made the change)")
    method: str
    route: str = Field(description="The route, e.g. /api/v1/webhooks/{endpoint_id}")
    path: str
    companyId: str | None = Field(description="The company the path names, if it names one")
    status: int = Field(description="The HTTP status answered")

    @classmethod
    def of(cls, entry: AuditEntry, *, viewer_company: str | None) -> Self:
        """The view of ``entry`` for a company viewer (``viewer_company``) or an operator (None)."""
        someone_else = viewer_company is not None and entry.actor_company_id != viewer_company
        return cls(id=entry.id or 0, at=iso(entry.at), actor=entry.actor_kind, actorCompanyId=entry.actor_company_id,
                   keyId=None if someone_else else entry.key_id, via=entry.via,
                   clientAddress=None if someone_else else entry.client_address, method=entry.method,
                   route=entry.route, path=entry.path, companyId=entry.target_company_id, status=entry.status)


class AuditPage(BaseModel):
    """A page of entries and the cursor to the next (older) page."""

    entries: list[AuditEntryView]
    next: int | None = Field(description="Pass as `before` for older entries (null: none)")


AUDIT_EXAMPLE = {
    "entries": [{"id": 42, "at": "2026-12-02T10:15:00.000Z", "actor": "company", "actorCompanyId": "acme",
                 "keyId": 7, "via": "api", "clientAddress": "203.0.113.5", "method": "POST",
                 "route": "/api/v1/webhooks", "path": "/api/v1/webhooks", "companyId": None, "status": 201}],
    "next": None,
}

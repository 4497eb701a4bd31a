"""The usage report's JSON: Meta's billing data and message counts per status, per phone."""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, Field

from bisnesgpt.api.schemas.common import JsonObject, iso
from bisnesgpt.messaging.usage import UsageReport


class BillingView(BaseModel):
    """One phone's Cloud API messages of one category and pricing model."""

    companyId: str
    phoneIndex: int
    category: str = Field(description="Meta's pricing category: service, marketing, utility, authentication")
    pricingModel: str = Field(description="Meta's pricing model: PMP (per message) or CBP (per conversation)")
    conversations: int = Field(description="Distinct conversations (Meta's conversation ids) of these messages")
    billableMessages: int = Field(description="Messages Meta marked billable")
    messages: int = Field(description="Messages sent in the period that Meta sent pricing for")


class StatusCountView(BaseModel):
    """How many of one phone's messages, by engine and direction, are in one status."""

    companyId: str
    phoneIndex: int
    provider: str = Field(description="The engine: meta, 360dialog, wwebjs")
    direction: str
    status: str
    messages: int


class UsageView(BaseModel):
    """A period's usage: billing rows (by when messages were sent) and status counts (by when created)."""

    companyId: str | None = Field(description="The company; null: every company (an operator key)")
    start: str | None = Field(alias="from")
    end: str | None = Field(alias="to")
    billing: list[BillingView]
    statuses: list[StatusCountView]

    @classmethod
    def of(cls, report: UsageReport) -> Self:
        """The view of ``report``."""
        return cls.model_validate({
            "companyId": report.company_id, "from": iso(report.start), "to": iso(report.end),
            "billing": [BillingView(companyId=b.company_id, phoneIndex=b.phone_index, category=b.category,
                                    pricingModel=b.pricing_model, conversations=b.conversations,
                                    billableMessages=b.billable_messages, messages=b.messages)
                        for b in report.billing],
            "statuses": [StatusCountView(companyId=s.company_id, phoneIndex=s.phone_index, provider=s.provider,
                                         direction=s.direction, status=s.status, messages=s.messages)
                         for s in report.statuses],
        })


USAGE_EXAMPLE: JsonObject = {
    "companyId": "acme", "from": "2025-01-01T00:00:00+00:00", "to": "2025-02-01T00:00:00+00:00",
    "billing": [{"companyId": "acme", "phoneIndex": 1, "category": "service", "pricingModel": "PMP",
                 "conversations": 12, "billableMessages": 0, "messages": 40},
                {"companyId": "acme", "phoneIndex": 1, "category": "marketing", "pricingModel": "PMP",
                 "conversations": 3, "billableMessages": 3, "messages": 3}],
    "statuses": [{"companyId": "acme", "phoneIndex": 0, "provider": "wwebjs", "direction": "outbound",
                  "status": "read", "messages": 17},
                 {"companyId": "acme", "phoneIndex": 1, "provider": "meta", "direction": "outbound",
                  "status": "delivered", "messages": 43}],
}

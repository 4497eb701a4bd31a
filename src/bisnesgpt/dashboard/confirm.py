"""The confirmation every destructive dashboard action needs (the page's dialog sends it)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from bisnesgpt.core.errors import Conflict


class Confirmed(BaseModel):
    """Body of a destructive action: the page's confirmation dialog sets it."""

    model_config = ConfigDict(extra="forbid")
    confirm: bool = Field(description="true: the operator confirmed this action")


def require_confirmed(body: Confirmed | None) -> None:
    """409 unless the action was confirmed."""
    if body is None or not body.confirm:
        raise Conflict("confirm the action: send {\"confirm\": true}")

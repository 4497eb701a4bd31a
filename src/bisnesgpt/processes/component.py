"""A component is one job inside a process role (a worker, a set of routes, a scheduler).

Roles are lists of components (``roles.py``); ``legacy`` is simply all of them in one
process. The runtime starts them in order after the pools are open, drains them on
shutdown (stop taking work, finish what is in flight), then stops them in reverse order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import APIRouter

    from bisnesgpt.messaging.worker import QueueWorker
    from bisnesgpt.processes.context import ProcessContext


@dataclass
class Check:
    """One dependency check for /health: ok or not, with evidence."""

    ok: bool
    detail: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "detail": self.detail, **self.data}


class Component:
    """Base class with do-nothing defaults; override what the component needs."""

    name: str = "component"
    # True for a component that serves ``/docs`` itself (the dashboard: Swagger UI from
    # vendored assets, so it works offline); FastAPI's CDN-based page is then left out.
    serves_docs: bool = False

    def routers(self) -> Sequence[APIRouter]:
        """HTTP routes this component serves on its process's port."""
        return ()

    async def start(self, ctx: ProcessContext) -> None:
        """Open what the component needs and begin work (pools are already open)."""

    async def drain(self, timeout: float) -> None:
        """Stop taking new work and let in-flight work finish within ``timeout`` seconds."""

    async def stop(self) -> None:
        """Release everything; called once, after drain, in reverse start order."""

    async def checks(self) -> dict[str, Check]:
        """Health checks contributed to /health (all must pass for 200)."""
        return {}

    def queue_workers(self) -> Sequence[QueueWorker]:
        """The queue consumers this component runs.

        /health adds a ``queue:<name>`` check per worker (consumer alive), and the heartbeat
        records those queues' depth; a role with workers is unhealthy when one has died.
        """
        return ()

    def active_bots(self) -> int | None:
        """Sessions/phones this component is actively serving (None: not applicable)."""
        return None

    def messages_processed(self) -> int:
        return 0

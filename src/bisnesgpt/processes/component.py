"""A component is one job inside a process role (a worker, a set of routes, a scheduler).

Roles are lists of components (``roles.py``), built once the process's pools are open:
each component gets its ``ProcessContext`` (and whatever else it needs) in its
constructor, so nothing is bound late. The runtime then starts them in order, drains them
on shutdown (stop taking work, finish what is in flight) and stops them in reverse order.

What a component tells ``/health`` and the heartbeat is a separate, small interface,
``HealthReporter``: a component implements it only when it has something to report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from fastapi import APIRouter
    from starlette.middleware import Middleware

    from bisnesgpt.messaging.queue_worker import QueueWorker


@dataclass
class Check:
    """One dependency check for /health: ok or not, with evidence."""

    ok: bool
    detail: str = ""
    data: Mapping[str, object] = field(default_factory=dict)  # JSON-ready evidence, merged into the check

    def as_dict(self) -> dict[str, object]:
        """The check as it appears in ``/health`` (``ok``, ``detail`` and its evidence)."""
        return {"ok": self.ok, "detail": self.detail, **self.data}


class Component:
    """Base class with do-nothing lifecycle defaults; override what the component needs."""

    name: ClassVar[str] = "component"
    # True for a component that serves ``/docs`` itself (the dashboard: Swagger UI from
    # vendored assets, so it works offline); FastAPI's CDN-based page is then left out.
    serves_docs: ClassVar[bool] = False

    def routers(self) -> Sequence[APIRouter]:
        """HTTP routes this component serves on its process's port."""
        return ()

    def asgi_middleware(self) -> Sequence[Middleware]:
        """ASGI middleware placed outside the HTTP edge: it sees a request before anything reads it."""
        return ()

    async def start(self) -> None:
        """Begin work (the pools are open, the coordinator is listening)."""

    async def drain(self, timeout: float) -> None:
        """Stop taking new work and let in-flight work finish within ``timeout`` seconds."""

    async def stop(self) -> None:
        """Release everything; called once, after drain, in reverse start order."""


class HealthReporter:
    """What a component contributes to ``/health`` and the heartbeat (all optional)."""

    name: ClassVar[str] = "reporter"  # names a check that failed to answer

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
        """Messages this component finished since the process started."""
        return 0


def reporters(components: Sequence[Component]) -> list[HealthReporter]:
    """The components that report health, in order."""
    return [c for c in components if isinstance(c, HealthReporter)]

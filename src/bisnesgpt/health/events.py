"""Notable happenings recorded in ``process_events`` (via ``log_process_event``)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Literal

from bisnesgpt.core.errors import BisnesgptError
from bisnesgpt.db.pool import Database
from bisnesgpt.db.queries import load_queries

log = logging.getLogger(__name__)

SQL = load_queries("bisnesgpt.health")

Severity = Literal["info", "warning", "error", "critical"]
_LEVELS: dict[Severity, int] = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR,
                                "critical": logging.CRITICAL}


class EventRecorder:
    """Writes process events; never raises (an event must not take the process down)."""

    def __init__(self, db: Database, process_name: str) -> None:
        self.db = db
        self.process_name = process_name

    async def record(self, event_type: str, data: Mapping[str, object] | None = None,
                     severity: Severity = "info", *, process_name: str | None = None) -> None:
        """Log the event and write it (as this process, or as ``process_name``); a failed write is logged."""
        log.log(_LEVELS[severity], "event %s %s", event_type, data or {})
        try:
            await self.db.execute(SQL.log_event, process_name or self.process_name, event_type, data or {}, severity)
        except BisnesgptError as exc:
            log.warning("could not record event %s: %s", event_type, exc.detail)

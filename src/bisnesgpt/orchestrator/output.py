"""Copies a child's stdout/stderr into ``logs/{role}-{out,error}.log`` and the console.

Every file line gets a UTC timestamp prefix (like PM2's ``log_date_format``), so even a raw
traceback is dated; the console gets ``name | line`` for a readable combined view.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import IO, TextIO


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
                stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
                sink.write(f"{stamp}Z ".encode() + raw)
                if self.echo is not None:
                    try:
                        self.echo.write(f"{self.label:<8} | {raw.decode('utf-8', 'replace')}")
                        self.echo.flush()
                    except (OSError, ValueError):
                        self.echo = None  # console gone (e.g. terminal closed); keep the file
        self.stream.close()

"""``bisnesgpt run api`` served by granian (embedded, in the role's own event loop) instead of uvicorn.

Benchmark-only: the product serves with uvicorn; this launcher swaps the HTTP server and
nothing else (same app, pools, components, shutdown), so the two can be compared on the
same route in the same run. Needs ``pip install granian``. One instance per port (granian
binds the port itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from typing import Any


class GranianServer:
    """The slice of ``uvicorn.Server`` that ``processes.runtime`` uses, backed by granian."""

    def __init__(self, config: Any) -> None:
        self.app = config.app
        self.started = False
        self.should_exit = False
        self.force_exit = False

    async def serve(self, sockets: list[socket.socket]) -> None:
        from granian.constants import Interfaces
        from granian.server.embed import Server

        host, port = sockets[0].getsockname()[:2]
        for sock in sockets:  # granian binds the port itself
            sock.close()
        server = Server(self.app, address=host, port=port, interface=Interfaces.ASGINL, log_enabled=False,
                        backlog=2048, websockets=False)
        task = asyncio.create_task(server.serve())
        while not self.started and not task.done():
            with contextlib.suppress(OSError):
                _reader, writer = await asyncio.open_connection(host, port)
                writer.close()
                self.started = True
                break
            await asyncio.sleep(0.05)
        while not self.should_exit and not task.done():  # noqa: ASYNC110 - uvicorn's contract is a flag
            await asyncio.sleep(0.05)
        server.signal_handler_interrupt()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 5)


def main() -> None:
    from bisnesgpt.cli.main import main as cli_main
    from bisnesgpt.processes import runtime

    runtime._Server = GranianServer  # type: ignore[assignment,misc]
    sys.argv = ["bisnesgpt", "run", "api"]
    cli_main()


if __name__ == "__main__":
    main()

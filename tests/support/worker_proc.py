"""A worker process for tests that cannot run workers in their own event loop.

``python -m tests.support.worker_proc <database_url> <redis_url> [--hang-on-slow]`` runs the
shared worker helper on both send queues with ``RecordingEngine`` until SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from bisnesgpt.db.pool import Database
from tests.support.pipeline import RecordingEngine, Workers


async def main(database_url: str, redis_url: str, hang_on_slow: bool) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    db = Database(database_url, max_size=4)
    await db.open()
    try:
        async with Workers(db, redis_url, RecordingEngine(hang_on_slow=hang_on_slow)):
            print("workers ready", flush=True)
            await stop.wait()
    finally:
        await db.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], "--hang-on-slow" in sys.argv[3:]))

"""``bullmq.Worker`` that fetches one job at a time.

bullmq 3.4.4's run loop starts a fetch for every free concurrency slot at once, and each of
those that finds the queue not (yet) marked drained calls ``moveToActive`` — one Lua script
per call. The meta engine runs 310 slots (10 sends + 300 pacing holds), so every arriving
message set off dozens of calls (61 per message measured at 25 msg/s) and kept the process
busy at about 0.7 cores whatever the load. Serialised, a message costs about two calls;
the fetches queued behind the lock cost nothing while they wait.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bullmq import Worker


class SerialFetchWorker(Worker):  # type: ignore[misc]
    """A ``bullmq.Worker`` whose fetches (``getNextJob``) run one at a time."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._fetching = asyncio.Lock()

    async def getNextJob(self, token: str) -> Any:
        async with self._fetching:
            if self.closing or self.paused:
                return None  # queued fetches end at once instead of blocking one by one
            return await super().getNextJob(token)

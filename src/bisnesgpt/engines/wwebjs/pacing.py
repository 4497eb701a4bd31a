"""Per-session send pacing: at most WWEBJS_MAX_MESSAGES_PER_SECOND, plus a small random gap.

WhatsApp bans accounts that send like machines; the random gap (up to WWEBJS_SEND_JITTER_MS)
keeps consecutive sends of one session from being perfectly regular. Slots are reserved, so
concurrent jobs of one session queue up behind each other instead of bursting.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Hashable


class SessionPacer:
    """Send slots per session (any hashable key), spaced by the rate plus a random gap."""

    def __init__(self, per_second: float, jitter_ms: int, *, clock: Callable[[], float] = time.monotonic,
                 rand: Callable[[], float] = random.random) -> None:
        self.interval = 1.0 / per_second
        self.jitter = jitter_ms / 1000
        self._clock = clock
        self._rand = rand
        self._next: dict[Hashable, float] = {}

    def reserve(self, key: Hashable, *, max_wait: float, jitter_ms: int | None = None) -> float | None:
        """Seconds to wait before this send, or None (nothing reserved) if that exceeds ``max_wait``.

        ``jitter_ms``: this session's own random gap (its phone's setting), else the pacer's.
        """
        now = self._clock()
        slot = max(now, self._next.get(key, now))
        wait = slot - now
        if wait > max_wait:
            return None
        jitter = self.jitter if jitter_ms is None else jitter_ms / 1000
        self._next[key] = slot + self.interval + self._rand() * jitter
        return wait

    def delay_until_free(self, key: Hashable) -> float:
        """Seconds until the session's next slot is free (0 when it is free now)."""
        return max(0.0, self._next.get(key, 0.0) - self._clock())

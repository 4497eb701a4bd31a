"""Reconnect backoff and the circuit breaker against connect/disconnect loops (pure logic)."""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable


class Backoff:
    """Exponential delays ``base * 2**(n-1)`` capped at ``cap``, with ±20 % jitter."""

    def __init__(self, base_ms: int, cap_ms: int, *, jitter: float = 0.2,
                 rand: Callable[[], float] = random.random) -> None:
        self.base_ms = base_ms
        self.cap_ms = max(cap_ms, base_ms)
        self.jitter = jitter
        self.failures = 0
        self._rand = rand

    def next_delay_ms(self) -> int:
        """Count one more failure and return how long to wait before the next try."""
        self.failures += 1
        raw = min(self.cap_ms, self.base_ms * 2 ** min(self.failures - 1, 30))
        factor = 1 + self.jitter * (2 * self._rand() - 1)
        return max(1, int(min(self.cap_ms, raw * factor)))

    def reset(self) -> None:
        """Start again from ``base`` (the session was stable, or an operator asked for a retry)."""
        self.failures = 0


class CircuitBreaker:
    """Trips after ``threshold`` disconnects within ``window_seconds``."""

    def __init__(self, threshold: int, window_seconds: float, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = threshold
        self.window_seconds = window_seconds
        self._clock = clock
        self._events: deque[float] = deque()

    def record(self) -> bool:
        """Record one disconnect; True if the breaker trips now."""
        now = self._clock()
        self._events.append(now)
        while self._events and now - self._events[0] > self.window_seconds:
            self._events.popleft()
        return len(self._events) >= self.threshold

    @property
    def recent(self) -> int:
        """Disconnects recorded within the window, as of now."""
        now = self._clock()
        return sum(1 for t in self._events if now - t <= self.window_seconds)

    def reset(self) -> None:
        """Forget the disconnects recorded so far."""
        self._events.clear()

    def describe(self) -> str:
        """Why the breaker tripped, as the session's status reason (``flapping: 5 disconnects within …``)."""
        minutes = self.window_seconds / 60
        window = f"{minutes:g} minute{'s' if minutes != 1 else ''}" if minutes >= 1 else f"{self.window_seconds:g} s"
        return f"flapping: {self.threshold} disconnects within {window}"

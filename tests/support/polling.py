"""The one way tests wait for something: poll a check until it holds, or fail saying what was awaited.

``eventually`` is for async tests (the check may be a plain function or a coroutine
function; the event loop keeps running between polls); ``wait_until`` is the same for code
that runs outside an event loop (process harnesses, threads). Both return the check's last,
truthy value, and fail with its last value after ``timeout`` seconds. Never a speed
assertion: the timeout is how long a test is willing to wait, not how fast the product must be.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


def _failure(what: str, check: object, timeout: float, last: object) -> AssertionError:
    return AssertionError(f"timed out after {timeout}s waiting for {what or check}; last: {last!r}")


async def eventually(check: Callable[[], T | Awaitable[T]], timeout: float = 30.0, interval: float = 0.05,
                     what: str = "") -> T:
    """Poll ``check`` (sync or async) until it returns something truthy; that value."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        value: T = await result if inspect.isawaitable(result) else result  # type: ignore[assignment]
        if value:
            return value
        if time.monotonic() > deadline:
            raise _failure(what, check, timeout, value)
        await asyncio.sleep(interval)


def wait_until(check: Callable[[], T], timeout: float = 30.0, interval: float = 0.1, what: str = "") -> T:
    """Poll ``check`` until it returns something truthy, sleeping between polls; that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise _failure(what, check, timeout, value)
        time.sleep(interval)

"""Retry delays: exponential with jitter, capped, never past the retry horizon."""

from __future__ import annotations

import random


def retry_delay(attempts: int, *, base: float, max_delay: float, rng: random.Random | None = None) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt (1-based).

    ``base * 2**(attempts-1)`` capped at ``max_delay``, then "equal jitter": a uniform draw
    in [half, full] of it, so retries of many deliveries that failed together spread out
    while the delay still grows.
    """
    exponent = min(max(attempts - 1, 0), 62)
    ceiling = min(max_delay, base * (2.0 ** exponent))
    draw = (rng or random).random()  # jitter, not security
    return ceiling / 2 + draw * ceiling / 2

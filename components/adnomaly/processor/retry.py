"""Exponential back-off with jitter for retrying a batch while a dependency is down."""

from __future__ import annotations

import random
from collections.abc import Callable

BASE_DELAY_S = 0.25
MAX_DELAY_S = 5.0


def backoff_delay(
    attempt: int,
    *,
    base: float = BASE_DELAY_S,
    cap: float = MAX_DELAY_S,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before retry number `attempt` (0-based): "equal jitter" on min(cap, base·2^attempt).

    Half of the exponential delay is fixed (so retries do back off), the other half random (so processors
    that failed together do not retry in lock-step).
    """
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, got {attempt}")
    ceiling = min(cap, base * 2 ** min(attempt, 62))
    return ceiling / 2 + rand() * ceiling / 2

"""Pacing against the wall clock: event i is due `i / rate` seconds after the start.

Pure arithmetic on the readings of a monotonic clock (time.perf_counter in the runner), so it is tested
without sleeping. A producer that falls behind sends the backlog as fast as it can, in bounded batches;
it never skips events (their event times are fixed by their sequence numbers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MAX_WAIT_S = 0.05  # never sleep longer than this: signals and housekeeping stay prompt
BATCH_SECONDS = 0.01  # one batch holds about this much of the schedule
MAX_BATCH = 5_000


@dataclass(frozen=True)
class Pacer:
    rate: float  # events per second
    t0: float  # clock reading at which event 0 is due

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise ValueError(f"rate must be positive, got {self.rate}")

    def due(self, now: float) -> int:
        """How many events (0, 1, ..., n-1) are due at clock reading `now`."""
        if now < self.t0:
            return 0
        return math.floor((now - self.t0) * self.rate + 1e-9) + 1  # tolerate float error at a boundary

    def due_at(self, seq: int) -> float:
        return self.t0 + seq / self.rate

    def wait(self, sent: int, now: float) -> float:
        """Seconds to wait before event `sent` is due (0 when it already is), at most MAX_WAIT_S."""
        return min(MAX_WAIT_S, max(0.0, self.due_at(sent) - now))

    @property
    def batch(self) -> int:
        """Largest number of events handed to the producer between two polls."""
        return max(1, min(MAX_BATCH, math.ceil(self.rate * BATCH_SECONDS)))

    def lag(self, sent: int, now: float) -> float:
        """Seconds the producer is behind its schedule (0 when on time)."""
        return max(0.0, now - self.due_at(sent)) if sent < self.due(now) else 0.0

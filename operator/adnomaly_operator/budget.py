"""A fleet-wide budget for the status writes that only report progress. Pure: the clock is an argument.

A Pipeline coming up moves its `status.components` counters many times (each store, topic and Deployment
turns ready on its own), and each change is worth showing, but not each at once: the per-Pipeline
`status_interval` folds a Pipeline's changes into one write every few seconds. With a hundred Pipelines
coming up together that still made ~50 status writes a second, each one an API server write and a watch
event the operator itself then processes (kopf's change detection deep-copies the Pipeline), all spent on
cosmetics while the platform's CPU was what held the fleet back (`adnomaly bench operator --pipelines 100`).

So progress-only writes of the whole fleet also share a rate (`rate` per second, bursts of `burst`), the
way client-go's token-bucket limiter shares one QPS among a controller's requests — but only these writes:
a phase change, a new generation or a problem is written at once and never waits here. A Pipeline that
finds no token reserves the next free slot and is re-queued for it (golang.org/x/time/rate's `Reserve`),
so the waiting Pipelines are served in turn instead of retrying together for each token.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class WriteBudget:
    rate: float  # tokens per second; <= 0: unlimited
    burst: int = 1
    _tokens: float = field(init=False, default=0.0)
    _at: float | None = field(init=False, default=None)

    def reserve(self, now: float) -> float:
        """Take one token and return when it may be used (`now` if one was free). Every call takes one:
        later callers queue behind earlier reservations."""
        if self.rate <= 0:
            return now
        if self._at is None:
            self._tokens, self._at = float(self.burst), now
        elif now > self._at:
            self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.rate)
            self._at = now
        self._tokens -= 1.0
        if self._tokens >= 0:
            return now
        return self._at + (-self._tokens) / self.rate

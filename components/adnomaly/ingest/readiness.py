"""`/readyz`: is Kafka reachable and does the raw topic exist? A cached metadata check.

Probes may come often and from several places; the metadata request behind them runs at most once per
`max_age_s` (concurrent callers share one in-flight check) and in a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaException

DEFAULT_MAX_AGE_S = 2.0
DEFAULT_TIMEOUT_S = 1.5


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    detail: str


def judge_metadata(metadata: Any, topic: str) -> Readiness:
    """Ready when a broker answered and `topic` exists with partitions (pure: takes ClusterMetadata)."""
    if not metadata.brokers:
        return Readiness(False, "no Kafka broker in the metadata")
    meta = metadata.topics.get(topic)
    if meta is None:
        return Readiness(False, f"topic {topic} does not exist")
    if meta.error is not None:
        return Readiness(False, f"topic {topic}: {meta.error}")
    if not meta.partitions:
        return Readiness(False, f"topic {topic} has no partitions")
    return Readiness(True, f"Kafka reachable, topic {topic} has {len(meta.partitions)} partitions")


class KafkaReadiness:
    def __init__(
        self,
        list_topics: Callable[..., Any],
        topic: str,
        *,
        max_age_s: float = DEFAULT_MAX_AGE_S,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._list_topics = list_topics
        self.topic = topic
        self.max_age_s = max_age_s
        self.timeout_s = timeout_s
        self._clock = clock
        self._cached: Readiness | None = None
        self._checked_at = 0.0
        self._lock: asyncio.Lock | None = None

    def _fresh(self) -> Readiness | None:
        if self._cached is not None and self._clock() - self._checked_at < self.max_age_s:
            return self._cached
        return None

    async def check(self) -> Readiness:
        cached = self._fresh()
        if cached is not None:
            return cached
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            cached = self._fresh()  # another caller may have refreshed it while we waited
            if cached is not None:
                return cached
            result = await asyncio.to_thread(self._probe)
            self._cached, self._checked_at = result, self._clock()
            return result

    def _probe(self) -> Readiness:
        # All topics, not just ours: asking a producer for one topic's metadata may auto-create it.
        try:
            metadata = self._list_topics(timeout=self.timeout_s)
        except KafkaException as exc:
            return Readiness(False, f"Kafka unreachable: {exc.args[0] if exc.args else exc}")
        return judge_metadata(metadata, self.topic)

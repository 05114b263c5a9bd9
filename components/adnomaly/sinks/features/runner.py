"""The feature sink loop: consume feature records → Redis (latest) and PostgreSQL (history) → commit.

Per batch: decode and check the records, write Redis, write PostgreSQL, then commit the offsets after the
batch's last message of each partition. A store that is down is retried with back-off while the
partitions are paused (the consumer stays in its group). Both writes are idempotent, so a batch replayed
after a crash or a rebalance leaves the stores as they were; offsets are committed only for partitions
still owned.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import TopicPartition

from adnomaly.owed_offsets import CommitFailed, OwedOffsets
from adnomaly.sinks.config import FeatureView
from adnomaly.sinks.consume import Consumer, Waiter, describe, forget_lag, update_lag
from adnomaly.sinks.features.batch import FeatureBatch, prepare
from adnomaly.sinks.features.metrics import ONLINE_STALE, ONLINE_WRITTEN, FeatureSinkMetrics
from adnomaly.sinks.features.online import feast_targets
from adnomaly.sinks.features.stores import POSTGRES_ERRORS, REDIS_ERRORS, HistoryStore, OnlineStore

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeatureSinkSettings:
    topic: str
    feast_project: str  # the Redis layout's project (adnomaly.feast.layout)
    batch_size: int
    batch_timeout_s: float
    lag_interval_s: float = 5.0


@dataclass
class FeatureSinkStats:
    batches: int = 0
    records: int = 0
    online_written: int = 0
    history_rows: int = 0
    skipped: int = 0


class FeatureSink:
    def __init__(
        self,
        settings: FeatureSinkSettings,
        views: Mapping[str, FeatureView],
        consumer: Consumer,
        online: OnlineStore,
        history: HistoryStore,
        metrics: FeatureSinkMetrics,
        *,
        clock: Callable[[], float] = time.monotonic,
        backoff: Callable[[int], float] | None = None,
    ) -> None:
        self.settings = settings
        self._views = dict(views)
        self._feast = feast_targets(self._views, settings.feast_project)
        self._consumer = consumer
        self._online = online
        self._history = history
        self._metrics = metrics
        self._clock = clock
        self._stopping = False
        self._subscribed = False
        self._carry: list[Any] = []
        self._owned: set[tuple[str, int]] = set()
        self._owed = OwedOffsets(clock=clock)
        self._next_lag_update = 0.0
        options: dict[str, Any] = {"clock": clock}
        if backoff is not None:
            options["backoff"] = backoff
        self._waiter = Waiter(consumer, self._carry.extend, batch=settings.batch_size,
                              stopping=lambda: self._stopping, **options)  # fmt: skip
        self.stats = FeatureSinkStats()

    def request_stop(self) -> None:
        self._stopping = True

    def run(self) -> None:
        try:
            if not self.start():
                return
            while not self._stopping:
                self.poll_once()
        finally:
            self.close()

    def start(self) -> bool:
        """Create the history table (waiting for PostgreSQL), then join the consumer group."""
        if self._waiter.retry(self._prepare, "preparing PostgreSQL", POSTGRES_ERRORS) is None:
            return False
        self._consumer.subscribe(
            [self.settings.topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_revoke
        )
        self._subscribed = True
        return True

    def _prepare(self) -> bool:
        self._history.ensure_table()
        return True

    def close(self) -> None:
        try:
            self._consumer.close()
        finally:
            self._online.close()
            self._history.close()

    def poll_once(self) -> int:
        """Consume one batch, write it to both stores and commit it; returns the records committed."""
        size = self.settings.batch_size
        messages, self._carry[:] = self._carry[:size], self._carry[size:]
        if len(messages) < size:
            timeout = 0.0 if messages else self.settings.batch_timeout_s
            messages += self._consumer.consume(num_messages=size - len(messages), timeout=timeout)
        if self._clock() >= self._next_lag_update:
            self._next_lag_update = self._clock() + self.settings.lag_interval_s
            update_lag(self._consumer, self._metrics.consumer_lag)
        if not messages:
            self._owed.retry(self._consumer)  # an idle topic still gets the commit a refused one left owed
            return 0
        started = self._clock()
        batch = prepare(messages, self._views, self._feast)
        written = self._waiter.retry(lambda: self._write_online(batch), "writing to Redis", REDIS_ERRORS)
        if written is None:
            return 0
        rows = self._waiter.retry(lambda: self._write_history(batch), "writing to PostgreSQL", POSTGRES_ERRORS)
        if rows is None:
            return 0
        self._commit(batch)
        self._record(batch, written, rows, started)
        return batch.size

    def _write_online(self, batch: FeatureBatch) -> int:
        try:
            return self._online.write(batch.online)
        except REDIS_ERRORS:
            self._metrics.store_errors.labels("redis").inc()
            raise

    def _write_history(self, batch: FeatureBatch) -> int:
        try:
            return self._history.write(batch.history)
        except POSTGRES_ERRORS:
            self._metrics.store_errors.labels("postgres").inc()
            raise

    def _commit(self, batch: FeatureBatch) -> None:
        offsets = [TopicPartition(topic, part, offset) for (topic, part), offset in batch.offsets.items()
                   if (topic, part) in self._owned]  # fmt: skip
        try:
            self._owed.commit(self._consumer, offsets)
        except CommitFailed as exc:
            self._metrics.commit_failures.inc()
            _log.warning("offset commit failed (owed: retried with the next commit or while idle): %s", exc)

    def _record(self, batch: FeatureBatch, written: int, rows: int, started: float) -> None:
        stats = self.stats
        skipped = sum(batch.skipped.values())
        stats.batches += 1
        stats.records += batch.size
        stats.online_written += written
        stats.history_rows += rows
        stats.skipped += skipped
        metrics = self._metrics
        metrics.records.inc(batch.size)
        metrics.online_writes.labels(ONLINE_WRITTEN).inc(written)
        metrics.online_writes.labels(ONLINE_STALE).inc(len(batch.online) - written)
        metrics.history_rows.inc(rows)
        for reason, count in batch.skipped.items():
            metrics.skipped.labels(reason).inc(count)
            _log.warning("skipped %d feature records: %s", count, reason)
        metrics.batch_size.observe(batch.size)
        metrics.batch_seconds.observe(self._clock() - started)

    def _on_assign(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        self._owned.update((tp.topic, tp.partition) for tp in partitions)
        _log.info("assigned %s", describe(partitions))
        self._waiter.assigned(partitions)

    def _on_revoke(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        self._owned -= revoked
        self._owed.release(self._consumer, partitions)
        if self._carry:
            self._carry[:] = [m for m in self._carry if (m.topic(), m.partition()) not in revoked]
        forget_lag(self._metrics.consumer_lag, partitions)
        _log.info("revoked %s", describe(partitions))

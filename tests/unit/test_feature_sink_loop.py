"""The feature sink loop's offset protocol, against in-memory stand-ins for Kafka, Redis and PostgreSQL.

One ordered log records the writes and commits, so a test can check that offsets are committed only
after both stores took the batch. tests/integration/test_feature_sink.py checks the same on real services.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import redis
from adnomaly.features.record import ENCODER, FeatureRecord
from adnomaly.kafka_record import HeldRecord
from adnomaly.sinks.config import FeatureView
from adnomaly.sinks.features.metrics import FeatureSinkMetrics
from adnomaly.sinks.features.runner import FeatureSink, FeatureSinkSettings
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from prometheus_client import CollectorRegistry

TOPIC = "features"
VIEW = FeatureView(name="traffic", dimensions=["geo"], metrics=["n"], ttl_s=60)
END = datetime.now(UTC).replace(microsecond=0)


def msg(raw: bytes, part: int, off: int) -> HeldRecord:
    return HeldRecord(raw, part, off, TOPIC)

def message(part: int, off: int, geo: str = "US") -> HeldRecord:
    record = FeatureRecord(feature="traffic", dimensions={"geo": geo}, window_start=END - timedelta(minutes=1),
                           window_end=END + timedelta(seconds=off), metrics={"n": float(off)}, event_count=off)
    return msg(ENCODER.encode(record), part, off)  # fmt: skip


class FakeConsumer:
    def __init__(self, log: list[Any], queued: list[HeldRecord]) -> None:
        self.log = log
        self.queued = queued
        self.callbacks: dict[str, Any] = {}
        self.assigned: set[int] = set()
        self.paused: set[int] = set()
        self.idle_consumes = 0
        self.refusals = 0  # commits to refuse, as Kafka does while a broker restarts

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        self.callbacks = callbacks

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[HeldRecord]:
        if not self.assigned:
            self.assigned = {0, 1}
            self.callbacks["on_assign"](self, [TopicPartition(TOPIC, p) for p in sorted(self.assigned)])
        if self.paused:
            self.idle_consumes += 1
            return []
        out, self.queued = self.queued[:num_messages], self.queued[num_messages:]
        return out

    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool) -> list[TopicPartition]:
        if self.refusals:
            self.refusals -= 1
            self.log.append(("commit-refused", sorted((tp.partition, tp.offset) for tp in offsets)))
            raise KafkaException(KafkaError(KafkaError.REQUEST_TIMED_OUT))
        self.log.append(("commit", sorted((tp.partition, tp.offset) for tp in offsets)))
        return offsets

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition(TOPIC, p) for p in sorted(self.assigned)]

    def pause(self, partitions: list[TopicPartition]) -> None:
        self.paused |= {tp.partition for tp in partitions}

    def resume(self, partitions: list[TopicPartition]) -> None:
        self.paused -= {tp.partition for tp in partitions}

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return []

    def get_watermark_offsets(self, partition: TopicPartition, timeout: float = -1, cached: bool = False) -> Any:
        return 0, 0

    def committed(self, partitions: list[TopicPartition], timeout: float = -1) -> list[TopicPartition]:
        return partitions

    def close(self) -> None:
        self.log.append(("close",))


class FakeOnline:
    def __init__(self, log: list[Any]) -> None:
        self.log = log
        self.failures = 0

    def write(self, writes: list[Any]) -> int:
        if self.failures:
            self.failures -= 1
            self.log.append(("redis-error",))
            raise redis.exceptions.ConnectionError("connection refused")
        self.log.append(("redis", len(writes)))
        return len(writes)

    def close(self) -> None:
        pass


class FakeHistory:
    def __init__(self, log: list[Any]) -> None:
        self.log = log
        self.failures = 0
        self.hook: Any = None

    def ensure_table(self) -> None:
        self.log.append(("ensure",))

    def write(self, rows: list[Any]) -> int:
        if self.hook is not None:
            self.hook()
        if self.failures:
            self.failures -= 1
            self.log.append(("pg-error",))
            raise psycopg.OperationalError("server closed the connection")
        self.log.append(("pg", len(rows)))
        return len(rows)

    def close(self) -> None:
        pass


def make(
    queued: list[HeldRecord], clock: Callable[[], float] = time.monotonic
) -> tuple[FeatureSink, FakeConsumer, FakeOnline, FakeHistory, list[Any]]:
    log: list[Any] = []
    consumer, online, history = FakeConsumer(log, queued), FakeOnline(log), FakeHistory(log)
    sink = FeatureSink(
        FeatureSinkSettings(topic=TOPIC, feast_project="p", batch_size=10, batch_timeout_s=0.01),
        {VIEW.name: VIEW}, consumer, online, history,  # type: ignore[arg-type]
        FeatureSinkMetrics.create(CollectorRegistry()), backoff=lambda _n: 0.001, clock=clock,
    )  # fmt: skip
    assert sink.start()
    return sink, consumer, online, history, log


def test_commit_comes_after_both_stores() -> None:
    sink, _, _, _, log = make([message(0, 0), message(1, 0, geo="DE"), message(0, 1)])
    assert sink.poll_once() == 3
    assert log == [("ensure",), ("redis", 3), ("pg", 3), ("commit", [(0, 2), (1, 1)])]


def test_outages_are_retried_paused_and_nothing_is_committed_meanwhile() -> None:
    sink, consumer, online, history, log = make([message(0, 0), message(0, 1)])
    online.failures, history.failures = 2, 3
    assert sink.poll_once() == 2
    writes = [entry for entry in log if entry[0] != "ensure"]
    assert writes == [("redis-error",), ("redis-error",), ("redis", 2), ("pg-error",), ("pg-error",),
                      ("pg-error",), ("pg", 2), ("commit", [(0, 2)])]  # fmt: skip
    assert consumer.idle_consumes >= 5 and not consumer.paused


def test_a_partition_revoked_during_the_write_is_not_committed() -> None:
    sink, consumer, _, history, log = make([message(0, 0), message(1, 0)])

    def revoke() -> None:
        consumer.callbacks["on_revoke"](consumer, [TopicPartition(TOPIC, 1)])
        consumer.assigned.discard(1)
        history.hook = None

    history.hook = revoke
    sink.poll_once()
    assert log[-1] == ("commit", [(0, 1)])


def test_a_batch_of_only_skipped_records_is_committed() -> None:
    sink, _, _, _, log = make([msg(b"junk", 0, 0), msg(b"{}", 0, 1)])
    assert sink.poll_once() == 2
    assert log[-1] == ("commit", [(0, 2)])
    assert sink.stats.skipped == 2


def test_a_refused_commit_is_owed_and_lands_once_the_topic_idles() -> None:
    """A commit Kafka refuses after the last batch (a broker restarting as the load stops) must still land:
    otherwise the group's lag never returns to zero although everything was stored."""
    now = [0.0]
    sink, consumer, _, _, log = make([message(0, 0), message(0, 1)], clock=lambda: now[0])
    consumer.refusals = 1
    assert sink.poll_once() == 2
    assert log[-1] == ("commit-refused", [(0, 2)])
    assert sink.poll_once() == 0 and log[-1] == ("commit-refused", [(0, 2)])  # not before the retry interval
    now[0] += 1.5
    assert sink.poll_once() == 0
    assert log[-1] == ("commit", [(0, 2)])
    now[0] += 5
    assert sink.poll_once() == 0 and log[-1] == ("commit", [(0, 2)])  # nothing owed: no more commits


def test_a_refused_commit_rides_along_with_the_next_batch() -> None:
    sink, consumer, _, _, log = make([message(1, 0)])
    consumer.refusals = 1
    sink.poll_once()
    consumer.queued.append(message(0, 4))
    sink.poll_once()
    assert log[-1] == ("commit", [(0, 5), (1, 1)])

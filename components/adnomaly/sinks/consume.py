"""What the sinks share around a Kafka consumer: waiting without leaving the group, retrying with
back-off while a store is down, committing offsets, and lag gauges.

While a sink waits (a store is unreachable, it backs off) every assigned partition is paused and
`consume` keeps being called, so the consumer stays in its group (max.poll.interval.ms) without taking
new work; whatever `consume` still returns is handed back to the sink (`keep`) so nothing is dropped.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from confluent_kafka import KafkaException, TopicPartition
from prometheus_client import Counter, Gauge

from adnomaly.kafka_client import PartitionPause
from adnomaly.processor.retry import backoff_delay

_log = logging.getLogger(__name__)

T = TypeVar("T")


class Consumer(Protocol):
    """The parts of confluent_kafka.Consumer the sinks use."""

    def subscribe(self, topics: list[str], **callbacks: Any) -> None: ...
    def consume(self, num_messages: int = ..., timeout: float = ...) -> list[Any]: ...
    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool) -> Any: ...
    def committed(self, partitions: list[TopicPartition], timeout: float = ...) -> list[TopicPartition]: ...
    def assignment(self) -> list[TopicPartition]: ...
    def pause(self, partitions: list[TopicPartition]) -> None: ...
    def resume(self, partitions: list[TopicPartition]) -> None: ...
    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]: ...
    def get_watermark_offsets(self, partition: TopicPartition, timeout: float = ..., cached: bool = ...) -> Any: ...
    def close(self) -> None: ...


class Waiter:
    """Waits and retries on behalf of a sink while keeping its consumer in the group."""

    def __init__(
        self,
        consumer: Consumer,
        keep: Callable[[list[Any]], None],
        *,
        batch: int,
        stopping: Callable[[], bool],
        slice_s: float = 1.0,
        backoff: Callable[[int], float] = backoff_delay,
        clock: Callable[[], float] = time.monotonic,
        retries: Counter | None = None,
    ) -> None:
        self._consumer = consumer
        self._keep = keep
        self._batch = batch
        self._stopping = stopping
        self._slice_s = slice_s
        self._backoff = backoff
        self._clock = clock
        self._retries = retries
        self._pauses = PartitionPause(consumer)

    def idle(self, seconds: float) -> None:
        """Wait `seconds` (less when a stop is requested) with every partition paused."""
        if self._stopping():  # leaving the group anyway: a plain wait
            time.sleep(seconds)
            return
        deadline = self._clock() + seconds
        while not self._stopping():
            left = deadline - self._clock()
            if left <= 0:
                return
            self.pause()  # every time: partitions assigned meanwhile must not deliver either
            late = self._consumer.consume(num_messages=self._batch, timeout=min(left, self._slice_s))
            if late:
                self._keep(late)

    def retry(
        self,
        attempt: Callable[[], T],
        what: str,
        retryable: tuple[type[BaseException], ...],
        *,
        give_up_after: int | None = None,
    ) -> T | None:
        """`attempt()` until it succeeds, backing off between tries with the partitions paused.

        None when a stop is requested meanwhile, or after `give_up_after` failed tries when that is given:
        the caller then leaves its work uncommitted, to be replayed.
        """
        failures = 0
        try:
            while True:
                try:
                    return attempt()
                except retryable as exc:
                    failures += 1
                    if self._retries is not None:
                        self._retries.inc()
                    exhausted = (failures >= give_up_after) if give_up_after is not None else self._stopping()
                    if exhausted:
                        _log.warning("giving up %s after %d attempts (%s); it stays uncommitted and will be "
                                     "replayed", what, failures, one_line(exc))
                        return None
                    delay = self._backoff(failures - 1)
                    _log.warning("%s failed (attempt %d), retrying in %.2fs: %s", what, failures, delay, one_line(exc))
                    self.idle(delay)
        finally:
            if failures:
                self.resume()

    def assigned(self, partitions: list[TopicPartition]) -> None:
        """Call from the sink's on_assign: new partitions deliver unless the sink is waiting right now
        (see PartitionPause)."""
        self._pauses.assigned(partitions)

    def pause(self) -> None:
        self._pauses.pause()

    def resume(self) -> None:
        self._pauses.resume()


def update_lag(consumer: Consumer, gauge: Gauge) -> None:
    """Lag per assigned partition from the cached high watermark and our position (no broker round trip)."""
    assignment = consumer.assignment()
    if not assignment:
        return
    try:
        for tp in consumer.position(assignment):
            if tp.offset < 0:
                continue
            _low, high = consumer.get_watermark_offsets(tp, cached=True)
            if high is not None and high >= 0:
                gauge.labels(tp.topic, str(tp.partition)).set(max(0, high - tp.offset))
    except KafkaException as exc:
        _log.debug("lag update skipped: %s", exc)


def forget_lag(gauge: Gauge, partitions: Sequence[TopicPartition]) -> None:
    for tp in partitions:
        with contextlib.suppress(KeyError):
            gauge.remove(tp.topic, str(tp.partition))


def describe(partitions: Sequence[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions) or "nothing"


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"

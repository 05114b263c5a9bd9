"""Found by the fault suite: a sink whose partitions were revoked while it waited for a store (S3 down and a
Kafka restart at once) got them back paused for good, because librdkafka keeps a partition's pause flag
across a revoke and a later assign. `Waiter.assigned` (called from the sinks' on_assign) clears it."""

from __future__ import annotations

from typing import Any

from adnomaly.sinks.consume import Waiter
from confluent_kafka import TopicPartition

TOPIC = "t-raw"


class StickyPauseConsumer:
    """Pause flags per partition that outlive the assignment, as librdkafka's do."""

    def __init__(self, partitions: list[int]) -> None:
        self.assigned = list(partitions)
        self.paused: set[int] = set()

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition(TOPIC, p) for p in self.assigned]

    def pause(self, partitions: list[TopicPartition]) -> None:
        self.paused |= {tp.partition for tp in partitions}

    def resume(self, partitions: list[TopicPartition]) -> None:
        self.paused -= {tp.partition for tp in partitions}

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Any]:
        return []

    def delivering(self) -> set[int]:
        return set(self.assigned) - self.paused


def tps(*partitions: int) -> list[TopicPartition]:
    return [TopicPartition(TOPIC, p) for p in partitions]


def waiter(consumer: StickyPauseConsumer) -> Waiter:
    return Waiter(consumer, lambda _: None, batch=10, stopping=lambda: False)  # type: ignore[arg-type]


def test_partitions_revoked_while_waiting_deliver_again_when_assigned_back() -> None:
    consumer = StickyPauseConsumer([0, 1, 2])
    w = waiter(consumer)
    w.pause()  # a store is down: the sink waits with its partitions paused
    consumer.assigned = []  # ... and a rebalance revokes them meanwhile
    w.resume()  # the wait ends: nothing is assigned at this moment, nothing is resumed
    assert consumer.paused == {0, 1, 2}  # librdkafka remembers the pause
    consumer.assigned = [0, 1, 2]
    w.assigned(tps(0, 1, 2))  # the sink's on_assign
    assert consumer.delivering() == {0, 1, 2}


def test_partitions_assigned_while_the_sink_waits_stay_paused_until_the_wait_ends() -> None:
    consumer = StickyPauseConsumer([0])
    w = waiter(consumer)
    w.pause()
    consumer.assigned = [0, 1]
    w.assigned(tps(1))
    assert consumer.delivering() == set()
    w.resume()
    assert consumer.delivering() == {0, 1}


def test_a_retry_that_outlived_a_rebalance_leaves_every_partition_delivering() -> None:
    consumer = StickyPauseConsumer([0, 1])
    w = waiter(consumer)
    attempts = []

    def attempt() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError("S3 is down")
        return "written"

    def rebalance(_seconds: float) -> None:  # revoked during the back-off, nothing reassigned yet
        w.pause()
        consumer.assigned = []

    w.idle = rebalance  # type: ignore[method-assign]
    assert w.retry(attempt, "writing", (OSError,)) == "written"
    consumer.assigned = [0, 1]
    w.assigned(tps(0, 1))
    assert consumer.delivering() == {0, 1}

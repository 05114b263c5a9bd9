"""OwedOffsets: a commit Kafka refuses stays owed (highest offset per partition) until a later commit or an
idle retry lands it, or its partition is revoked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from adnomaly.owed_offsets import CommitFailed, OwedOffsets
from confluent_kafka import KafkaError, KafkaException, TopicPartition

T = "raw"


@dataclass
class Committed:
    """A partition of commit()'s answer (confluent-kafka's TopicPartition.error cannot be set in Python)."""

    topic: str
    partition: int
    offset: int
    error: KafkaError | None


class ScriptedConsumer:
    """Answers each commit with the next scripted outcome: None (taken), "all" (refused), or the set of
    partitions refused; records what it was asked to commit and what it took."""

    def __init__(self, partitions: tuple[int, ...] = (0, 1)) -> None:
        self.partitions = list(partitions)
        self.outcomes: list[Any] = []
        self.asked: list[dict[int, int]] = []
        self.taken: dict[int, int] = {}

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition(T, p) for p in self.partitions]

    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool) -> list[Committed]:
        assert asynchronous is False
        self.asked.append({tp.partition: tp.offset for tp in offsets})
        outcome = self.outcomes.pop(0) if self.outcomes else None
        if outcome == "all":
            raise KafkaException(KafkaError(KafkaError.REQUEST_TIMED_OUT))
        refused = outcome or set()
        result = []
        for tp in offsets:
            error = KafkaError(KafkaError.COORDINATOR_NOT_AVAILABLE) if tp.partition in refused else None
            if error is None:
                self.taken[tp.partition] = tp.offset
            result.append(Committed(tp.topic, tp.partition, tp.offset, error))
        return result


def tps(**offsets: int) -> list[TopicPartition]:
    return [TopicPartition(T, int(p[1:]), o) for p, o in offsets.items()]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_refused_commit_is_owed_and_rides_with_the_next_one_at_the_highest_offset() -> None:
    consumer, owed = ScriptedConsumer(), OwedOffsets()
    consumer.outcomes = ["all"]
    with pytest.raises(CommitFailed):
        owed.commit(consumer, tps(p0=5, p1=3))
    assert owed.owed == {(T, 0): 5, (T, 1): 3}
    owed.commit(consumer, tps(p0=9))
    assert consumer.asked[-1] == {0: 9, 1: 3} and consumer.taken == {0: 9, 1: 3}
    assert owed.owed == {}


def test_an_older_offset_never_moves_a_partition_back() -> None:
    consumer, owed = ScriptedConsumer(), OwedOffsets()
    consumer.outcomes = ["all"]
    with pytest.raises(CommitFailed):
        owed.commit(consumer, tps(p0=9))
    owed.commit(consumer, tps(p0=4))
    assert consumer.taken == {0: 9}


def test_a_partial_refusal_keeps_only_the_refused_partitions_owed() -> None:
    consumer, owed = ScriptedConsumer(), OwedOffsets()
    consumer.outcomes = [{1}]
    with pytest.raises(CommitFailed, match=r"raw\[1\]"):
        owed.commit(consumer, tps(p0=5, p1=3))
    assert consumer.taken == {0: 5} and owed.owed == {(T, 1): 3}


def test_retry_waits_for_its_interval_and_stops_once_nothing_is_owed() -> None:
    clock = Clock()
    consumer, owed = ScriptedConsumer(), OwedOffsets(retry_interval_s=1.0, clock=clock)
    assert owed.retry(consumer) and consumer.asked == []  # nothing owed: no commit at all
    consumer.outcomes = ["all", "all"]
    with pytest.raises(CommitFailed):
        owed.commit(consumer, tps(p0=5))
    assert not owed.retry(consumer) and len(consumer.asked) == 1  # too soon
    clock.now = 1.0
    assert not owed.retry(consumer) and len(consumer.asked) == 2  # refused again
    clock.now = 1.5
    assert not owed.retry(consumer) and len(consumer.asked) == 2
    clock.now = 2.0
    assert owed.retry(consumer) and consumer.taken == {0: 5}
    clock.now = 10.0
    assert owed.retry(consumer) and len(consumer.asked) == 3


def test_offsets_of_partitions_no_longer_assigned_are_dropped_not_committed() -> None:
    consumer, owed = ScriptedConsumer(), OwedOffsets()
    consumer.outcomes = ["all"]
    with pytest.raises(CommitFailed):
        owed.commit(consumer, tps(p0=5, p1=3))
    consumer.partitions = [1]
    owed.commit(consumer, [])
    assert consumer.asked[-1] == {1: 3} and owed.owed == {}


def test_release_tries_once_more_for_the_revoked_partitions_then_forgets_them() -> None:
    consumer, owed = ScriptedConsumer(), OwedOffsets()
    consumer.outcomes = ["all"]
    with pytest.raises(CommitFailed):
        owed.commit(consumer, tps(p0=5, p1=3))
    owed.release(consumer, tps(p0=0))  # still assigned while the callback runs: the last try lands
    assert consumer.taken == {0: 5, 1: 3} and owed.owed == {}

    consumer.outcomes = ["all", "all"]
    with pytest.raises(CommitFailed):
        owed.commit(consumer, tps(p0=8, p1=6))
    owed.release(consumer, tps(p0=0))  # refused: partition 0 is forgotten, partition 1 stays owed
    assert owed.owed == {(T, 1): 6}


def test_release_of_partitions_owing_nothing_commits_nothing() -> None:
    consumer, owed = ScriptedConsumer(), OwedOffsets()
    owed.release(consumer, tps(p0=0))
    assert consumer.asked == []

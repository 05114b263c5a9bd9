"""The run's dead-letter count on real Kafka: replayed copies of a processor dead letter count once, the ingest
API's letters (no identity) each count, and a later count reads only what arrived since the last one."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from adnomaly.events.dead_letter import INGEST, PROCESSOR, dead_letter_headers
from adnomaly.kafka_client import producer_config
from adnomaly.local.dead_letter_count import DistinctDeadLetters
from adnomaly.services.kafka import KafkaBroker
from confluent_kafka import Producer

pytestmark = pytest.mark.integration


def processor_letter(partition: int, offset: int) -> list[tuple[str, bytes]]:
    position = [("source_topic", "raw"), ("source_partition", str(partition)), ("source_offset", str(offset))]
    return dead_letter_headers(code="malformed_json", detail="x", source=PROCESSOR, position=position,
                               pipeline="p", value_length=3)  # fmt: skip


def ingest_letter(line: int) -> list[tuple[str, bytes]]:
    return dead_letter_headers(code="empty", detail="x", source=INGEST, position=[("source_line", str(line))],
                               pipeline="p", value_length=0)  # fmt: skip


def send(bootstrap: str, topic: str, letters: list[tuple[int, list[tuple[str, bytes]]]]) -> None:
    producer = Producer(producer_config(bootstrap))
    for partition, headers in letters:
        producer.produce(topic, value=b"bad", partition=partition, headers=headers)
    assert producer.flush(30) == 0


def test_replayed_copies_count_once_and_counting_goes_on_from_where_it_stopped(
    kafka: KafkaBroker, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory(partitions=2)
    bootstrap = kafka.bootstrap_servers
    count = DistinctDeadLetters(bootstrap, topic)
    try:
        assert count.count() == 0  # an empty topic
        first = [(0, processor_letter(0, offset)) for offset in range(50)]
        first += [(1, processor_letter(1, offset)) for offset in range(30)]
        first += [(1, ingest_letter(line)) for line in (1, 1, 2)]  # the same line of two requests: two letters
        send(bootstrap, topic, first)
        assert count.count() == 50 + 30 + 3
        # A batch replayed after a crash: the same records dead-lettered again, on either partition.
        replay = [(0, processor_letter(0, offset)) for offset in range(40, 50)] + [(1, processor_letter(0, 45))]
        send(bootstrap, topic, [*replay, (0, processor_letter(0, 50)), (1, ingest_letter(7))])
        assert count.count() == 50 + 30 + 3 + 2
        assert count.count() == 85  # nothing new: the same answer
        assert DistinctDeadLetters(bootstrap, topic).count() == 85  # a fresh reader agrees from the start
    finally:
        count.close()

"""`readable_ends` on a real broker: on a transactional topic a drained consumer group commits just past
the last *committed* record, short of the high watermark (commit and abort markers, aborted records)."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from adnomaly.kafka_client import producer_config, readable_ends
from adnomaly.services.kafka import KafkaBroker
from confluent_kafka import Consumer, Producer, TopicPartition


def high_watermark(bootstrap: str, topic: str, partition: int) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"hw-{uuid.uuid4().hex[:6]}"})
    try:
        return consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1]
    finally:
        consumer.close()


def test_the_end_skips_markers_and_a_trailing_aborted_transaction(
    kafka: KafkaBroker, topic_factory: Callable[..., str]
) -> None:
    bootstrap = kafka.bootstrap_servers
    topic = topic_factory(partitions=3)
    producer = Producer(producer_config(bootstrap, **{"transactional.id": f"ends-{uuid.uuid4().hex[:6]}"}))
    producer.init_transactions(30)
    producer.begin_transaction()
    for i in range(5):
        producer.produce(topic, value=b"kept", partition=0 if i < 3 else 1)
    producer.commit_transaction(30)
    producer.begin_transaction()
    for _ in range(4):
        producer.produce(topic, value=b"aborted", partition=0)
    producer.flush(30)
    producer.abort_transaction(30)

    # partition 0: 3 kept, a commit marker, 4 aborted, an abort marker; 1: 2 kept, a marker; 2: empty
    assert [high_watermark(bootstrap, topic, p) for p in range(3)] == [9, 3, 0]
    assert readable_ends(bootstrap, topic, 3) == {0: 3, 1: 2, 2: 0}

"""Read a raw-topic partition back over a span of time: the durable copy of the lake's dedup state.

`TopicHistory.read(topic, partition, since_ms, end_offset)` returns (event id, Kafka timestamp) of every
message from the first offset whose timestamp is ≥ `since_ms` up to `end_offset` (exclusive), using a
consumer of its own (assigned, never subscribed, never committing: the sink's group is not touched). The
ids come from the same codec the sink writes with, so a derived id is derived the same way. See dedup.py
for why and when it is read.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from adnomaly.events.codec import InvalidEvent, ValidEvent
from adnomaly.kafka_record import message_timestamp
from adnomaly.sinks.lake.dedup import Seen

_log = logging.getLogger(__name__)


class History(Protocol):
    def read(self, topic: str, partition: int, since_ms: int, end_offset: int) -> list[Seen]: ...


class TopicHistory:
    def __init__(
        self, config: dict[str, Any], decode: Callable[[bytes], ValidEvent], *, timeout_s: float = 60.0
    ) -> None:
        # A group id is required by the client but unused: the consumer is assigned and never commits.
        self._config = {**config, "enable.auto.commit": False, "enable.partition.eof": True}
        self._decode = decode
        self._timeout_s = timeout_s

    def read(self, topic: str, partition: int, since_ms: int, end_offset: int) -> list[Seen]:
        if end_offset <= 0:
            return []  # the partition's very first message: nothing before it
        consumer = Consumer(self._config)
        try:
            [start] = consumer.offsets_for_times([TopicPartition(topic, partition, max(0, since_ms))], timeout=10)
            if start.error is not None:
                raise KafkaException(start.error)
            first = end_offset if start.offset < 0 else min(start.offset, end_offset)  # -1: none that new
            if first >= end_offset:
                return []
            consumer.assign([TopicPartition(topic, partition, first)])
            seen: list[Seen] = []
            deadline = time.monotonic() + self._timeout_s
            while True:
                for message in consumer.consume(5000, timeout=0.5):
                    if message.error() is not None:
                        if message.error().code() == KafkaError._PARTITION_EOF:
                            return seen  # the partition ends before end_offset (it cannot here, but stop)
                        continue
                    if message.offset() >= end_offset:
                        return seen
                    seen.append(Seen(self._event_id(message.value() or b""), message_timestamp(message)))
                    if message.offset() == end_offset - 1:
                        return seen
                if time.monotonic() > deadline:
                    raise TimeoutError(f"reading {topic}[{partition}] back to {end_offset} took too long")
        finally:
            consumer.close()

    def _event_id(self, value: bytes) -> str | None:
        try:
            return self._decode(value).event_id
        except InvalidEvent:
            return None

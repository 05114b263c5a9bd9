"""How many dead letters a run produced, counted once each, as the dead-letter contract asks of a reader.

The processor's dead letters are at least once on the topic: a batch replayed after a crash, or after a
commit the broker refused while it restarted, dead-letters its invalid records again, each copy with the
same `dead_letter_id` (see `adnomaly.events.dead_letter`). The topic's end offsets count the copies, so a
run whose broker was killed once showed `stored + dlq` one above `produced + ingested` although nothing was
duplicated where it matters. A count that must balance reads the letters and counts identities.

Reading is incremental: one consumer, assigned to every partition of the topic, keeps its position between
samples and reads only what arrived since the last one, so a sample costs what is new, not the topic. The
identities seen are kept for the life of the count: one short string per processor dead letter (invalid
events are a small share of a run's traffic; a local run's dead-letter topic holds thousands, not
millions).
"""

from __future__ import annotations

import threading
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from adnomaly.events.dead_letter import dead_letter_id
from adnomaly.kafka_client import consumer_config

# A topic created a moment ago may have no leader yet: asking again shortly is the answer.
NOT_READY = (KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE, KafkaError.UNKNOWN_TOPIC_OR_PART)
_BEGINNING = -2  # librdkafka's OFFSET_BEGINNING


def watermarks(consumer: Consumer, topic: str, partition: int, timeout: float, deadline: float) -> tuple[int, int]:
    """The partition's (low, high) watermarks, asked again while its topic has no leader yet (until `deadline`,
    a `time.monotonic()` value)."""
    while True:
        try:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)
            return low, high
        except KafkaException as exc:
            if exc.args[0].code() not in NOT_READY or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


class DistinctDeadLetters:
    """The distinct dead letters on `topic` up to its end at the time of `count()`."""

    def __init__(self, bootstrap: str, topic: str, timeout: float = 10.0) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.timeout = timeout
        self._consumer: Consumer | None = None
        self._next: dict[int, int] = {}  # partition -> next offset to read
        self._seen: set[str] = set()
        self._anonymous = 0  # letters without an identity (the ingest API's): each distinct by itself
        self._lock = threading.Lock()

    def count(self) -> int:
        """Read what arrived since the last count; the number of distinct dead letters so far."""
        with self._lock:
            consumer = self._open()
            deadline = time.monotonic() + self.timeout
            ends = {p: self._end(consumer, p, deadline) for p in self._next}
            while any(self._next[p] < end for p, end in ends.items()):
                if time.monotonic() > deadline:
                    raise KafkaException(KafkaError(KafkaError._TIMED_OUT, f"reading {self.topic} timed out"))
                for message in consumer.consume(num_messages=10_000, timeout=0.5):
                    error = message.error()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            continue
                        raise KafkaException(error)
                    self._next[message.partition()] = message.offset() + 1
                    identity = dead_letter_id(message.headers())
                    if identity is None:
                        self._anonymous += 1
                    else:
                        self._seen.add(identity)
            return len(self._seen) + self._anonymous

    def close(self) -> None:
        with self._lock:
            if self._consumer is not None:
                self._consumer.close()
                self._consumer = None

    def _open(self) -> Consumer:
        if self._consumer is None:
            # Never commits, never joins a group (assign, not subscribe): reading does not disturb anyone.
            consumer = Consumer(consumer_config(self.bootstrap, "adnomaly-progress"))
            try:
                metadata = consumer.list_topics(self.topic, timeout=self.timeout)
                partitions = sorted(metadata.topics[self.topic].partitions)
                consumer.assign([TopicPartition(self.topic, p, _BEGINNING) for p in partitions])
            except BaseException:
                consumer.close()
                raise
            self._consumer = consumer
            self._next = dict.fromkeys(partitions, 0)
        return self._consumer

    def _end(self, consumer: Consumer, partition: int, deadline: float) -> int:
        """The partition's end offset; a partition whose start was deleted by retention is read from its start."""
        low, high = watermarks(consumer, self.topic, partition, self.timeout, deadline)
        self._next[partition] = max(self._next[partition], low)
        return high

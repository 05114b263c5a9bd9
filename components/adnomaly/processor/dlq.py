"""The dead-letter topic: invalid events keep their original bytes and key, plus headers saying why.

Headers follow the one contract of `adnomaly.events.dead_letter` (source `processor`, position
`source_topic`, `source_partition`, `source_offset`; `truncated_from` / `key_truncated_from` when the value
or key was too long to dead-letter whole and was cut). `DeadLetterQueue.confirm` returns True only once
Kafka has acknowledged every dead letter of the batch; the processor commits the batch's offsets only after
that.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

from adnomaly.events.codec import DLQ_MAX_KEY_BYTES, DLQ_MAX_VALUE_BYTES
from adnomaly.events.dead_letter import PROCESSOR
from adnomaly.events.dead_letter import dead_letter_headers as headers_of
from adnomaly.kafka_record import message_timestamp
from adnomaly.processor.batch import DeadLetter

_log = logging.getLogger(__name__)


class Producer(Protocol):
    """The parts of confluent_kafka.Producer used here."""

    def produce(self, topic: str, value: Any = ..., key: Any = ..., **kwargs: Any) -> None: ...
    def poll(self, timeout: float = ...) -> int: ...
    def flush(self, timeout: float = ...) -> int: ...


def dead_letter_headers(letter: DeadLetter, pipeline: str) -> list[tuple[str, bytes]]:
    msg = letter.message
    value, key = msg.value(), msg.key()
    position = (("source_topic", msg.topic() or ""), ("source_partition", str(msg.partition())),
                ("source_offset", str(msg.offset())))
    # The raw topic took it, but the dead-letter producer would refuse it whole (and the batch with it).
    return headers_of(code=letter.code, detail=letter.detail, source=PROCESSOR, position=position, pipeline=pipeline,
                      value_length=None if value is None else len(value), key_length=None if key is None else len(key))


class DeadLetterQueue:
    """Sends one batch's dead letters and tracks their acknowledgements (re-sending the ones that failed)."""

    def __init__(self, producer: Producer, topic: str, pipeline: str) -> None:
        self._producer = producer
        self.topic = topic
        self.pipeline = pipeline
        self._unacked = 0
        self._failed: list[DeadLetter] = []

    def send(self, letters: Sequence[DeadLetter]) -> None:
        """Start producing `letters` (returns at once; `confirm` waits for the acknowledgements)."""
        for letter in letters:
            self._produce(letter)

    def confirm(self, timeout: float) -> bool:
        """Wait up to `timeout` s; True when every letter sent is acknowledged. Failed ones are re-sent."""
        if self._unacked == 0 and not self._failed:
            return True
        self._producer.flush(timeout)
        if self._failed:
            failed, self._failed = self._failed, []
            for letter in failed:
                self._produce(letter)
            return False
        return self._unacked == 0

    def close(self, timeout: float = 10.0) -> None:
        """Deliver what is in flight (at most `timeout` s), then release the producer, which would otherwise keep
        reconnecting to the broker until it is garbage-collected. Letters still undelivered then belong to
        batches that were not committed, so they come back with the replay; the producer is left open then,
        as its `close()` would wait for them without a bound."""
        remaining = self._producer.flush(timeout)
        if remaining:
            _log.warning("%d dead letters not delivered at close: their batches are replayed", remaining)
            return
        self._producer.close()

    def _produce(self, letter: DeadLetter) -> None:
        msg = letter.message

        def on_delivery(err: Any, _msg: Any) -> None:
            self._unacked -= 1
            if err is not None:
                _log.warning(
                    "dead letter for %s[%s]@%s not delivered: %s", msg.topic(), msg.partition(), msg.offset(), err
                )
                self._failed.append(letter)

        headers = dead_letter_headers(letter, self.pipeline)
        value, key = msg.value(), msg.key()
        value, key = value and value[:DLQ_MAX_VALUE_BYTES], key and key[:DLQ_MAX_KEY_BYTES]
        # The dead letter keeps its raw record's timestamp, so the `_dlq` windows count it where it arrived.
        timestamp = message_timestamp(msg)
        stamp = {"timestamp": timestamp} if timestamp else {}
        self._unacked += 1
        while True:
            try:
                self._producer.produce(
                    self.topic, value=value, key=key, headers=headers, on_delivery=on_delivery, **stamp
                )
                return
            except BufferError:  # local queue full: serve delivery reports, then try again
                self._producer.poll(0.1)

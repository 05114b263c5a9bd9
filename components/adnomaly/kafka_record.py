"""A Kafka record held in memory, with the read side of `confluent_kafka.Message`.

The consuming components read records only through a few accessors (the `Message` protocols of the
processor, the sinks and the detector), so anything with those accessors can be consumed. Benchmarks that
replay prepared records without a broker, and unit tests that feed a consume loop, hand them this one
class instead of each spelling out a stand-in of its own (the fields carry a trailing `_` or a short name
where the accessor takes the plain one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from confluent_kafka import TIMESTAMP_CREATE_TIME, TIMESTAMP_NOT_AVAILABLE


@dataclass(frozen=True, slots=True)
class HeldRecord:
    raw: bytes | None
    part: int = 0
    off: int = 0
    topic_: str = "raw"
    key_: bytes | None = None
    ts: int = 0  # the record's create time, epoch milliseconds
    err: Any = None  # what `error()` answers (a KafkaError, or anything a test wants to see handled)
    headers_: list[tuple[str, bytes]] | None = None

    def error(self) -> Any:
        return self.err

    def value(self) -> bytes | None:
        return self.raw

    def key(self) -> bytes | None:
        return self.key_

    def topic(self) -> str:
        return self.topic_

    def partition(self) -> int:
        return self.part

    def offset(self) -> int:
        return self.off

    def timestamp(self) -> tuple[int, int]:
        return TIMESTAMP_CREATE_TIME, self.ts

    def headers(self) -> list[tuple[str, bytes]] | None:
        return self.headers_


def message_timestamp(message: Any, default: int = 0) -> int:
    """The record's timestamp in epoch milliseconds (create or log-append time), `default` when it has none."""
    kind, timestamp = message.timestamp()
    return int(timestamp) if kind != TIMESTAMP_NOT_AVAILABLE and timestamp > 0 else default

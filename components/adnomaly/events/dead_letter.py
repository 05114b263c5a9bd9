"""One header contract for every dead letter, whichever component wrote it.

A dead letter keeps the original bytes (cut at the topic's limit) and says in its headers why it was
refused and where it came from, so one consumer of the dead-letter topic can read them all alike:

    reason        "<reason_code>: <detail>", at most MAX_REASON_BYTES
    reason_code   a stable code (the `adnomaly_dlq_events_total{reason_code}` label), e.g. malformed_json
    source        who refused it: "processor" (read from the raw topic) or "ingest" (a line of a request)
    position      where it was: source_topic, source_partition, source_offset for the processor;
                  source_line (1-based line of the request body) for the ingest API
    pipeline      the Pipeline's name
    truncated_from / key_truncated_from   the original length, when the value / key was cut
    dead_letter_id  "<source_topic>/<source_partition>/<source_offset>" for a dead letter of a Kafka record
                  (the processor's): the same for every copy of it

The writers build their headers here and nowhere else, so the contract cannot drift between them.

Exactly once, for readers. The processor commits its offsets after the batch's dead letters are
acknowledged, so a crash in between replays the batch and dead-letters its invalid records again: the
topic holds them at least once. Rather than Kafka transactions around every batch (one transaction commit
per batch on the hot path, every reader switched to read_committed, and the processor's pipelined batches
serialised), each dead letter carries an identity that is a function of the record it stands for:
`dead_letter_id`. A reader counts or shows `distinct_dead_letters(...)`, i.e. one per identity; dead letters
without one (the ingest API's: one per refused line of a request, produced once by an idempotent producer)
are each distinct.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol, TypeVar

from adnomaly.events.codec import DLQ_MAX_KEY_BYTES, DLQ_MAX_VALUE_BYTES

MAX_REASON_BYTES = 1024
PROCESSOR = "processor"
INGEST = "ingest"
DEAD_LETTER_ID = "dead_letter_id"
_KAFKA_POSITION = ("source_topic", "source_partition", "source_offset")


def dead_letter_headers(
    *,
    code: str,
    detail: str,
    source: str,
    position: Sequence[tuple[str, str]],
    pipeline: str,
    value_length: int | None,
    key_length: int | None = None,
) -> list[tuple[str, bytes]]:
    """The headers of one dead letter (see the module docstring); lengths are the original ones."""
    headers = [
        ("reason", f"{code}: {detail}".encode()[:MAX_REASON_BYTES]),
        ("reason_code", code.encode()),
        ("source", source.encode()),
        *((name, value.encode()) for name, value in position),
        ("pipeline", pipeline.encode()),
    ]
    where = dict(position)
    if all(name in where for name in _KAFKA_POSITION):
        headers.append((DEAD_LETTER_ID, "/".join(where[name] for name in _KAFKA_POSITION).encode()))
    if value_length is not None and value_length > DLQ_MAX_VALUE_BYTES:
        headers.append(("truncated_from", str(value_length).encode()))
    if key_length is not None and key_length > DLQ_MAX_KEY_BYTES:
        headers.append(("key_truncated_from", str(key_length).encode()))
    return headers


class _Message(Protocol):
    def headers(self) -> Any: ...


M = TypeVar("M", bound=_Message)


def dead_letter_id(headers: Iterable[tuple[str, bytes | None]] | None) -> str | None:
    """The identity of a dead letter from its headers (None: it has none, it is distinct by itself)."""
    for name, value in headers or ():
        if name == DEAD_LETTER_ID and value is not None:
            return value.decode(errors="replace")
    return None


def distinct_dead_letters(messages: Iterable[M]) -> list[M]:
    """The dead letters with one per identity (the first copy): what a reader counts, exactly once."""
    seen: set[str] = set()
    out = []
    for message in messages:
        identity = dead_letter_id(message.headers())
        if identity is not None:
            if identity in seen:
                continue
            seen.add(identity)
        out.append(message)
    return out

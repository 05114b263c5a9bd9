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

The writers build their headers here and nowhere else, so the contract cannot drift between them.
"""

from __future__ import annotations

from collections.abc import Sequence

from adnomaly.events.codec import DLQ_MAX_KEY_BYTES, DLQ_MAX_VALUE_BYTES

MAX_REASON_BYTES = 1024
PROCESSOR = "processor"
INGEST = "ingest"


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
    if value_length is not None and value_length > DLQ_MAX_VALUE_BYTES:
        headers.append(("truncated_from", str(value_length).encode()))
    if key_length is not None and key_length > DLQ_MAX_KEY_BYTES:
        headers.append(("key_truncated_from", str(key_length).encode()))
    return headers

"""The limits the bad-input corpus found missing, each pinned at its boundary (pure, no services)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest
from adnomaly.events import InvalidEvent, codec_for
from adnomaly.events.codec import (
    DLQ_MAX_KEY_BYTES,
    DLQ_MAX_VALUE_BYTES,
    INVALID_TIME,
    MALFORMED_JSON,
    UNSTORABLE,
)
from adnomaly.ingest.body import MAX_LINES, BodyError, check_line_count
from adnomaly.kafka_record import HeldRecord
from adnomaly.processor.batch import DeadLetter, copy_row
from adnomaly.processor.dlq import DeadLetterQueue, dead_letter_headers

NOW = datetime.now(UTC).replace(microsecond=0)
PROBE = {"node_id": "n1", "node_name": "edge-1", "region": "eu-west", "latency_ms": 12.5, "uptime": 3600,
         "packet_loss": 0.001, "ts": NOW.isoformat(), "metadata": {}}  # fmt: skip


def code_of(raw: bytes) -> str | None:
    try:
        codec_for(schema="probe").decode(raw)
    except InvalidEvent as exc:
        return exc.code
    return None


def test_nesting_beyond_the_decoder_is_malformed_json_not_a_recursion_error() -> None:
    deep = msgspec.json.encode(PROBE).replace(b'"metadata":{}', b'"metadata":' + b'{"a":' * 5000 + b"1" + b"}" * 5000)
    assert code_of(deep) == MALFORMED_JSON
    custom = codec_for(json_schema={"type": "object"}, time_field="ts")
    with pytest.raises(InvalidEvent) as info:
        custom.decode(b"[" * 5000 + b"]" * 5000)
    assert info.value.code == MALFORMED_JSON


@pytest.mark.parametrize(
    ("text", "code"),
    [("a\\u0000b", UNSTORABLE), ("a\\\\u0000b", None), ("a\\\\\\u0000b", UNSTORABLE), ("\\u00001", UNSTORABLE)],
)
def test_a_nul_escape_is_unstorable_but_the_text_backslash_u0000_is_not(text: str, code: str | None) -> None:
    raw = msgspec.json.encode(PROBE).replace(b'"node_name":"edge-1"', b'"node_name":"' + text.encode() + b'"')
    assert code_of(raw) == code


@pytest.mark.parametrize(
    ("offset", "code"),
    [(timedelta(hours=15, minutes=59), None), (-timedelta(hours=15, minutes=59), None),
     (timedelta(hours=16), INVALID_TIME), (-timedelta(hours=23, minutes=59), INVALID_TIME)],
)  # fmt: skip
def test_utc_offsets_beyond_what_postgresql_stores_are_invalid_time(offset: timedelta, code: str | None) -> None:
    raw = msgspec.json.encode({**PROBE, "ts": NOW.astimezone(timezone(offset)).isoformat()})
    assert code_of(raw) == code


def test_ndjson_line_limit() -> None:
    check_line_count(b"{}\n" * MAX_LINES)  # a trailing newline ends the last line, it starts none
    check_line_count(b"\n" * (MAX_LINES - 1) + b"{}")
    with pytest.raises(BodyError) as info:
        check_line_count(b"\n" * MAX_LINES + b"{}")
    assert (info.value.status, info.value.code) == (413, "too_many_lines")


def test_copy_rows_escape_json_whitespace() -> None:
    payload = b'{\r\n\t"a": "x\\\\y"\r\n}'
    row = copy_row("id-1", payload, 2, 7)
    assert row == b'id-1\t{\\r\\n\\t"a": "x\\\\\\\\y"\\r\\n}\t2\t7\n'
    assert row.count(b"\t") == 3 and row.count(b"\n") == 1 and b"\r" not in row


class Producer:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def produce(self, topic: str, value: Any = None, key: Any = None, **kwargs: Any) -> None:
        self.sent.append({"value": value, "key": key, "headers": dict(kwargs["headers"])})

    def poll(self, timeout: float = 0.0) -> int:
        return 0

    def flush(self, timeout: float = 0.0) -> int:
        return 0


def test_dead_letters_too_big_for_a_producer_are_cut_and_say_so() -> None:
    big = HeldRecord(b"v" * (DLQ_MAX_VALUE_BYTES + 10), 0, 5, key_=b"k" * (DLQ_MAX_KEY_BYTES + 3))
    small = HeldRecord(b"{", 0, 6)
    producer = Producer()
    DeadLetterQueue(producer, "dlq", "p").send([DeadLetter(big, "oversize", "too big"), DeadLetter(small, "x", "y")])
    cut, whole = producer.sent
    assert cut["value"] == big.raw[:DLQ_MAX_VALUE_BYTES] and cut["key"] == big.key_[:DLQ_MAX_KEY_BYTES]
    assert cut["headers"]["truncated_from"] == str(DLQ_MAX_VALUE_BYTES + 10).encode()
    assert cut["headers"]["key_truncated_from"] == str(DLQ_MAX_KEY_BYTES + 3).encode()
    assert whole["value"] == b"{" and whole["key"] is None
    assert "truncated_from" not in whole["headers"] and "key_truncated_from" not in whole["headers"]
    assert dict(dead_letter_headers(DeadLetter(small, "x", "y"), "p"))["reason"] == b"x: y"

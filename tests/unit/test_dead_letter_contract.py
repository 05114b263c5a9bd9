"""Every writer of dead letters follows one header contract (adnomaly.events.dead_letter)."""

from __future__ import annotations

from adnomaly.events.codec import DLQ_MAX_VALUE_BYTES
from adnomaly.events.dead_letter import MAX_REASON_BYTES
from adnomaly.ingest.batch import Rejection
from adnomaly.ingest.sink import dlq_headers
from adnomaly.processor.batch import DeadLetter
from adnomaly.processor.dlq import dead_letter_headers

COMMON = {"reason", "reason_code", "source", "pipeline"}


class Msg:
    def __init__(self, value: bytes) -> None:
        self._value = value

    def value(self) -> bytes:
        return self._value

    def key(self) -> bytes:
        return b"k"

    def topic(self) -> str:
        return "p-raw"

    def partition(self) -> int:
        return 2

    def offset(self) -> int:
        return 41


def test_the_processor_and_the_ingest_api_write_the_same_headers_besides_the_position() -> None:
    raw = b"x" * (DLQ_MAX_VALUE_BYTES + 1)
    processor = dict(dead_letter_headers(DeadLetter(Msg(raw), "malformed_json", "bad"), "p"))  # type: ignore[arg-type]
    ingest = dict(dlq_headers(Rejection(3, "malformed_json", "bad", raw), "p"))
    assert set(processor) - {"source_topic", "source_partition", "source_offset"} == set(ingest) - {"source_line"}
    assert COMMON | {"truncated_from"} <= set(processor)
    for key in ("reason", "reason_code", "pipeline", "truncated_from"):
        assert processor[key] == ingest[key], key
    assert (processor["source"], ingest["source"]) == (b"processor", b"ingest")
    assert ingest["source_line"] == b"3" and processor["source_offset"] == b"41"


def test_a_long_reason_is_cut_the_same_way_for_both() -> None:
    detail = "y" * 5000
    processor = dict(dead_letter_headers(DeadLetter(Msg(b"{}"), "schema_violation", detail), "p"))  # type: ignore[arg-type]
    ingest = dict(dlq_headers(Rejection(1, "schema_violation", detail, b"{}"), "p"))
    assert len(processor["reason"]) == len(ingest["reason"]) == MAX_REASON_BYTES

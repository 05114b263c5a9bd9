"""Every writer of dead letters follows one header contract (adnomaly.events.dead_letter)."""

from __future__ import annotations

from adnomaly.events.codec import DLQ_MAX_VALUE_BYTES
from adnomaly.events.dead_letter import DEAD_LETTER_ID, MAX_REASON_BYTES, dead_letter_id, distinct_dead_letters
from adnomaly.ingest.batch import Rejection
from adnomaly.ingest.sink import dlq_headers
from adnomaly.kafka_record import HeldRecord
from adnomaly.processor.batch import DeadLetter
from adnomaly.processor.dlq import dead_letter_headers

COMMON = {"reason", "reason_code", "source", "pipeline"}


def msg(raw: bytes) -> HeldRecord:
    return HeldRecord(raw, 2, 41, "p-raw", b"k")

def test_the_processor_and_the_ingest_api_write_the_same_headers_besides_the_position() -> None:
    raw = b"x" * (DLQ_MAX_VALUE_BYTES + 1)
    processor = dict(dead_letter_headers(DeadLetter(msg(raw), "malformed_json", "bad"), "p"))  # type: ignore[arg-type]
    ingest = dict(dlq_headers(Rejection(3, "malformed_json", "bad", raw), "p"))
    kafka_position = {"source_topic", "source_partition", "source_offset", "dead_letter_id"}
    assert set(processor) - kafka_position == set(ingest) - {"source_line"}
    assert COMMON | {"truncated_from"} <= set(processor)
    for key in ("reason", "reason_code", "pipeline", "truncated_from"):
        assert processor[key] == ingest[key], key
    assert (processor["source"], ingest["source"]) == (b"processor", b"ingest")
    assert ingest["source_line"] == b"3" and processor["source_offset"] == b"41"


def test_a_long_reason_is_cut_the_same_way_for_both() -> None:
    detail = "y" * 5000
    processor = dict(dead_letter_headers(DeadLetter(msg(b"{}"), "schema_violation", detail), "p"))  # type: ignore[arg-type]
    ingest = dict(dlq_headers(Rejection(1, "schema_violation", detail, b"{}"), "p"))
    assert len(processor["reason"]) == len(ingest["reason"]) == MAX_REASON_BYTES


class Letter:
    def __init__(self, headers: list[tuple[str, bytes]]) -> None:
        self._headers = headers

    def headers(self) -> list[tuple[str, bytes]]:
        return self._headers


def test_a_replayed_dead_letter_has_the_same_identity_and_readers_count_it_once() -> None:
    """The processor replays a batch after a crash between the dead letters and the offset commit: the
    copies carry the identity of the record they stand for, so a reader keeps one of each."""
    first = dead_letter_headers(DeadLetter(msg(b"{"), "malformed_json", "bad"), "p")  # type: ignore[arg-type]
    replayed = dead_letter_headers(DeadLetter(msg(b"{"), "malformed_json", "bad"), "p")  # type: ignore[arg-type]
    assert dict(first)[DEAD_LETTER_ID] == b"p-raw/2/41" and first == replayed
    other = [(k, b"p-raw/2/42" if k == DEAD_LETTER_ID else v) for k, v in first]
    ingest = dlq_headers(Rejection(3, "malformed_json", "bad", b"{"), "p")
    assert dead_letter_id(ingest) is None  # one per refused line, produced once: distinct by itself
    letters = [Letter(first), Letter(replayed), Letter(other), Letter(ingest), Letter(list(ingest))]
    assert distinct_dead_letters(letters) == [letters[0], letters[2], letters[3], letters[4]]

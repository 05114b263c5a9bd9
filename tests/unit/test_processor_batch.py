"""Processor, pure parts: batch preparation (COPY rows, dead letters, offsets), DLQ headers, back-off."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from adnomaly.events.codec import EMPTY, MALFORMED_JSON, SCHEMA_VIOLATION, ValidEvent, codec_for
from adnomaly.events.dead_letter import MAX_REASON_BYTES
from adnomaly.kafka_record import HeldRecord
from adnomaly.processor.batch import INTERNAL_ERROR, UNSTORABLE, DeadLetter, Unstorable, copy_row, prepare_batch
from adnomaly.processor.dlq import dead_letter_headers
from adnomaly.processor.retry import backoff_delay
from hypothesis import given
from hypothesis import strategies as st

NOW = datetime.now(UTC).replace(microsecond=0)
CLICK = {
    "timestamp": NOW.isoformat(),
    "user_id_hash": "a1b2c3",
    "ad_id": "ad-1",
    "campaign_id": "c-1",
    "geo": "US",
    "platform": "ios",
    "user_agent": "Mozilla/5.0",
    "CPC": 0.5,
    "CTR": 0.02,
    "conversion": 0,
    "bounce_rate": 0.4,
}


msg = HeldRecord

def click(**changes: Any) -> bytes:
    return msgspec.json.encode({**CLICK, **changes})


def unescape_copy_field(field: bytes) -> bytes:
    """PostgreSQL's COPY text-format unescaping (the subset copy_row produces)."""
    table = {b"\\\\": b"\\", b"\\t": b"\t", b"\\n": b"\n", b"\\r": b"\r"}
    return re.sub(rb"\\[\\tnr]", lambda m: table[m.group(0)], field)


def parse_copy_row(row: bytes) -> list[bytes]:
    assert row.endswith(b"\n") and row.count(b"\n") == 1
    return [unescape_copy_field(f) for f in row[:-1].split(b"\t")]


DECODE = codec_for(schema="clickstream").decode


# -- copy_row ----------------------------------------------------------------------------------------------


def test_copy_row_plain() -> None:
    assert copy_row("e-1", b'{"a":1}', 3, 42) == b'e-1\t{"a":1}\t3\t42\n'


def test_copy_row_escapes_backslashes_in_payload_and_specials_in_id() -> None:
    row = copy_row("a\tb\\c\nd\re", b'{"ua":"x\\"y\\\\z"}', 0, 7)
    assert row.count(b"\t") == 3 and row.count(b"\n") == 1
    assert parse_copy_row(row) == [b"a\tb\\c\nd\re", b'{"ua":"x\\"y\\\\z"}', b"0", b"7"]


@given(
    event_id=st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), min_size=1),
    text=st.text(st.characters(blacklist_categories=("Cs",))),
)
def test_copy_row_round_trips_through_copy_text_format(event_id: str, text: str) -> None:
    payload = msgspec.json.encode({"event_id": event_id, "text": text})
    if b"\\u0000" in payload:
        return  # covered by the NUL tests below
    fields = parse_copy_row(copy_row(event_id, payload, 1, 2))
    assert fields == [event_id.encode(), payload, b"1", b"2"]


def test_nul_in_json_is_unstorable_but_an_escaped_backslash_before_u0000_is_fine() -> None:
    with pytest.raises(Unstorable):
        copy_row("e", msgspec.json.encode({"s": "a\x00b"}), 0, 0)
    with pytest.raises(Unstorable):
        copy_row("e", msgspec.json.encode({"s": "\\\x00"}), 0, 0)  # escaped backslash, then a real NUL
    literal = msgspec.json.encode({"s": "\\u0000"})  # a backslash followed by the letters u0000
    assert b"\\\\u0000" in literal
    assert parse_copy_row(copy_row("e", literal, 0, 0))[1] == literal
    with pytest.raises(Unstorable):
        copy_row("e\x00", b"{}", 0, 0)


# -- prepare_batch -----------------------------------------------------------------------------------------


def test_prepare_batch_sorts_valid_and_invalid_and_tracks_offsets() -> None:
    messages = [
        msg(click(event_id="a"), part=0, off=10),
        msg(b'{"timestamp": "trunc', part=0, off=11, key_=b"k"),
        msg(click(event_id="b"), part=1, off=5),
        msg(None, part=1, off=6),
        msg(click(geo=7), part=2, off=0),
    ]
    batch = prepare_batch(messages, DECODE)
    assert batch.size == 5
    assert [parse_copy_row(r)[0] for r in batch.rows] == [b"a", b"b"]
    assert [parse_copy_row(r)[2:] for r in batch.rows] == [[b"0", b"10"], [b"1", b"5"]]
    assert [m.offset() for m in batch.row_messages] == [10, 5]
    assert [(d.message.offset(), d.code) for d in batch.dead] == [
        (11, MALFORMED_JSON),
        (6, EMPTY),
        (0, SCHEMA_VIOLATION),
    ]
    assert batch.offsets == {("raw", 0): 12, ("raw", 1): 7, ("raw", 2): 1}
    assert batch.invalid_by_code() == {MALFORMED_JSON: 1, EMPTY: 1, SCHEMA_VIOLATION: 1}


def test_payload_in_the_row_is_the_codecs_canonical_json() -> None:
    raw = click(event_id="x-1")
    batch = prepare_batch([msg(raw)], DECODE)
    assert parse_copy_row(batch.rows[0])[1] == DECODE(raw).payload


def test_consumer_errors_are_skipped_and_move_no_offset() -> None:
    batch = prepare_batch([msg(None, part=0, off=-1, err="partition EOF"), msg(click(event_id="a"), off=3)], DECODE)
    assert batch.size == 1 and len(batch.rows) == 1 and not batch.dead
    assert batch.offsets == {("raw", 0): 4}


def test_unstorable_and_unexpected_codec_failures_become_dead_letters() -> None:
    def explode(raw: bytes) -> ValidEvent:
        if raw == b"boom":
            raise RuntimeError("codec bug")
        return DECODE(raw)

    messages = [msg(b"boom", off=0), msg(click(user_id_hash="a\x00"), off=1), msg(click(event_id="ok"), off=2)]
    batch = prepare_batch(messages, explode)
    assert [(d.message.offset(), d.code) for d in batch.dead] == [(0, INTERNAL_ERROR), (1, UNSTORABLE)]
    assert "RuntimeError" in batch.dead[0].detail
    assert len(batch.rows) == 1
    assert batch.offsets == {("raw", 0): 3}


# -- dead letters ------------------------------------------------------------------------------------------


def test_dead_letter_headers() -> None:
    letter = DeadLetter(msg(b"x", part=4, off=99, topic_="p-raw"), "malformed_json", "unexpected end")
    assert dict(dead_letter_headers(letter, "p")) == {
        "reason": b"malformed_json: unexpected end",
        "reason_code": b"malformed_json",
        "source": b"processor",
        "source_topic": b"p-raw",
        "source_partition": b"4",
        "source_offset": b"99",
        "pipeline": b"p",
        "dead_letter_id": b"p-raw/4/99",  # the record's identity: the same for a replayed copy
    }
    long = DeadLetter(msg(b"x"), "schema_violation", "y" * 5000)
    assert len(dict(dead_letter_headers(long, "p"))["reason"]) == MAX_REASON_BYTES


# -- back-off ----------------------------------------------------------------------------------------------


def test_backoff_grows_exponentially_with_bounded_jitter_and_a_cap() -> None:
    low = [backoff_delay(a, base=0.25, cap=5.0, rand=lambda: 0.0) for a in range(8)]
    high = [backoff_delay(a, base=0.25, cap=5.0, rand=lambda: 1.0) for a in range(8)]
    assert low == [0.125, 0.25, 0.5, 1.0, 2.0, 2.5, 2.5, 2.5]
    assert high == [0.25, 0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    assert 2.5 <= backoff_delay(10_000) <= 5.0
    with pytest.raises(ValueError):
        backoff_delay(-1)

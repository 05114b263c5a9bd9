"""Every malformed kind, for every schema, is rejected by the codec with the reason code it is meant to get."""

from __future__ import annotations

import functools
from collections import Counter
from datetime import UTC, datetime

import pytest
from adnomaly.events import InvalidEvent, codec_for
from adnomaly.events.codec import CODEC_REASON_CODES
from adnomaly.events.schemas import SCHEMA_NAMES
from adnomaly.generator import MALFORMED_KINDS, EventStream, GeneratorSettings

START = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
REQUIRED_KINDS = {
    "truncated_json", "wrong_type", "missing_field", "unknown_field", "oversize", "non_utf8", "wrong_schema",
    "empty", "nan_literal", "out_of_range", "time_past", "time_future",
}  # fmt: skip


@functools.cache
def stream_for(schema: str, max_event_bytes: int) -> EventStream:
    return EventStream(GeneratorSettings(
        schema=schema, seed=3, rate=10.0, start=START, max_event_bytes=max_event_bytes,
    ))  # fmt: skip


def test_the_catalogue_of_kinds() -> None:
    assert set(MALFORMED_KINDS) == REQUIRED_KINDS
    assert set(MALFORMED_KINDS.values()) == set(CODEC_REASON_CODES)  # every rejection path is exercised


@pytest.mark.parametrize("max_event_bytes", [1024, 64 * 1024])
@pytest.mark.parametrize("kind", sorted(MALFORMED_KINDS))
@pytest.mark.parametrize("schema", SCHEMA_NAMES)
def test_each_kind_is_rejected_with_its_code(schema: str, kind: str, max_event_bytes: int) -> None:
    stream = stream_for(schema, max_event_bytes)
    codec = codec_for(schema=schema, max_event_bytes=max_event_bytes)
    t_s = START.timestamp()
    for n in range(25):  # several draws: each kind picks fields and values at random
        event = stream.source.make(f"00000000-0000-8000-8000-{n:012x}", START, t_s)
        raw = stream.malformer.spoil(kind, event, START, t_s)
        with pytest.raises(InvalidEvent) as info:
            codec.decode(raw)
        assert info.value.code == MALFORMED_KINDS[kind], (raw[:300], info.value.reason)


@pytest.mark.parametrize("schema", SCHEMA_NAMES)
def test_invalid_events_of_a_stream_cover_every_kind(schema: str) -> None:
    events = EventStream(GeneratorSettings(schema=schema, seed=5, rate=100.0, start=START, invalid_rate=1.0)).take(1200)
    codec = codec_for(schema=schema)
    kinds = Counter(e.malformed for e in events)
    assert set(kinds) == set(MALFORMED_KINDS)
    assert min(kinds.values()) > 50  # drawn about evenly
    for e in events:
        with pytest.raises(InvalidEvent) as info:
            codec.decode(e.value)
        assert info.value.code == MALFORMED_KINDS[e.malformed or ""]


def test_oversize_events_fit_in_a_kafka_message_of_twice_the_limit() -> None:
    stream = EventStream(GeneratorSettings(schema="download", seed=1, rate=1.0, start=START))
    event = stream.source.make("00000000-0000-8000-8000-000000000000", START, START.timestamp())
    raw = stream.malformer.spoil("oversize", event, START, START.timestamp())
    assert 64 * 1024 < len(raw) < 2 * 64 * 1024

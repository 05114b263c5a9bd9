"""The event codec: valid events become canonical stored events; everything else gets a reason code."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from adnomaly.events import InvalidEvent, codec_for
from adnomaly.events.codec import (
    EMPTY,
    INVALID_TIME,
    INVALID_UTF8,
    MALFORMED_JSON,
    OVERSIZE,
    SCHEMA_VIOLATION,
    derive_event_id,
)

NOW = datetime.now(UTC).replace(microsecond=0)

CLICK = {
    "timestamp": NOW.isoformat(), "user_id_hash": "a1b2c3", "ad_id": "ad-1", "campaign_id": "c-1", "geo": "US",
    "platform": "ios", "user_agent": "Mozilla/5.0", "CPC": 0.5, "CTR": 0.02, "conversion": 0, "bounce_rate": 0.4,
}
SIGNAL = {"event_id": str(uuid.uuid4()), "user_id": "u1", "source": "web", "type": "login",
          "event_ts": NOW.isoformat(), "payload": {"ok": True}}
PROBE = {"node_id": "n1", "node_name": "edge-1", "region": "eu-west", "latency_ms": 12.5, "uptime": 3600,
         "packet_loss": 0.001, "ts": NOW.isoformat(), "metadata": {"asn": 1}}
DOWNLOAD = {"content_id": "c1", "region": "us-east", "device_type": "tv", "os_version": "14.1", "speed_mbps": 55.0,
            "duration_s": 3.2, "success": True, "ts": NOW.isoformat()}
EXAMPLES = {"clickstream": CLICK, "signal": SIGNAL, "probe": PROBE, "download": DOWNLOAD}


def enc(obj: object) -> bytes:
    return msgspec.json.encode(obj)


def reject(codec, raw: bytes) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as info:
        codec.decode(raw)
    return info.value


@pytest.mark.parametrize("schema", list(EXAMPLES))
def test_valid_event_round_trips(schema: str) -> None:
    codec = codec_for(schema=schema)
    event = codec.decode(enc(EXAMPLES[schema]))
    assert event.event_time == NOW
    stored = msgspec.json.decode(event.payload)
    assert stored["event_id"] == event.event_id
    # decoding the canonical payload again gives the same event (idempotency key is stable)
    assert codec.decode(event.payload) == event


def test_derived_id_is_deterministic_and_content_based() -> None:
    codec = codec_for(schema="clickstream")
    first = codec.decode(enc(CLICK)).event_id
    assert codec.decode(enc(CLICK)).event_id == first
    assert codec.decode(enc({**CLICK, "ad_id": "ad-2"})).event_id != first
    # key order on the wire does not matter
    assert codec.decode(enc(dict(reversed(list(CLICK.items()))))).event_id == first
    assert codec.decode(enc({**CLICK, "event_id": "given"})).event_id == "given"
    uuid.UUID(first)


def test_id_field_overrides() -> None:
    codec = codec_for(schema="clickstream", id_field="ad_id")
    assert codec.decode(enc(CLICK)).event_id == "ad-1"


def test_signal_uses_its_uuid() -> None:
    assert codec_for(schema="signal").decode(enc(SIGNAL)).event_id == SIGNAL["event_id"]
    assert reject(codec_for(schema="signal"), enc({**SIGNAL, "event_id": "nope"})).code == SCHEMA_VIOLATION


@pytest.mark.parametrize(
    ("raw", "code", "detail"),
    [
        (b"", EMPTY, "empty"),
        (enc(CLICK)[:-7], MALFORMED_JSON, "truncated"),
        (enc({**CLICK, "CTR": "high"}), SCHEMA_VIOLATION, "$.CTR"),
        (enc({k: v for k, v in CLICK.items() if k != "geo"}), SCHEMA_VIOLATION, "geo"),
        (enc({**CLICK, "extra": 1}), SCHEMA_VIOLATION, "extra"),
        (enc({**CLICK, "platform": "blackberry"}), SCHEMA_VIOLATION, "$.platform"),
        (enc({**CLICK, "CTR": 1.5}), SCHEMA_VIOLATION, "$.CTR"),
        (enc({**CLICK, "user_agent": "x" * 2000}), SCHEMA_VIOLATION, "$.user_agent"),
        (enc({**CLICK, "timestamp": "2026-01-01T00:00:00"}), SCHEMA_VIOLATION, "timezone"),
        (enc(PROBE), SCHEMA_VIOLATION, "unknown field"),
        (enc([CLICK]), SCHEMA_VIOLATION, "array"),
        (enc(CLICK).replace(b'"ios"', b'"\xff\xfe"'), INVALID_UTF8, "UTF-8"),
        (enc(CLICK).replace(b"0.02", b"NaN"), MALFORMED_JSON, "malformed"),
        (enc({**CLICK, "timestamp": "1970-01-01T00:00:00Z"}), INVALID_TIME, "before 2000"),
        (enc({**CLICK, "timestamp": (NOW + timedelta(days=30)).isoformat()}), INVALID_TIME, "future"),
    ],
    ids=["empty", "truncated", "wrong-type", "missing", "extra", "enum", "range", "huge-string", "naive-time",
         "wrong-schema", "array", "non-utf8", "nan", "past", "future"],
)
def test_malformed_clickstream(raw: bytes, code: str, detail: str) -> None:
    error = reject(codec_for(schema="clickstream"), raw)
    assert error.code == code
    assert detail.lower() in error.reason.lower()


def test_oversize() -> None:
    error = reject(codec_for(schema="probe", max_event_bytes=512), enc({**PROBE, "metadata": {"x": "y" * 600}}))
    assert error.code == OVERSIZE and "limit is 512" in error.reason


def test_deep_nesting_is_rejected_not_crashing() -> None:
    deep = b'{"a":' * 5000 + b"1" + b"}" * 5000
    assert reject(codec_for(schema="probe"), deep).code in (MALFORMED_JSON, SCHEMA_VIOLATION)
    raw = enc({**PROBE, "metadata": {}}).replace(b'"metadata":{}', b'"metadata":' + b"[" * 2000 + b"]" * 2000)
    assert reject(codec_for(schema="probe"), raw).code in (MALFORMED_JSON, SCHEMA_VIOLATION)


CUSTOM_SCHEMA = {
    "type": "object",
    "required": ["at", "host", "status"],
    "properties": {"at": {"type": "string"}, "host": {"type": "string"}, "status": {"type": "integer"},
                   "req": {"type": "string"}},
    "additionalProperties": False,
}


def test_custom_json_schema() -> None:
    codec = codec_for(json_schema=CUSTOM_SCHEMA, time_field="at", id_field="req")
    event = codec.decode(enc({"at": NOW.isoformat(), "host": "h", "status": 200, "req": "r-1"}))
    assert event.event_id == "r-1" and event.event_time == NOW
    derived = codec.decode(enc({"at": NOW.isoformat(), "host": "h", "status": 200}))
    assert derived.event_id == derive_event_id("custom", enc({"at": NOW.isoformat(), "host": "h", "status": 200}))
    assert reject(codec, enc({"at": NOW.isoformat(), "host": "h", "status": "x"})).code == SCHEMA_VIOLATION
    assert reject(codec, enc({"at": "yesterday", "host": "h", "status": 1})).code == INVALID_TIME
    assert reject(codec, enc({"at": "2026-01-01T00:00:00", "host": "h", "status": 1})).code == INVALID_TIME
    assert reject(codec, b"[1,2]").code == SCHEMA_VIOLATION


def test_unknown_schema_name() -> None:
    with pytest.raises(ValueError, match="unknown schema"):
        codec_for(schema="weblogs")


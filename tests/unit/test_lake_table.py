"""Events → typed Arrow tables → Parquet (adnomaly.sinks.lake.table)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from adnomaly.events.codec import codec_for
from adnomaly.sinks.lake.table import TIMESTAMP, converter_for, parquet_bytes

WHEN = datetime(2026, 1, 5, 10, 30, 15, 250000, tzinfo=UTC)


def clickstream(n: int, **overrides: object) -> bytes:
    event = {
        "event_id": f"e-{n}", "timestamp": WHEN.isoformat(), "user_id_hash": "u1", "ad_id": "a1",
        "campaign_id": "c1", "geo": "US", "platform": "ios", "user_agent": "ua", "CPC": 0.5, "CTR": 0.02,
        "conversion": 1, "bounce_rate": 0.25, **overrides,
    }  # fmt: skip
    return msgspec.json.encode(event)


def read(data: bytes) -> pa.Table:
    return pq.read_table(pa.BufferReader(data))


def test_clickstream_columns_are_typed_from_the_schema() -> None:
    codec = codec_for(schema="clickstream")
    converter = converter_for("clickstream", None, "timestamp")
    table = converter.table(4, [(10, codec.decode(clickstream(1))), (11, codec.decode(clickstream(2, CPC=2)))])
    schema = table.schema
    assert schema.names[0] == "event_id" and schema.names[-2:] == ["_kafka_partition", "_kafka_offset"]
    assert schema.field("timestamp").type == TIMESTAMP
    assert schema.field("CPC").type == pa.float64()
    assert schema.field("conversion").type == pa.int64()
    assert schema.field("platform").type == pa.string()
    rows = read(parquet_bytes(table, "zstd")).to_pylist()
    assert [r["event_id"] for r in rows] == ["e-1", "e-2"]
    assert rows[0]["timestamp"] == WHEN
    assert rows[1]["CPC"] == 2.0
    assert [(r["_kafka_partition"], r["_kafka_offset"]) for r in rows] == [(4, 10), (4, 11)]


def test_a_derived_event_id_is_the_one_in_the_lake() -> None:
    codec = codec_for(schema="clickstream")
    raw = msgspec.json.encode({k: v for k, v in msgspec.json.decode(clickstream(1)).items() if k != "event_id"})
    event = codec.decode(raw)
    table = converter_for("clickstream", None, "timestamp").table(0, [(0, event)])
    assert table.column("event_id").to_pylist() == [event.event_id]


def test_signal_keeps_its_uuid_and_payload_as_json() -> None:
    codec = codec_for(schema="signal")
    event_id = uuid.uuid4()
    raw = msgspec.json.encode({
        "event_id": str(event_id), "user_id": "u", "source": "web", "type": "login",
        "event_ts": WHEN.isoformat(), "payload": {"ok": True, "n": [1, 2]},
    })  # fmt: skip
    table = converter_for("signal", None, "event_ts").table(0, [(5, codec.decode(raw))])
    row = read(parquet_bytes(table, "snappy")).to_pylist()[0]
    assert row["event_id"] == str(event_id)
    assert msgspec.json.decode(row["payload"]) == {"ok": True, "n": [1, 2]}
    assert row["event_ts"] == WHEN


@pytest.mark.parametrize("schema", ["probe", "download"])
def test_every_builtin_schema_has_a_stable_schema(schema: str) -> None:
    first = converter_for(schema, None, "ts").schema
    assert first == converter_for(schema, None, "ts").schema
    assert first.field("ts").type == TIMESTAMP


def test_custom_json_schema_keeps_scalars_as_columns_and_the_whole_event() -> None:
    json_schema = {
        "type": "object",
        "required": ["at", "region"],
        "properties": {
            "at": {"type": "string", "format": "date-time"},
            "region": {"type": "string"},
            "latency": {"type": "number"},
            "hops": {"type": ["integer", "null"]},
            "tags": {"type": "array"},
        },
    }
    codec = codec_for(json_schema=json_schema, time_field="at")
    converter = converter_for("custom", json_schema, "at")
    assert converter.schema.names == ["event_id", "at", "region", "latency", "hops", "payload",
                                      "_kafka_partition", "_kafka_offset"]  # fmt: skip
    events = [
        codec.decode(b'{"at": "2026-01-05T12:30:15.25+02:00", "region": "eu", "latency": 3, "tags": ["a"]}'),
        codec.decode(b'{"at": "2026-01-05T10:30:15.25Z", "region": "us", "hops": 7, "extra": {"x": 1}}'),
    ]
    rows = read(parquet_bytes(converter.table(1, [(0, events[0]), (1, events[1])]), "zstd")).to_pylist()
    assert rows[0]["at"] == WHEN and rows[1]["at"] == WHEN
    assert rows[0]["latency"] == 3.0 and rows[0]["hops"] is None
    assert rows[1]["hops"] == 7 and rows[1]["latency"] is None
    assert msgspec.json.decode(rows[1]["payload"])["extra"] == {"x": 1}  # undeclared fields are not lost


def test_custom_values_that_do_not_fit_their_column_are_null_not_a_crash() -> None:
    json_schema = {"type": "object", "properties": {
        "at": {"type": "string"}, "n": {"type": "integer"}, "x": {"type": "number"}, "s": {"type": "string"},
    }}  # fmt: skip
    codec = codec_for(json_schema=json_schema, time_field="at")
    converter = converter_for("custom", json_schema, "at")
    raw = b'{"at": "2026-01-05T10:30:15.25Z", "n": 99999999999999999999999, "s": "ok"}'
    row = read(parquet_bytes(converter.table(0, [(0, codec.decode(raw))]), "zstd")).to_pylist()[0]
    assert (row["n"], row["x"], row["s"]) == (None, None, "ok")
    assert "99999999999999999999999" in row["payload"]  # kept as it came
    integral = codec.decode(b'{"at": "2026-01-05T10:30:15.25Z", "n": 3.0}')
    assert converter.table(0, [(0, integral)]).column("n").to_pylist() == [3]


def test_parquet_bytes_are_deterministic() -> None:
    codec = codec_for(schema="clickstream")
    converter = converter_for("clickstream", None, "timestamp")
    rows = [(n, codec.decode(clickstream(n))) for n in range(50)]
    assert parquet_bytes(converter.table(0, rows), "zstd") == parquet_bytes(converter.table(0, rows), "zstd")

"""Ingest API decisions without I/O: tokens, content types, size limits, line parsing, readiness, OpenAPI."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import jsonschema_rs
import msgspec
import pytest
import schemathesis
from adnomaly.config import EventsConfig
from adnomaly.events.codec import INVALID_TIME, MALFORMED_JSON, OVERSIZE, SCHEMA_VIOLATION, codec_for
from adnomaly.ingest.app import result_body
from adnomaly.ingest.auth import AuthResult, TokenSet, parse_tokens
from adnomaly.ingest.batch import INTERNAL_ERROR, Rejection, parse_ndjson, parse_single
from adnomaly.ingest.body import BodyError, BodyKind, body_kind, check_content_length, read_limited
from adnomaly.ingest.openapi import MAX_ERRORS, build_openapi
from adnomaly.ingest.readiness import KafkaReadiness, judge_metadata
from adnomaly.ingest.sink import DLQ_MAX_VALUE_BYTES, dlq_headers
from confluent_kafka import KafkaError, KafkaException

NOW = datetime.now(UTC).replace(microsecond=0)
CLICK = {
    "timestamp": NOW.isoformat(), "user_id_hash": "u1", "ad_id": "ad-1", "campaign_id": "c-1", "geo": "US",
    "platform": "ios", "user_agent": "Mozilla/5.0", "CPC": 0.5, "CTR": 0.02, "conversion": 0, "bounce_rate": 0.4,
}  # fmt: skip
DECODE = codec_for(schema="clickstream", max_event_bytes=2048).decode


def line(**changes: Any) -> bytes:
    return msgspec.json.encode({**CLICK, **changes})


# -- tokens ------------------------------------------------------------------------------------------------


def test_tokens_are_split_on_commas_and_newlines() -> None:
    assert parse_tokens(" alpha, beta\ngamma\r\n\n,alpha ,") == (b"alpha", b"beta", b"gamma")
    assert parse_tokens("") == ()
    assert parse_tokens(None) == ()
    with pytest.raises(ValueError, match="whitespace"):
        parse_tokens("two words")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, AuthResult.MISSING),
        (b"", AuthResult.MALFORMED),
        (b"Bearer", AuthResult.MALFORMED),
        (b"Bearer ", AuthResult.MALFORMED),
        (b"Basic b2xkOnRva2Vu", AuthResult.MALFORMED),
        (b"Bearer old new", AuthResult.MALFORMED),
        (b"old", AuthResult.MALFORMED),
        (b"Bearer wrong", AuthResult.FORBIDDEN),
        (b"Bearer ol", AuthResult.FORBIDDEN),
        (b"Bearer old-token-x", AuthResult.FORBIDDEN),
        (b"Bearer old-token", AuthResult.OK),
        (b"bearer   new-token ", AuthResult.OK),
        (b"BEARER new-token", AuthResult.OK),
    ],
)
def test_authorization_header_decisions(header: bytes | None, expected: AuthResult) -> None:
    assert TokenSet(["old-token", "new-token"]).check(header) is expected


def test_token_set_refuses_to_be_empty_and_never_shows_tokens() -> None:
    with pytest.raises(ValueError):
        TokenSet([])
    with pytest.raises(ValueError):
        TokenSet([""])
    tokens = TokenSet(["s3cret-value"])
    assert "s3cret" not in repr(tokens) and "s3cret" not in str(tokens)


# -- content type and size -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "kind"),
    [
        ("application/json", BodyKind.SINGLE),
        ("Application/JSON; charset=utf-8", BodyKind.SINGLE),
        ("application/x-ndjson", BodyKind.NDJSON),
        ("application/x-ndjson;charset=UTF-8", BodyKind.NDJSON),
    ],
)
def test_accepted_content_types(content_type: str, kind: BodyKind) -> None:
    assert body_kind(content_type) is kind


@pytest.mark.parametrize("content_type", [None, "", "text/plain", "application/xml", "application/jsonx"])
def test_other_content_types_are_415(content_type: str | None) -> None:
    with pytest.raises(BodyError) as info:
        body_kind(content_type)
    assert info.value.status == 415


def test_declared_length_is_checked_before_reading() -> None:
    check_content_length(None, 10)
    check_content_length("10", 10)
    with pytest.raises(BodyError) as too_big:
        check_content_length("11", 10)
    assert too_big.value.status == 413
    with pytest.raises(BodyError) as garbage:
        check_content_length("ten", 10)
    assert garbage.value.status == 400


def test_streamed_body_stops_being_read_past_the_limit() -> None:
    pulled: list[int] = []

    async def endless() -> AsyncIterator[bytes]:
        for i in range(1_000):
            pulled.append(i)
            yield b"x" * 100

    async def read(limit: int) -> bytes:
        return await read_limited(endless(), limit)

    with pytest.raises(BodyError) as info:
        asyncio.run(read(1_000))
    assert info.value.status == 413
    assert len(pulled) == 11  # the chunk that crossed the limit was the last one read

    async def finite() -> AsyncIterator[bytes]:
        yield b"ab"
        yield b"cd"

    assert asyncio.run(read_limited(finite(), 4)) == b"abcd"


# -- lines --------------------------------------------------------------------------------------------------


def test_ndjson_lines_are_numbered_and_rejected_with_codes() -> None:
    future = (NOW + timedelta(days=30)).isoformat()
    body = b"\n".join(
        [
            line(ad_id="a1"),  # 1
            b"",  # 2: blank, skipped
            b"{not json",  # 3
            line(geo="usa"),  # 4
            line(timestamp=future),  # 5
            b"   \r",  # 6: blank, skipped
            line(ad_id="a2") + b"\r",  # 7: CRLF line ending
            b'{"x": "' + b"y" * 3000 + b'"}',  # 8
            b"",  # trailing newline
        ]
    )
    batch = parse_ndjson(body, DECODE)
    assert [e.payload for e in batch.events] == [
        DECODE(line(ad_id="a1")).payload,
        DECODE(line(ad_id="a2")).payload,
    ]
    assert [(r.line, r.code) for r in batch.rejections] == [
        (3, MALFORMED_JSON), (4, SCHEMA_VIOLATION), (5, INVALID_TIME), (8, OVERSIZE),
    ]  # fmt: skip
    assert batch.rejections[0].raw == b"{not json"
    assert "geo" in batch.rejections[1].detail


def test_single_event_and_blank_bodies() -> None:
    assert parse_single(b"", DECODE).empty
    assert parse_single(b" \n\t", DECODE).empty
    assert parse_ndjson(b"\n\n \n", DECODE).empty
    ok = parse_single(line(), DECODE)
    assert len(ok.events) == 1 and not ok.rejections
    bad = parse_single(b"[1, 2]", DECODE)
    assert not bad.events and [(r.line, r.code) for r in bad.rejections] == [(1, SCHEMA_VIOLATION)]


def test_an_unexpected_codec_failure_rejects_only_its_line() -> None:
    def decode(raw: bytes) -> Any:
        if raw == b"boom":
            raise RuntimeError("codec bug")
        return DECODE(raw)

    batch = parse_ndjson(line() + b"\nboom\n" + line(ad_id="z"), decode)
    assert len(batch.events) == 2
    assert [(r.line, r.code) for r in batch.rejections] == [(2, INTERNAL_ERROR)]


def test_result_lists_at_most_max_errors() -> None:
    body = b"\n".join([b"nope"] * (MAX_ERRORS + 7) + [line()])
    result = result_body(parse_ndjson(body, DECODE))
    assert result["accepted"] == 1 and result["rejected"] == MAX_ERRORS + 7
    assert len(result["errors"]) == MAX_ERRORS and result["errors_omitted"] == 7
    assert result["errors"][0] == {"line": 1, "code": MALFORMED_JSON, "reason": result["errors"][0]["reason"]}
    assert result["errors"][-1]["line"] == MAX_ERRORS


def test_dlq_headers_say_why_and_where() -> None:
    headers = dict(dlq_headers(Rejection(7, SCHEMA_VIOLATION, "Expected `str`", b"{}"), "p"))
    assert headers == {"reason": b"schema_violation: Expected `str`", "reason_code": b"schema_violation",
                       "source": b"ingest", "source_line": b"7", "pipeline": b"p"}
    long = dict(dlq_headers(Rejection(1, OVERSIZE, "too big", b"x" * (DLQ_MAX_VALUE_BYTES + 5)), "p"))
    assert long["truncated_from"] == str(DLQ_MAX_VALUE_BYTES + 5).encode()


# -- readiness ------------------------------------------------------------------------------------------------


def metadata(topics: dict[str, Any], brokers: int = 1) -> SimpleNamespace:
    return SimpleNamespace(brokers={i: object() for i in range(brokers)}, topics=topics)


def topic(partitions: int = 3, error: Any = None) -> SimpleNamespace:
    return SimpleNamespace(partitions=dict.fromkeys(range(partitions)), error=error)


def test_readiness_judges_brokers_and_the_raw_topic() -> None:
    assert judge_metadata(metadata({"p-raw": topic()}), "p-raw").ready
    assert not judge_metadata(metadata({"p-raw": topic()}, brokers=0), "p-raw").ready
    missing = judge_metadata(metadata({"other": topic()}), "p-raw")
    assert not missing.ready and "p-raw does not exist" in missing.detail
    assert not judge_metadata(metadata({"p-raw": topic(error=KafkaError(3))}), "p-raw").ready
    assert not judge_metadata(metadata({"p-raw": topic(partitions=0)}), "p-raw").ready


def test_readiness_is_cached_and_reports_an_unreachable_kafka() -> None:
    now = [100.0]
    calls: list[float] = []
    answers: list[Any] = [metadata({"p-raw": topic()}), KafkaException(KafkaError(KafkaError._TRANSPORT))]

    def list_topics(*, timeout: float) -> Any:
        calls.append(timeout)
        answer = answers[0] if len(calls) == 1 else answers[1]
        if isinstance(answer, Exception):
            raise answer
        return answer

    readiness = KafkaReadiness(list_topics, "p-raw", max_age_s=2.0, timeout_s=0.5, clock=lambda: now[0])

    async def probe(times: int) -> list[bool]:
        results = await asyncio.gather(*(readiness.check() for _ in range(times)))
        return [r.ready for r in results]

    assert asyncio.run(probe(5)) == [True] * 5
    assert calls == [0.5]  # five concurrent probes, one metadata request
    now[0] += 1.9
    assert asyncio.run(probe(1)) == [True] and len(calls) == 1
    now[0] += 0.2
    result = asyncio.run(readiness.check())
    assert not result.ready and "unreachable" in result.detail and len(calls) == 2


# -- OpenAPI ---------------------------------------------------------------------------------------------------

CUSTOM = {
    "type": "object",
    "properties": {"at": {"type": "string"}, "n": {"type": "integer"}},
    "required": ["at", "n"],
}


def events_config(schema: str) -> EventsConfig:
    if schema == "custom":
        return EventsConfig(schema_name="custom", json_schema=CUSTOM, time_field="at", max_event_bytes=4096,
                            max_future_skew_s=60.0)  # fmt: skip
    return EventsConfig(schema_name=schema, time_field="ts", max_event_bytes=4096, max_future_skew_s=60.0)


@pytest.mark.parametrize("schema", ["clickstream", "signal", "probe", "download", "custom"])
def test_openapi_document_is_valid_and_complete(schema: str) -> None:
    document = build_openapi(events_config(schema), max_body_bytes=1234, title="t", version="1")
    loaded = schemathesis.openapi.from_dict(document)
    loaded.validate()  # against the OpenAPI 3.1 meta-schema
    post = document["paths"]["/v1/events"]["post"]
    assert set(post["requestBody"]["content"]) == {"application/json", "application/x-ndjson"}
    assert set(post["responses"]) == {"202", "400", "401", "403", "413", "415", "503"}
    assert post["security"] == [{"bearerAuth": []}]
    assert document["components"]["securitySchemes"]["bearerAuth"] == {"type": "http", "scheme": "bearer"}
    assert "Retry-After" in post["responses"]["503"]["headers"]
    assert "WWW-Authenticate" in post["responses"]["401"]["headers"]
    assert "1234" in post["description"]
    for component in document["components"]["schemas"].values():
        jsonschema_rs.meta.validate(component)  # each component is itself a valid JSON Schema


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` with the document's components reachable, as a standalone JSON Schema."""
    return {**schema, "components": document["components"]}


def test_openapi_event_schema_matches_what_the_codec_takes() -> None:
    document = build_openapi(events_config("clickstream"), max_body_bytes=1234, title="t", version="1")
    event_ref = document["paths"]["/v1/events"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    validator = jsonschema_rs.validator_for(resolve(document, event_ref))
    assert validator.is_valid(CLICK)
    assert validator.is_valid({**CLICK, "event_id": str(uuid.uuid4())})
    assert not validator.is_valid({**CLICK, "geo": "usa"})
    assert not validator.is_valid({**CLICK, "extra": 1})
    result_ref = document["paths"]["/v1/events"]["post"]["responses"]["202"]["content"]["application/json"]["schema"]
    result_validator = jsonschema_rs.validator_for(resolve(document, result_ref))
    body = b"\n".join([line(), b"{", line(geo="x")])
    assert result_validator.is_valid(result_body(parse_ndjson(body, DECODE)))
    assert not result_validator.is_valid({"accepted": 1})

"""The ingest API end to end in-process: a real app (Starlette TestClient) over an in-memory producer.

The fake producer keeps the contract that matters here: messages are acknowledged (or failed) only when
the app's poll thread polls, from that thread, through the per-message delivery callbacks.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import msgspec
import pytest
from adnomaly.config import ComponentConfig
from adnomaly.events.codec import MALFORMED_JSON, SCHEMA_VIOLATION, codec_for
from adnomaly.ingest import create_app
from adnomaly.plan import Endpoints, plan
from adnomaly.spec import parse_pipeline
from confluent_kafka import KafkaError, KafkaException
from fastapi.testclient import TestClient

LIMIT = 4096
OLD, NEW = "old-token-0123456789", "new-token-9876543210"
NOW = datetime.now(UTC).replace(microsecond=0)
CLICK = {
    "timestamp": NOW.isoformat(), "user_id_hash": "u1", "ad_id": "ad-1", "campaign_id": "c-1", "geo": "US",
    "platform": "ios", "user_agent": "Mozilla/5.0", "CPC": 0.5, "CTR": 0.02, "conversion": 0, "bounce_rate": 0.4,
}  # fmt: skip
JSON = {"Content-Type": "application/json"}
NDJSON = {"Content-Type": "application/x-ndjson"}


def event(**changes: Any) -> bytes:
    return msgspec.json.encode({**CLICK, **changes})


def auth(token: str = OLD) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class FakeProducer:
    """In-memory stand-in for confluent_kafka.Producer; `fail` makes deliveries fail, `hold` delays them."""

    def __init__(self, topics: tuple[str, ...] = ("t-raw", "t-dlq")) -> None:
        self.topics = topics
        self.delivered: list[SimpleNamespace] = []
        self.fail: KafkaError | None = None
        self.refuse_after: int | None = None  # produce() raises KafkaException once this many were taken
        self.taken = 0
        self.hold = False
        self.poll_threads: set[str] = set()
        self._queue: list[tuple[SimpleNamespace, Any]] = []
        self._lock = threading.Lock()

    def produce(self, topic: str, value: bytes | None = None, key: Any = None, *, headers: Any = None,
                on_delivery: Any = None) -> None:  # fmt: skip
        if self.refuse_after is not None and self.taken >= self.refuse_after:
            raise KafkaException(KafkaError(KafkaError._STATE, "producer is closing"))
        self.taken += 1
        key_bytes = key.encode() if isinstance(key, str) else key
        message = SimpleNamespace(topic=topic, value=value, key=key_bytes, headers=headers)
        with self._lock:
            self._queue.append((message, on_delivery))

    def poll(self, timeout: float = 0.0) -> int:
        self.poll_threads.add(threading.current_thread().name)
        if self.hold:
            time.sleep(timeout)
            return 0
        with self._lock:
            queue, self._queue = self._queue, []
        for message, callback in queue:
            if self.fail is None:
                self.delivered.append(message)
            callback(self.fail, message)
        if not queue:
            time.sleep(min(timeout, 0.002))
        return len(queue)

    def flush(self, timeout: float = 0.0) -> int:
        self.hold = False
        self.poll(0)
        return 0

    def list_topics(self, topic: str | None = None, timeout: float = 0.0) -> Any:
        partitions = {0: object()}
        return SimpleNamespace(
            brokers={1: object()},
            topics={t: SimpleNamespace(partitions=partitions, error=None) for t in self.topics},
        )

    def on(self, topic: str) -> list[SimpleNamespace]:
        return [m for m in self.delivered if m.topic == topic]


def ingest_config(max_body_bytes: int = LIMIT) -> ComponentConfig:
    pipeline = parse_pipeline({
        "apiVersion": "adnomaly.io/v1alpha1", "kind": "Pipeline", "metadata": {"name": "t"},
        "spec": {"source": {"ingest": {"maxBodyBytes": max_body_bytes}}},
    })  # fmt: skip
    return plan(pipeline, Endpoints(kafka_bootstrap="127.0.0.1:9")).components["ingest"].config


@pytest.fixture
def producer() -> FakeProducer:
    return FakeProducer()


@pytest.fixture
def client(producer: FakeProducer) -> Iterator[TestClient]:
    app = create_app(ingest_config(), tokens=[OLD, NEW], producer=producer, delivery_timeout_s=0.5)
    with TestClient(app, raise_server_exceptions=True) as test_client:
        yield test_client


def metric(client: TestClient, name: str, **labels: str) -> float:
    wanted = "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else ""
    for text_line in client.get("/metrics").text.splitlines():
        if text_line.startswith(name + wanted + " "):
            return float(text_line.rsplit(" ", 1)[1])
    return 0.0


# -- auth -----------------------------------------------------------------------------------------------------


def test_missing_or_malformed_authorization_is_401_with_a_challenge(client: TestClient) -> None:
    for headers in ({}, {"Authorization": "Basic dXNlcjpwdw=="}, {"Authorization": "Bearer"}, {"Authorization": OLD}):
        response = client.post("/v1/events", content=event(), headers={**JSON, **headers})
        assert response.status_code == 401, headers
        assert response.headers["WWW-Authenticate"].startswith("Bearer realm=")
        assert response.json()["error"] == "unauthorized"


def test_wrong_token_is_403_and_nothing_is_produced(client: TestClient, producer: FakeProducer) -> None:
    response = client.post("/v1/events", content=event(), headers={**JSON, **auth("not-a-valid-token")})
    assert response.status_code == 403
    assert "not-a-valid-token" not in response.text
    assert producer.delivered == []


def test_two_tokens_are_valid_at_once_for_rotation(client: TestClient, producer: FakeProducer) -> None:
    for token in (OLD, NEW):
        assert client.post("/v1/events", content=event(), headers={**JSON, **auth(token)}).status_code == 202
    assert len(producer.on("t-raw")) == 2


def test_auth_is_checked_before_the_body(client: TestClient) -> None:
    response = client.post("/v1/events", content=b"x" * (LIMIT + 1), headers={"Content-Type": "text/plain"})
    assert response.status_code == 401


def test_tokens_never_reach_the_logs(producer: FakeProducer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    app = create_app(ingest_config(), tokens=[OLD, NEW], producer=producer)
    with TestClient(app) as test_client:
        test_client.post("/v1/events", content=event(), headers={**JSON, **auth()})
        test_client.post("/v1/events", content=event(), headers={**JSON, **auth("guess-123")})
    assert caplog.records, "the app logs something at start"
    assert not any(secret in caplog.text for secret in (OLD, NEW, "guess-123"))


# -- bodies -----------------------------------------------------------------------------------------------------


def test_declared_body_above_the_limit_is_413(client: TestClient, producer: FakeProducer) -> None:
    body = b"\n".join([event()] * 40)
    assert len(body) > LIMIT
    response = client.post("/v1/events", content=body, headers={**NDJSON, **auth()})
    assert response.status_code == 413
    assert response.json()["error"] == "body_too_large"
    assert response.headers["Connection"] == "close"
    assert producer.delivered == []


def test_chunked_body_is_cut_off_at_the_limit(producer: FakeProducer) -> None:
    # httpx's ASGI transport hands the body to the app chunk by chunk, as a server does (the TestClient
    # would read it all first), so this shows how much of an endless chunked body the app pulls in.
    sent: list[int] = []

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the client streams, chunked
        for i in range(10_000):  # 10 MB if it were all read
            sent.append(i)
            yield b" " * 1024

    async def scenario() -> httpx.Response:
        app = create_app(ingest_config(), tokens=[OLD], producer=producer)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as http:
                return await http.post("/v1/events", content=chunks(), headers={**NDJSON, **auth()})

    response = asyncio.run(scenario())
    assert response.status_code == 413
    assert len(sent) <= LIMIT // 1024 + 2  # reading stopped right after the limit
    assert producer.delivered == []


def test_chunked_body_within_the_limit_is_taken(client: TestClient, producer: FakeProducer) -> None:
    def chunks() -> Iterator[bytes]:
        body = event(ad_id="x") + b"\n" + event(ad_id="y") + b"\n"
        for i in range(0, len(body), 100):
            yield body[i : i + 100]

    response = client.post("/v1/events", content=chunks(), headers={**NDJSON, **auth()})
    assert response.status_code == 202 and response.json()["accepted"] == 2


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "multipart/form-data", None])
def test_other_content_types_are_415(client: TestClient, content_type: str | None) -> None:
    headers = auth() if content_type is None else {"Content-Type": content_type, **auth()}
    response = client.post("/v1/events", content=event(), headers=headers)
    assert response.status_code == 415
    assert response.json()["error"] == "unsupported_media_type"


@pytest.mark.parametrize(("headers", "body"), [(JSON, b""), (NDJSON, b""), (JSON, b"  \n"), (NDJSON, b"\n\r\n\n")])
def test_empty_body_is_400(client: TestClient, producer: FakeProducer, headers: dict[str, str], body: bytes) -> None:
    response = client.post("/v1/events", content=body, headers={**headers, **auth()})
    assert response.status_code == 400
    assert response.json()["error"] == "empty_body"
    assert producer.delivered == []


# -- events -----------------------------------------------------------------------------------------------------


def test_single_event_is_accepted_keyed_by_its_id(client: TestClient, producer: FakeProducer) -> None:
    response = client.post("/v1/events", content=event(event_id="e-1"), headers={**JSON, **auth()})
    assert response.status_code == 202
    assert response.json() == {"accepted": 1, "rejected": 0, "errors": [], "errors_omitted": 0}
    (message,) = producer.on("t-raw")
    assert message.key == b"e-1"
    assert msgspec.json.decode(message.value)["event_id"] == "e-1"
    assert producer.poll_threads == {"ingest-kafka-poll"}  # acks came through the poll thread


def test_event_without_id_gets_the_codec_s_derived_id(client: TestClient, producer: FakeProducer) -> None:
    assert client.post("/v1/events", content=event(), headers={**JSON, **auth()}).status_code == 202
    expected = codec_for(schema="clickstream").decode(event())
    (message,) = producer.on("t-raw")
    assert message.key == expected.event_id.encode() and message.value == expected.payload


def test_invalid_single_event_is_400_with_its_error_and_dead_lettered(
    client: TestClient, producer: FakeProducer
) -> None:
    response = client.post("/v1/events", content=event(geo="usa"), headers={**JSON, **auth()})
    assert response.status_code == 400
    body = response.json()
    assert body["accepted"] == 0 and body["rejected"] == 1
    assert body["errors"][0]["line"] == 1 and body["errors"][0]["code"] == SCHEMA_VIOLATION
    assert producer.on("t-raw") == []
    (dead,) = producer.on("t-dlq")
    assert dead.value == event(geo="usa")


def test_ndjson_batch_answers_per_line(client: TestClient, producer: FakeProducer) -> None:
    lines = [event(event_id="a"), b"{broken", b"", event(event_id="b", geo="usa"), event(event_id="c"), b""]
    response = client.post("/v1/events", content=b"\n".join(lines), headers={**NDJSON, **auth()})
    assert response.status_code == 202
    body = response.json()
    assert (body["accepted"], body["rejected"], body["errors_omitted"]) == (2, 2, 0)
    assert [(e["line"], e["code"]) for e in body["errors"]] == [(2, MALFORMED_JSON), (4, SCHEMA_VIOLATION)]
    assert all(e["reason"] for e in body["errors"])
    assert [m.key for m in producer.on("t-raw")] == [b"a", b"c"]
    dead = producer.on("t-dlq")
    assert [m.value for m in dead] == [b"{broken", lines[3]]
    headers = dict(dead[1].headers)
    assert headers["source"] == b"ingest" and headers["source_line"] == b"4"
    assert headers["reason"].startswith(b"schema_violation: ")


def test_many_rejections_are_capped_in_the_answer(client: TestClient, producer: FakeProducer) -> None:
    body = b"\n".join([b"[]"] * 150)
    answer = client.post("/v1/events", content=body, headers={**NDJSON, **auth()}).json()
    assert answer["rejected"] == 150 and len(answer["errors"]) == 100 and answer["errors_omitted"] == 50
    assert len(producer.on("t-dlq")) == 150  # every rejected line is dead-lettered, listed or not


# -- Kafka failures ---------------------------------------------------------------------------------------------


def test_failed_delivery_is_503_with_retry_after(client: TestClient, producer: FakeProducer) -> None:
    producer.fail = KafkaError(KafkaError._MSG_TIMED_OUT)
    response = client.post("/v1/events", content=event() + b"\n" + event(ad_id="2"), headers={**NDJSON, **auth()})
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) >= 1
    assert response.json()["error"] == "kafka_unavailable"
    assert "send it again" in response.json()["detail"]
    producer.fail = None
    assert client.post("/v1/events", content=event(), headers={**JSON, **auth()}).status_code == 202


def test_unacknowledged_delivery_times_out_as_503(client: TestClient, producer: FakeProducer) -> None:
    producer.hold = True
    started = time.monotonic()
    response = client.post("/v1/events", content=event(), headers={**JSON, **auth()})
    assert response.status_code == 503 and "Retry-After" in response.headers
    assert time.monotonic() - started < 5


def test_produce_refused_midway_is_503_at_once(client: TestClient, producer: FakeProducer) -> None:
    producer.refuse_after = 2
    started = time.monotonic()
    body = b"\n".join(event(event_id=f"e{i}") for i in range(5))
    response = client.post("/v1/events", content=body, headers={**NDJSON, **auth()})
    assert response.status_code == 503 and "producer is closing" in response.json()["detail"]
    assert time.monotonic() - started < 1.0  # not the delivery timeout: the request ends once the two are acked
    assert len(producer.on("t-raw")) == 2


def test_fatal_producer_error_fails_liveness(client: TestClient, producer: FakeProducer) -> None:
    fatal = KafkaError(KafkaError._FATAL, "fenced", fatal=True)
    producer.fail = fatal
    assert client.post("/v1/events", content=event(), headers={**JSON, **auth()}).status_code == 503
    assert client.get("/healthz").status_code == 503
    producer.fail = None
    assert client.post("/v1/events", content=event(), headers={**JSON, **auth()}).status_code == 503


# -- probes, metrics, docs --------------------------------------------------------------------------------------


def test_probes_need_no_token(client: TestClient, producer: FakeProducer) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True


def test_readyz_is_503_without_the_raw_topic() -> None:
    app = create_app(ingest_config(), tokens=[OLD], producer=FakeProducer(topics=("other",)))
    with TestClient(app) as test_client:
        response = test_client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"ready": False, "detail": "topic t-raw does not exist"}


def test_metrics_count_requests_and_events(client: TestClient) -> None:
    client.post("/v1/events", content=event() + b"\n{\n" + event(ad_id="2"), headers={**NDJSON, **auth()})
    client.post("/v1/events", content=event(), headers={**JSON, **auth("nope-nope")})
    client.post("/v1/events", content=event(), headers={"Content-Type": "text/csv", **auth()})
    assert metric(client, "adnomaly_ingest_requests_total", code="202") == 1
    assert metric(client, "adnomaly_ingest_requests_total", code="403") == 1
    assert metric(client, "adnomaly_ingest_requests_total", code="415") == 1
    assert metric(client, "adnomaly_ingest_events_total", result="accepted") == 2
    assert metric(client, "adnomaly_ingest_events_total", result="rejected") == 1
    assert metric(client, "adnomaly_ingest_request_seconds_count") == 3
    assert client.get("/metrics").headers["content-type"].startswith("text/plain")


def test_openapi_document_is_served(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    assert set(document["paths"]) == {"/v1/events", "/healthz", "/readyz", "/metrics"}
    schema = document["paths"]["/v1/events"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/Clickstream"}


def test_create_app_needs_an_ingest_section_and_a_token(producer: FakeProducer) -> None:
    config = ingest_config()
    with pytest.raises(ValueError, match="ingest"):
        create_app(config.model_copy(update={"ingest": None}), tokens=[OLD], producer=producer)
    with pytest.raises(ValueError, match="token"):
        create_app(config, tokens=[], producer=producer)


def test_entry_point_refuses_to_start_without_tokens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from adnomaly.ingest.__main__ import main

    path = tmp_path / "ingest.json"
    path.write_text(ingest_config().to_json())
    monkeypatch.delenv("ADNOMALY_INGEST_TOKENS", raising=False)
    with pytest.raises(SystemExit, match="ADNOMALY_INGEST_TOKENS"):
        main(["--config", str(path)])
    monkeypatch.setenv("ADNOMALY_INGEST_TOKENS", " , \n")
    with pytest.raises(SystemExit, match="no token"):
        main(["--config", str(path)])

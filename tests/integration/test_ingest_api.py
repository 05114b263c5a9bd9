"""The ingest API against a real Kafka broker: as its own uvicorn process (the real entry point) and
in-process with the real producer; a bounded schemathesis run against the live server."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import schemathesis
from adnomaly.config import ComponentConfig, SecretEnv, TopicNames
from adnomaly.ingest import create_app
from adnomaly.kafka_client import TopicSettings, consumer_config, ensure_topics
from adnomaly.plan import Endpoints, plan
from adnomaly.services.base import ManagedProcess, free_port, tail, wait_until
from adnomaly.services.kafka import KafkaBroker
from adnomaly.spec import parse_pipeline
from confluent_kafka import Consumer, TopicPartition
from fastapi.testclient import TestClient

from tests.integration.schemathesis_run import run_schemathesis

TOKEN = "it-token-" + uuid.uuid4().hex
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LIMIT = 128 * 1024
NOW = datetime.now(UTC).replace(microsecond=0)
CLICK = {
    "timestamp": NOW.isoformat(), "user_id_hash": "u1", "ad_id": "ad-1", "campaign_id": "c-1", "geo": "US",
    "platform": "web", "user_agent": "Mozilla/5.0", "CPC": 0.5, "CTR": 0.02, "conversion": 0, "bounce_rate": 0.4,
}  # fmt: skip


def ingest_config(bootstrap: str, raw: str, dlq: str, port: int = 0) -> ComponentConfig:
    pipeline = parse_pipeline({
        "apiVersion": "adnomaly.io/v1alpha1", "kind": "Pipeline", "metadata": {"name": "it"},
        "spec": {"source": {"ingest": {"maxBodyBytes": LIMIT}}},
    })  # fmt: skip
    endpoints = Endpoints(kafka_bootstrap=bootstrap, ingest_host="127.0.0.1", ingest_port=port)
    config = plan(pipeline, endpoints).components["ingest"].config
    topics = TopicNames(raw=raw, dlq=dlq, features=f"{raw}-features", anomalies=f"{raw}-anomalies")
    return config.model_copy(update={"kafka": config.kafka.model_copy(update={"topics": topics}), "metrics_port": 0})


class LiveIngest:
    """`python -m adnomaly.ingest --config PATH` as a child process on a free loopback port."""

    def __init__(self, config: ComponentConfig, state_dir: Path) -> None:
        assert config.ingest is not None
        self.config = config
        self.base_url = f"http://127.0.0.1:{config.ingest.port}"
        config_path = state_dir / "ingest.json"
        config_path.write_text(config.to_json())
        env = {**os.environ, SecretEnv.INGEST_TOKENS: f"{TOKEN},other-{TOKEN}"}
        self.process = ManagedProcess(
            name="ingest", argv=[sys.executable, "-m", "adnomaly.ingest", "--config", str(config_path)],
            log_path=state_dir / "ingest.log", env=env,
        )  # fmt: skip

    def start(self) -> None:
        self.process.start()
        self.process.wait_ready(self._healthy, timeout=30)

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def terminate(self) -> int:
        """SIGTERM, as Kubernetes would; return the exit code."""
        popen = self.process.process
        assert popen is not None
        popen.send_signal(signal.SIGTERM)
        return popen.wait(timeout=40)

    @property
    def log(self) -> str:
        return tail(self.process.log_path, 200)


def read_topic(bootstrap: str, topic: str, expected: int, timeout: float = 30.0) -> list[Any]:
    """Every message of `topic` (one partition or more): waits for `expected`, then a little more for extras."""
    consumer = Consumer(consumer_config(bootstrap, f"check-{uuid.uuid4().hex}"))
    metadata = consumer.list_topics(topic, timeout=10)
    consumer.assign([TopicPartition(topic, p, 0) for p in metadata.topics[topic].partitions])
    messages: list[Any] = []
    deadline = time.monotonic() + timeout
    settle_until: float | None = None
    try:
        while time.monotonic() < (settle_until or deadline):
            for message in consumer.consume(500, timeout=0.5):
                assert message.error() is None, message.error()
                messages.append(message)
            if settle_until is None and len(messages) >= expected:
                settle_until = time.monotonic() + 1.5
    finally:
        consumer.close()
    return messages


@pytest.fixture
def topics(topic_factory: Callable[..., str]) -> tuple[str, str]:
    return topic_factory(partitions=3), topic_factory(partitions=1)


@pytest.fixture
def live_ingest(kafka: KafkaBroker, topics: tuple[str, str], tmp_path: Path) -> Iterator[LiveIngest]:
    raw, dlq = topics
    server = LiveIngest(ingest_config(kafka.bootstrap_servers, raw, dlq, port=free_port()), tmp_path)
    try:
        server.start()
        yield server
    finally:
        server.process.stop(timeout=40)


def click(**changes: Any) -> bytes:
    return msgspec.json.encode({**CLICK, **changes})


def test_accepted_events_are_in_the_raw_topic_exactly_once_with_their_keys(
    kafka: KafkaBroker, live_ingest: LiveIngest, topics: tuple[str, str]
) -> None:
    raw, dlq = topics
    ids = [f"evt-{i}" for i in range(300)]
    lines = [click(event_id=i, ad_id=f"ad-{n % 7}") for n, i in enumerate(ids[:299])]
    lines.insert(50, b'{"not": "a click"}')  # line 51
    lines.insert(120, b"{oops")  # line 121
    with httpx.Client(base_url=live_ingest.base_url, headers=AUTH, timeout=30) as http:
        batch = http.post("/v1/events", content=b"\n".join(lines) + b"\n",
                          headers={"Content-Type": "application/x-ndjson"})  # fmt: skip
        single = http.post("/v1/events", content=click(event_id=ids[299]),
                           headers={"Content-Type": "application/json"})  # fmt: skip
    assert batch.status_code == 202, batch.text
    assert batch.json()["accepted"] == 299 and batch.json()["rejected"] == 2
    assert [(e["line"], e["code"]) for e in batch.json()["errors"]] == [
        (51, "schema_violation"),
        (121, "malformed_json"),
    ]
    assert single.status_code == 202 and single.json()["accepted"] == 1

    stored = read_topic(kafka.bootstrap_servers, raw, expected=300)
    keys = [m.key().decode() for m in stored]
    assert sorted(keys) == sorted(ids)  # every accepted event, each exactly once
    for message in stored:
        assert msgspec.json.decode(message.value())["event_id"] == message.key().decode()

    dead = read_topic(kafka.bootstrap_servers, dlq, expected=2)
    assert sorted(m.value() for m in dead) == sorted([b'{"not": "a click"}', b"{oops"])
    for message in dead:
        headers = dict(message.headers())
        assert headers["source"] == b"ingest"
        assert headers["reason"].split(b":")[0] in (b"schema_violation", b"malformed_json")


def read_response(sock: socket.socket) -> bytes:
    """One HTTP response with its Content-Length body (headers and body may arrive in separate segments)."""
    answer = b""
    while b"\r\n\r\n" not in answer or len(answer.split(b"\r\n\r\n", 1)[1]) < content_length(answer):
        try:
            data = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not data:
            break
        answer += data
    return answer


def content_length(answer: bytes) -> int:
    for line in answer.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def test_chunked_body_over_the_limit_is_413_on_the_wire(live_ingest: LiveIngest) -> None:
    with socket.create_connection(("127.0.0.1", live_ingest.config.ingest.port), timeout=10) as sock:  # type: ignore[union-attr]
        sock.sendall(
            b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n"
            + f"Authorization: Bearer {TOKEN}\r\n".encode()
            + b"Transfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"%x\r\n%s\r\n" % (8192, b" " * 8192)
        for _ in range(400):  # up to 3.2 MB, 25 times the limit, until the server answers
            if select.select([sock], [], [], 0)[0]:
                break
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                break  # the server stopped reading or closed the connection: what we want
        answer = read_response(sock)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"body_too_large" in answer


def test_sigterm_drains_and_exits_zero(kafka: KafkaBroker, live_ingest: LiveIngest, topics: tuple[str, str]) -> None:
    with httpx.Client(base_url=live_ingest.base_url, headers=AUTH, timeout=30) as http:
        response = http.post("/v1/events", content=click(event_id="last-one"),
                             headers={"Content-Type": "application/json"})  # fmt: skip
    assert response.status_code == 202
    assert live_ingest.terminate() == 0, live_ingest.log
    assert "last-one" in [m.key().decode() for m in read_topic(kafka.bootstrap_servers, topics[0], expected=1)]
    assert TOKEN not in live_ingest.log


def test_readyz_follows_the_broker_and_requests_get_503_while_it_is_down(
    make_kafka: Callable[..., KafkaBroker],
) -> None:
    broker = make_kafka()
    ensure_topics(broker.bootstrap_servers, {"r-raw": TopicSettings(2), "r-dlq": TopicSettings(1)})
    config = ingest_config(broker.bootstrap_servers, "r-raw", "r-dlq")
    app = create_app(config, tokens=[TOKEN], delivery_timeout_s=2.0, readiness_max_age_s=0.5)
    json_headers = {**AUTH, "Content-Type": "application/json"}
    with TestClient(app) as client:
        wait_until(lambda: client.get("/readyz").status_code == 200, 30, "readyz true")
        assert client.post("/v1/events", content=click(event_id="before"), headers=json_headers).status_code == 202

        broker.stop()
        wait_until(lambda: client.get("/readyz").status_code == 503, 20, "readyz false with the broker down")
        assert client.get("/readyz").json()["ready"] is False
        assert client.get("/healthz").status_code == 200  # alive: no reason to restart the process
        down = client.post("/v1/events", content=click(event_id="during"), headers=json_headers)
        assert down.status_code == 503 and int(down.headers["Retry-After"]) >= 1

        broker.start()
        wait_until(lambda: client.get("/readyz").status_code == 200, 60, "readyz true after the restart")
        after = client.post("/v1/events", content=click(event_id="after"), headers=json_headers)
        assert after.status_code == 202, after.text
    keys = {m.key().decode() for m in read_topic(broker.bootstrap_servers, "r-raw", expected=2)}
    assert {"before", "after"} <= keys  # "during" was answered 503: the client owns it (it may or may not be there)


# -- schemathesis ---------------------------------------------------------------------------------------------


@schemathesis.serializer("application/x-ndjson")
def _ndjson(_ctx: schemathesis.SerializationContext, value: Any) -> bytes:
    items = value if isinstance(value, list) else [value]
    return b"\n".join(json.dumps(item).encode() for item in items)


EXAMPLES = {
    ("POST", "/v1/events", schemathesis.GenerationMode.POSITIVE): 150,
    ("POST", "/v1/events", schemathesis.GenerationMode.NEGATIVE): 100,
}


def test_schemathesis_finds_no_server_errors(live_ingest: LiveIngest) -> None:
    started = time.monotonic()
    ran = run_schemathesis(live_ingest.base_url, EXAMPLES, lambda path: AUTH if path == "/v1/events" else None)
    assert ran.get("POST /v1/events positive", 0) >= 50, ran
    assert time.monotonic() - started < 120, ran
    assert "Traceback" not in live_ingest.log, live_ingest.log

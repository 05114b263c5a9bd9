"""Fuzzing the ingest API: no 5xx, every line accounted for, bounded memory on oversized bodies.

- schemathesis (positive and negative cases from the app's own OpenAPI document), in-process over ASGI with
  the real Kafka producer;
- hypothesis: NDJSON/JSON bodies mixing corpus items, their mutations, random bytes and random JSON, plus
  random headers; every answer is below 500 and its counts match the lines sent, and at the end the raw
  topic and the DLQ hold exactly as many messages as were answered accepted and rejected;
- the real server process (uvicorn) fed a 200 MB streamed body: refused early with 413 while its resident
  memory (from /proc) stays bounded.
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from adnomaly.events.codec import INTERNAL_ERROR
from adnomaly.events.corpus import build_corpus, mutate
from adnomaly.ingest import create_app
from adnomaly.ingest.body import MAX_LINES
from adnomaly.services.base import free_port
from adnomaly.services.kafka import KafkaBroker
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from tests.integration.test_ingest_api import AUTH, LIMIT, TOKEN, LiveIngest, ingest_config, read_topic

JSON_TYPES = ["application/json", "application/json; charset=utf-8"]
NDJSON_TYPES = ["application/x-ndjson", "application/x-ndjson; charset=UTF-8"]
CORPUS = [item for item in build_corpus(now=datetime.now(UTC), schemas=("clickstream",)) if len(item.raw) < 8192]
LINES = [item.raw for item in CORPUS if b"\n" not in item.raw]
VALID_LINES = [item.raw for item in CORPUS if item.accepted and b"\n" not in item.raw]


@pytest.fixture
def topics(topic_factory: Callable[..., str]) -> tuple[str, str]:
    return topic_factory(partitions=2), topic_factory(partitions=1)


# -- schemathesis ------------------------------------------------------------------------------------------------


@schemathesis.serializer("application/x-ndjson")
def _ndjson(_ctx: schemathesis.SerializationContext, value: Any) -> bytes:
    items = value if isinstance(value, list) else [value]
    return b"\n".join(json.dumps(item).encode() for item in items)


def test_schemathesis_in_process_finds_no_server_error(kafka: KafkaBroker, topics: tuple[str, str]) -> None:
    app = create_app(ingest_config(kafka.bootstrap_servers, *topics), tokens=[TOKEN])
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operation = schema["/v1/events"]["POST"]
    calls: dict[str, int] = {}

    def run(mode: schemathesis.GenerationMode, examples: int) -> None:
        @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=mode))
        def call(case: schemathesis.Case) -> None:
            response = case.call(headers=AUTH)
            calls[str(response.status_code)] = calls.get(str(response.status_code), 0) + 1
            case.validate_response(
                response, checks=[not_a_server_error, status_code_conformance, response_schema_conformance]
            )

        call()

    started = time.monotonic()
    try:
        run(schemathesis.GenerationMode.POSITIVE, 100)
        run(schemathesis.GenerationMode.NEGATIVE, 100)
    finally:
        shutdown_lifespans()  # flush and close the app's producer now, while Kafka is up
    print(f"schemathesis: answers by status {dict(sorted(calls.items()))}")
    assert not any(code.startswith("5") for code in calls), calls
    assert calls.get("202", 0) >= 20, calls  # positive cases reach Kafka, not only the validation errors
    assert time.monotonic() - started < 60, calls


# -- hypothesis --------------------------------------------------------------------------------------------------


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
lines = st.one_of(
    st.sampled_from(VALID_LINES),
    st.sampled_from(LINES),
    st.builds(mutate, st.sampled_from(LINES), st.integers(0, 2**32)).map(lambda b: b.replace(b"\n", b" ")),
    st.binary(max_size=200).map(lambda b: b.replace(b"\n", b" ")),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.just(b""),
    st.just(b"\r"),
)


def non_blank(body: bytes) -> int:
    return sum(1 for line in body.split(b"\n") if line and not line.isspace())


class Tally:
    """What the app answered across a fuzz run: it must match what is in Kafka afterwards."""

    def __init__(self) -> None:
        self.accepted = 0
        self.rejected = 0
        self.requests = 0


def check_answer(response: Any, body: bytes, ndjson: bool, tally: Tally) -> None:
    assert response.status_code < 500, (response.status_code, response.text, body[:300])
    tally.requests += 1
    answer = response.json()
    expected_lines = non_blank(body) if ndjson else (0 if not body or body.isspace() else 1)
    if expected_lines == 0:
        assert (response.status_code, answer["error"]) == (400, "empty_body"), answer
        return
    assert response.status_code == (202 if ndjson else (202 if answer.get("rejected") == 0 else 400)), answer
    assert answer["accepted"] + answer["rejected"] == expected_lines, (answer, body[:300])
    assert INTERNAL_ERROR not in {error["code"] for error in answer["errors"]}, answer
    tally.accepted += answer["accepted"]
    tally.rejected += answer["rejected"]


@pytest.fixture
def client(kafka: KafkaBroker, topics: tuple[str, str]) -> Iterator[TestClient]:
    app = create_app(ingest_config(kafka.bootstrap_servers, *topics), tokens=[TOKEN])
    with TestClient(app, headers=AUTH) as test_client:
        yield test_client


def test_hypothesis_bodies_are_answered_and_every_line_lands_in_kafka(
    kafka: KafkaBroker, client: TestClient, topics: tuple[str, str]
) -> None:
    tally = Tally()

    @settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(
        body_lines=st.lists(lines, max_size=25),
        ndjson=st.booleans(),
        content_type=st.integers(0, 1),
        crlf=st.booleans(),
    )
    def send(body_lines: list[bytes], ndjson: bool, content_type: int, crlf: bool) -> None:
        if ndjson:
            body = (b"\r\n" if crlf else b"\n").join(body_lines)
            kind = NDJSON_TYPES[content_type]
        else:
            body = body_lines[0] if body_lines else b""
            kind = JSON_TYPES[content_type]
        response = client.post("/v1/events", content=body, headers={"Content-Type": kind})
        check_answer(response, body, ndjson, tally)

    started = time.monotonic()
    send()
    assert tally.requests >= 100 and tally.accepted > 0 and tally.rejected > 0, vars(tally)
    raw, dlq = topics
    assert len(read_topic(kafka.bootstrap_servers, raw, expected=tally.accepted)) == tally.accepted
    assert len(read_topic(kafka.bootstrap_servers, dlq, expected=tally.rejected)) == tally.rejected
    assert time.monotonic() - started < 60, vars(tally)


header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60)


def test_hypothesis_headers_never_cause_a_server_error(client: TestClient) -> None:
    statuses: set[int] = set()

    @settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(
        content_type=st.one_of(header_text, st.sampled_from(JSON_TYPES + NDJSON_TYPES + ["", "text/plain"])),
        authorization=st.one_of(st.none(), header_text, st.just(f"Bearer {TOKEN}"), header_text.map("Bearer ".__add__)),
        content_length=st.one_of(st.none(), st.sampled_from(["abc", "-1", "1e3", " 5", "99999999999999999999"])),
        body=st.sampled_from(LINES[:50]),
    )
    def send(content_type: str, authorization: str | None, content_length: str | None, body: bytes) -> None:
        headers = {"Content-Type": content_type, "Authorization": authorization or ""}
        if content_length is not None:
            headers["Content-Length"] = content_length
        response = client.post("/v1/events", content=body, headers=headers)
        statuses.add(response.status_code)
        assert response.status_code in (202, 400, 401, 403, 413, 415), (headers, response.status_code, response.text)
        assert set(response.json()) >= {"error", "detail"} or "accepted" in response.json()

    send()
    assert {401, 403, 415} <= statuses, statuses


# -- memory on oversized bodies (the real server process) ---------------------------------------------------------

STREAM_BYTES = 200 * 1024 * 1024
CHUNK = 64 * 1024


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


class PeakRss:
    """Samples a process' resident memory every few milliseconds in a thread; `peak` is the maximum seen."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = rss_bytes(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes(self.pid))
            time.sleep(0.005)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()


def stream_oversized(port: int, *, declare_length: bool) -> tuple[bytes, int]:
    """POST up to 200 MB (chunked, or with its Content-Length declared) until the server answers.

    Returns the answer's first bytes and how many body bytes were sent before it came.
    """
    framing = f"Content-Length: {STREAM_BYTES}\r\n" if declare_length else "Transfer-Encoding: chunked\r\n"
    line = b'{"padding": "' + b"x" * (CHUNK - 20) + b'"}\n'
    chunk = line if declare_length else b"%x\r\n%s\r\n" % (len(line), line)
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(
            b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n"
            + f"Authorization: Bearer {TOKEN}\r\n{framing}\r\n".encode()
        )
        while sent < STREAM_BYTES:
            if select.select([sock], [], [], 0)[0]:
                break  # the server answered (or closed): stop sending
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(line)
        sock.settimeout(10)
        answer = b""
        try:  # the server closes the connection after a 413: read until then
            while part := sock.recv(65536):
                answer += part
        except (ConnectionResetError, TimeoutError):
            pass
    return answer, sent


@pytest.fixture
def live_server(kafka: KafkaBroker, topics: tuple[str, str], tmp_path: Path) -> Iterator[LiveIngest]:
    server = LiveIngest(ingest_config(kafka.bootstrap_servers, *topics, port=free_port()), tmp_path)
    try:
        server.start()
        yield server
    finally:
        server.process.stop(timeout=40)


def test_200_mb_bodies_are_refused_early_with_bounded_memory(live_server: LiveIngest) -> None:
    popen = live_server.process.process
    assert popen is not None and live_server.config.ingest is not None
    port = live_server.config.ingest.port
    stream_oversized(port, declare_length=False)  # warm-up: first-request allocations are not growth
    baseline = rss_bytes(popen.pid)
    results: list[tuple[bytes, int]] = []
    with PeakRss(popen.pid) as rss:
        for declare_length in (False, True, False):
            results.append(stream_oversized(port, declare_length=declare_length))
        # Four at once: memory must not scale with the number of oversized uploads either.
        threads = [
            threading.Thread(target=lambda: results.append(stream_oversized(port, declare_length=False)))
            for _ in range(4)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    for answer, sent in results:
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert b"body_too_large" in answer
        assert sent < 32 * 1024 * 1024, f"{sent} bytes sent before the refusal: not refused early"
    growth = rss.peak - baseline
    assert growth < 32 * 1024 * 1024, f"RSS grew by {growth / 2**20:.1f} MiB (baseline {baseline / 2**20:.1f} MiB)"
    assert popen.poll() is None, live_server.log
    after = httpx.post(
        f"{live_server.base_url}/v1/events", content=VALID_LINES[0], timeout=30,
        headers={**AUTH, "Content-Type": "application/json"},
    )  # fmt: skip
    assert after.status_code == 202, after.text  # and it still serves
    print(f"200 MB streams: sent before 413 {[s for _, s in results]}, RSS {baseline / 2**20:.1f} MiB "
          f"-> peak {rss.peak / 2**20:.1f} MiB, limit {LIMIT}")  # fmt: skip


def test_a_body_of_tiny_lines_is_refused_before_parsing_with_bounded_memory(
    kafka: KafkaBroker, topics: tuple[str, str], tmp_path: Path
) -> None:
    """8 MB of one-byte lines (4M invalid events, ~900 MB of rejections if parsed) is refused with 413."""
    config = ingest_config(kafka.bootstrap_servers, *topics, port=free_port())
    assert config.ingest is not None
    config = config.model_copy(update={"ingest": config.ingest.model_copy(update={"max_body_bytes": 8 * 2**20})})
    server = LiveIngest(config, tmp_path)
    try:
        server.start()
        popen = server.process.process
        assert popen is not None
        ndjson = {**AUTH, "Content-Type": "application/x-ndjson"}
        with httpx.Client(base_url=server.base_url, headers=ndjson, timeout=60) as http:
            baseline = rss_bytes(popen.pid)
            with PeakRss(popen.pid) as rss:
                started = time.monotonic()
                tiny = http.post("/v1/events", content=b"x\n" * (4 * 2**20))
                elapsed = time.monotonic() - started
            at_limit = http.post("/v1/events", content=b"\n" * (MAX_LINES - 1) + VALID_LINES[0])
            over_limit = http.post("/v1/events", content=b"\n" * MAX_LINES + VALID_LINES[0])
        assert tiny.status_code == 413 and tiny.json()["error"] == "too_many_lines", tiny.text
        assert elapsed < 10, f"{elapsed:.1f}s to refuse it"
        growth = rss.peak - baseline
        assert growth < 64 * 2**20, f"RSS grew by {growth / 2**20:.1f} MiB while refusing it"
        assert at_limit.status_code == 202 and at_limit.json()["accepted"] == 1, at_limit.text
        assert over_limit.status_code == 413, over_limit.text
        assert popen.poll() is None, server.log
    finally:
        server.process.stop(timeout=40)

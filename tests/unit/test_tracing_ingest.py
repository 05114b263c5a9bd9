"""The ingest API traces a request and carries its context to the raw topic in Kafka headers."""

from __future__ import annotations

from adnomaly.ingest import create_app
from adnomaly.tracing import DISABLED, configure
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.unit.test_ingest_api import NDJSON, OLD, FakeProducer, auth, event, ingest_config


def test_each_raw_message_carries_the_request_trace() -> None:
    exporter = InMemorySpanExporter()
    producer = FakeProducer()
    app = create_app(ingest_config(), tokens=[OLD], producer=producer, tracing=configure("ingest", {}, exporter))
    with TestClient(app) as client:
        body = event(user_id_hash="a") + b"\n" + event(user_id_hash="b") + b"\n{bad"
        assert client.post("/v1/events", content=body, headers={**auth(), **NDJSON}).status_code == 202
    spans = {span.name: span for span in exporter.get_finished_spans()}
    assert set(spans) == {"ingest.request", "kafka.produce"}
    produce = spans["kafka.produce"]
    assert produce.parent.span_id == spans["ingest.request"].context.span_id
    assert spans["ingest.request"].attributes["http.response.status_code"] == 202
    raw = producer.on("t-raw")
    assert len(raw) == 2
    for message in raw:
        (traceparent,) = [value for name, value in message.headers if name == "traceparent"]
        version, trace_id, span_id, _flags = traceparent.decode().split("-")
        context = produce.context
        assert (version, trace_id, span_id) == ("00", f"{context.trace_id:032x}", f"{context.span_id:016x}")
    tracer = configure("processor", {}, exporter)
    assert tracer.extract(raw[0].headers) is not None


def test_tracing_off_sends_no_headers() -> None:
    producer = FakeProducer()
    app = create_app(ingest_config(), tokens=[OLD], producer=producer, tracing=DISABLED)
    with TestClient(app) as client:
        assert client.post("/v1/events", content=event(), headers={**auth(), **NDJSON}).status_code == 202
    assert [message.headers for message in producer.on("t-raw")] == [None]

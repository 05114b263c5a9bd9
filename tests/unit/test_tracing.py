"""Tracing: off unless the OTEL_* environment asks; context crosses Kafka headers as W3C traceparent."""

from __future__ import annotations

import pytest
from adnomaly.tracing import DISABLED, MAX_LINKS, configure, tracing_requested
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
        ({"OTEL_SERVICE_NAME": "ingest"}, False),
    ],
)
def test_tracing_is_requested_only_by_the_standard_variables(env: dict[str, str], expected: bool) -> None:
    assert tracing_requested(env) is expected


def test_off_by_default_is_a_no_op() -> None:
    tracing = configure("ingest", env={})
    assert tracing is DISABLED and not tracing.enabled
    headers: list[tuple[str, bytes]] = [("k", b"v")]
    with tracing.span("ingest.request") as span:
        assert span is None
        assert tracing.inject(headers) == [("k", b"v")]
        assert tracing.headers() is None
    assert tracing.extract([("traceparent", b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-01")]) is None
    assert tracing.links([[("traceparent", b"x")]]) == []


def test_disabled_span_is_one_shared_no_op() -> None:
    """Off, every span is the same no-op context manager: nothing is built per call and OpenTelemetry is never
    reached (checked by structure, not by timing: a loaded CI machine makes a per-call timing meaningless;
    `adnomaly bench` measures the hot paths that carry these calls)."""
    assert DISABLED.tracer is None
    first = DISABLED.span("x")
    assert first is DISABLED.span("y", attributes={"rows": 1}, links=()) is DISABLED.span("z", parent=None)
    with first as span:
        assert span is None
    assert DISABLED.start("x") is None
    assert DISABLED.context_of(None) is None


def test_context_crosses_kafka_headers_from_ingest_to_processor_and_database() -> None:
    exporter = InMemorySpanExporter()
    ingest = configure("ingest", env={}, exporter=exporter)
    processor = configure("processor", env={}, exporter=exporter)
    with ingest.span("ingest.request"), ingest.span("kafka.produce") as produce:
        headers = ingest.inject([("source", b"x")])
    assert produce is not None
    assert [name for name, _ in headers] == ["source", "traceparent"]
    parent = processor.extract(headers)
    assert parent is not None
    with processor.span("processor.batch", links=processor.links([headers, None, []])) as batch:
        with processor.span("db.write", attributes={"rows": 1}):
            pass
        with processor.span("detection.evaluate", parent=parent):
            pass
    assert batch is not None
    spans = {span.name: span for span in exporter.get_finished_spans()}
    trace_id = spans["ingest.request"].context.trace_id
    assert spans["kafka.produce"].parent.span_id == spans["ingest.request"].context.span_id
    assert [link.context.span_id for link in spans["processor.batch"].links] == [produce.get_span_context().span_id]
    assert spans["db.write"].parent.span_id == spans["processor.batch"].context.span_id
    assert spans["detection.evaluate"].context.trace_id == trace_id  # continues the ingest trace
    assert spans["db.write"].attributes["rows"] == 1
    assert spans["processor.batch"].resource.attributes["service.name"] == "processor"


def test_headers_without_valid_context_give_none() -> None:
    tracing = configure("processor", env={}, exporter=InMemorySpanExporter())
    assert tracing.extract(None) is None
    assert tracing.extract([("traceparent", b"garbage")]) is None
    assert tracing.extract([("traceparent", None)]) is None
    assert tracing.headers() == []  # no current span: nothing to carry


def test_batch_links_are_bounded() -> None:
    exporter = InMemorySpanExporter()
    tracing = configure("ingest", env={}, exporter=exporter)
    with tracing.span("produce"):
        headers = tracing.inject([])
    assert len(tracing.links([headers] * (MAX_LINKS + 10))) == MAX_LINKS


def test_service_name_from_the_environment() -> None:
    exporter = InMemorySpanExporter()
    tracing = configure("ingest", env={"OTEL_SERVICE_NAME": "edge-ingest"}, exporter=exporter)
    with tracing.span("s"):
        pass
    assert exporter.get_finished_spans()[0].resource.attributes["service.name"] == "edge-ingest"
    tracing.shutdown()

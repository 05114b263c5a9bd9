"""The processor's batch span links to the spans that produced its events; the database write is its child."""

from __future__ import annotations

import pytest
from adnomaly.kafka_record import HeldRecord
from adnomaly.processor.batch import prepare_batch
from adnomaly.processor.runner import Processor
from adnomaly.tracing import DISABLED, configure
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.unit.test_processor_loop import DECODE, TOPIC, event, msg, rig


def test_batch_and_write_spans_continue_the_producers_traces() -> None:
    exporter = InMemorySpanExporter()
    ingest = configure("ingest", {}, exporter)
    with ingest.span("kafka.produce") as produce:
        headers = ingest.inject([])
    assert produce is not None
    r = rig(1)
    r.processor.tracing = configure("processor", {}, exporter)
    messages = [HeldRecord(event(f"e{n}"), 0, n, TOPIC, headers_=headers) for n in range(3)]
    messages.append(msg(b"{bad", 0, 3))  # dead-lettered, no headers
    assert r.processor.process(prepare_batch(messages, DECODE))
    spans = {span.name: span for span in exporter.get_finished_spans()}
    batch, write = spans["processor.batch"], spans["db.write"]
    assert [link.context.span_id for link in batch.links] == [produce.get_span_context().span_id] * 3
    assert write.parent.span_id == batch.context.span_id
    assert write.attributes["db.rows"] == 3
    assert batch.attributes["messaging.batch.message_count"] == 4 and batch.attributes["adnomaly.dead_letters"] == 1
    assert batch.end_time >= write.end_time  # ended at the commit, after the write
    r.processor.close()


def test_tracing_off_by_default_builds_no_span(monkeypatch: pytest.MonkeyPatch) -> None:
    r = rig(1)
    assert r.processor.tracing is DISABLED

    def no_span(*_args: object) -> None:
        raise AssertionError("a span was built with tracing off")

    monkeypatch.setattr(Processor, "_batch_span", no_span)
    monkeypatch.setattr(Processor, "_traced_write", no_span)
    assert r.processor.process(prepare_batch([msg(event("x"), 0, 0)], DECODE))
    assert r.metric("adnomaly_processor_events_total", result="stored") == 1
    r.processor.close()

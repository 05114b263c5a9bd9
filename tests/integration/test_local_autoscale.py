"""The local executor of the scaling decision on a real Kafka and PostgreSQL: a backlog on the raw topic
grows the processor to more than one process, they drain it together, the processor scales back down after
the stabilization window, and every event is stored exactly once across the rebalances."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from adnomaly.generator.stream import EventStream, GeneratorSettings
from adnomaly.kafka_client import producer_config
from adnomaly.local.autoscale import LocalScaler
from adnomaly.local.live import LiveView
from adnomaly.local.state import open_state_dir
from adnomaly.local.up import LocalPipeline, Services, start_pipeline, tend
from adnomaly.processor.store import count_duplicates, stored_ids
from adnomaly.services.kafka import KafkaBroker
from adnomaly.services.postgres import PostgresServer
from adnomaly.spec import parse_pipeline
from confluent_kafka import Producer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BACKLOG = 300_000


def drain_backlog(
    kafka: KafkaBroker, postgres: PostgresServer, tmp_path: Path, autoscaling: dict[str, object]
) -> tuple[LocalPipeline, LocalScaler, LiveView, int]:
    """BACKLOG events on a 3-partition raw topic, then the processor started and its scaler run every 2 s
    until the backlog is drained and the processor is back to one replica (or 240 s passed)."""
    name = f"as-{uuid.uuid4().hex[:6]}"
    pipeline = parse_pipeline({"kind": "Pipeline", "metadata": {"name": name}, "spec": {
        "events": {"schema": "clickstream"},
        "source": {"generator": {"enabled": False}, "ingest": {"enabled": False}},
        "lake": {"enabled": False},
        "kafka": {"topics": {"raw": {"partitions": 3, "retention": "1d"}}},
        "components": {"processor": {"batchSize": 500, "autoscaling": autoscaling}},
    }})  # fmt: skip
    local = LocalPipeline(pipeline, open_state_dir(tmp_path / "state"), Services(kafka, postgres))
    local.create_topics()
    raw = local.plan.topics["raw"].name
    events = EventStream(GeneratorSettings(schema="clickstream", seed=7, rate=1000.0, start=datetime.now(UTC)))
    producer = Producer(producer_config(kafka.bootstrap_servers))
    for event in events.take(BACKLOG):
        while True:
            try:
                producer.produce(raw, event.value)
                break
            except BufferError:
                producer.poll(0.1)
    assert producer.flush(60) == 0

    scaler = local.scaler()
    scaler.round_s = 2.0  # the HPA's 15 s rounds, shortened for the test; the decision is the same
    view = LiveView(name, live=False)
    peak = 0
    try:
        start_pipeline(local)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            tend(local, scaler, view)
            peak = max(peak, local.replicas("processor"))
            if local.backlog() == 0 and scaler.events and scaler.events[-1].after == 1:
                break
            time.sleep(0.5)
    finally:
        local.stop_component("processor", timeout=30)
    return local, scaler, view, peak


def test_a_backlog_scales_the_processor_out_and_back_with_every_event_stored_once(
    kafka: KafkaBroker, postgres: PostgresServer, tmp_path: Path
) -> None:
    local, scaler, view, peak = drain_backlog(kafka, postgres, tmp_path, {
        "minReplicas": 1, "maxReplicas": 3, "lagThreshold": 2000, "scaleDownStabilization": "10s"})
    texts = [e.text() for e in scaler.events]
    print("\n".join(texts))
    assert peak > 1 and max(e.after for e in scaler.events) == peak, texts
    assert scaler.events[-1].after == 1 and scaler.events[-1].before > 1, texts  # back down after the window
    ids = stored_ids(postgres.dsn, local.processor_section().db_schema)
    assert len(ids) == len(set(ids)) == BACKLOG  # nothing lost, nothing twice, across every rebalance
    assert count_duplicates(postgres.dsn, local.processor_section().db_schema) == 0
    assert view.replicas == {"processor": 1}


def test_target_lag_seconds_scale_on_the_rate_measured_from_committed_offsets(
    kafka: KafkaBroker, postgres: PostgresServer, tmp_path: Path
) -> None:
    # The stated rate is absurd on purpose (10M records/s per replica: a 10M-record threshold, which alone
    # would never scale out this backlog); the processor grows only if the executor measures the real rate
    # and sees the backlog as more than one second of one replica's work.
    local, scaler, _view, peak = drain_backlog(kafka, postgres, tmp_path, {
        "minReplicas": 1, "maxReplicas": 3, "targetLagSeconds": 1, "replicaRecordsPerSecond": 10_000_000,
        "scaleDownStabilization": "10s"})
    texts = [e.text() for e in scaler.events]
    measured = scaler.rates.get("processor")
    print("\n".join(texts), f"\nmeasured {measured} records/s per replica")
    assert measured is not None and 0 < measured < 10_000_000
    assert peak > 1, texts
    ids = stored_ids(postgres.dsn, local.processor_section().db_schema)
    assert len(ids) == len(set(ids)) == BACKLOG

"""The detector component end to end: feature records in a real Kafka topic → anomalies in the anomalies
topic and the PostgreSQL `anomalies` table, once each, across a restart."""

from __future__ import annotations

import os
import signal
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from adnomaly.config import ComponentConfig, EventsConfig, KafkaConfig, SecretEnv, TopicNames
from adnomaly.detection.anomaly import DECODER as ANOMALY_DECODER
from adnomaly.detection.anomaly import Anomaly
from adnomaly.detector.config import DETECTOR_SECTION, DetectorConfig
from adnomaly.features.record import ENCODER, FeatureRecord, record_key
from adnomaly.kafka_client import consumer_config, consumer_lag, producer_config
from adnomaly.services.base import ManagedProcess
from adnomaly.services.kafka import KafkaBroker
from adnomaly.services.postgres import PostgresServer
from adnomaly.sinks.config import render_config
from confluent_kafka import Consumer, Producer

T0 = datetime(2026, 3, 1, tzinfo=UTC)
DETECTION = {"detectors": [{"name": "low-success", "feature": "downloads", "metric": "success_rate",
                            "threshold": {"warningBelow": 0.9, "criticalBelow": 0.8}}]}  # fmt: skip
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def record(minute: int, region: str, success: float, count: int = 100) -> FeatureRecord:
    start = T0 + timedelta(minutes=minute)
    return FeatureRecord(feature="downloads", dimensions={"region": region}, window_start=start,
                         window_end=start + timedelta(minutes=1), metrics={"success_rate": success},
                         event_count=count)  # fmt: skip


def produce(bootstrap: str, topic: str, items: list[FeatureRecord | bytes], headers: list | None = None) -> None:
    producer = Producer(producer_config(bootstrap))
    for item in items:
        if isinstance(item, bytes):
            producer.produce(topic, value=item, key=b"junk")
        else:
            producer.produce(topic, value=ENCODER.encode(item), key=record_key(item, ["region"]), headers=headers)
    assert producer.flush(30) == 0


def read_anomalies(bootstrap: str, topic: str, expect: int, timeout: float = 60.0) -> list[tuple[Anomaly, dict]]:
    """Every committed anomaly message (waits for `expect`, then a little longer for extras)."""
    consumer = Consumer(consumer_config(bootstrap, f"reader-{uuid.uuid4().hex[:8]}"))
    consumer.subscribe([topic])
    out: list[tuple[Anomaly, dict]] = []
    deadline = time.monotonic() + timeout
    settle = None
    try:
        while time.monotonic() < deadline:
            for m in consumer.consume(100, 0.5):
                if m.error() is None:
                    assert m.key() is not None
                    anomaly = ANOMALY_DECODER.decode(m.value())
                    assert m.key().decode() == anomaly.id
                    out.append((anomaly, {k: v.decode() for k, v in m.headers() or ()}))
            if len(out) >= expect:
                settle = settle or time.monotonic() + 3.0
                if time.monotonic() > settle:
                    break
    finally:
        consumer.close()
    return out


def rows(dsn: str, schema: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            f'SELECT id::text, type, severity, status, dimensions, context, detected_at, resolved_at '
            f'FROM "{schema}".anomalies ORDER BY detected_at, dimensions::text'
        ).fetchall()


class Detector:
    def __init__(self, workdir: Path, config: ComponentConfig, section: DetectorConfig, dsn: str) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        path = workdir / "detector.json"
        path.write_text(render_config(config, DETECTOR_SECTION, section))
        self.process = ManagedProcess(
            name="detector", argv=[sys.executable, "-m", "adnomaly.detector", "--config", str(path)],
            log_path=workdir / f"detector-{uuid.uuid4().hex[:6]}.log",
            env={**os.environ, SecretEnv.POSTGRES_DSN: dsn},
        )  # fmt: skip
        self.process.start()

    @property
    def log(self) -> str:
        return self.process.log_path.read_text(errors="replace")

    def terminate(self) -> int:
        proc = self.process.process
        assert proc is not None
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
        self.process.process = None
        return code


@pytest.fixture
def detectors() -> Iterator[list[Detector]]:
    started: list[Detector] = []
    yield started
    for d in started:
        d.process.stop(timeout=10)


def wait_for(check: Callable[[], bool], timeout: float, what: str, detector: Detector) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if not detector.process.running:
            raise AssertionError(f"the detector died while waiting for {what}:\n{detector.log[-3000:]}")
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}\n{detector.log[-3000:]}")


def test_detector_end_to_end_exactly_once_across_restart(
    kafka: KafkaBroker, postgres: PostgresServer, topic_factory: Callable[..., str],
    detectors: list[Detector], tmp_path: Path,
) -> None:  # fmt: skip
    features, anomalies = topic_factory(partitions=1), topic_factory(partitions=1)
    schema = f"det_{uuid.uuid4().hex[:8]}"
    config = ComponentConfig(
        pipeline="det-itest", component="detector",
        kafka=KafkaConfig(bootstrap_servers=kafka.bootstrap_servers, topics=TopicNames(
            raw=f"{features}-raw", dlq=f"{features}-dlq", features=features, anomalies=anomalies)),
        events=EventsConfig(schema_name="download", time_field="ts", max_event_bytes=65536, max_future_skew_s=86400),
    )  # fmt: skip
    section = DetectorConfig(group_id=f"{features}-det", db_schema=schema, transactional_id=f"{features}-det-tx",
                             detection=DETECTION, batch_size=50, batch_timeout_s=0.2)  # fmt: skip
    bootstrap = kafka.bootstrap_servers
    # eu: normal, an outage at minutes 2-3 (opens at 2, escalates at 3), normal again at 4-5 (resolves at 5)
    eu = [record(m, "eu", s) for m, s in enumerate([0.97, 0.98, 0.85, 0.4, 0.97, 0.99])]
    produce(bootstrap, features, [*eu, b"not a feature record", record(1, "us", 0.2, count=3)])
    produce(bootstrap, features, [record(2, "us", 0.85)], headers=[("traceparent", TRACEPARENT.encode())])

    first = Detector(tmp_path / "a", config, section, postgres.dsn)
    detectors.append(first)
    wait_for(lambda: len(rows(postgres.dsn, schema)) == 2 if _table_exists(postgres.dsn, schema) else False,
             90, "two anomaly rows", first)  # fmt: skip
    wait_for(lambda: sum(consumer_lag(bootstrap, section.group_id, features).values()) == 0, 60, "lag 0", first)
    assert first.terminate() == 0

    table = {r[4]["region"]: r for r in rows(postgres.dsn, schema)}
    assert table["eu"][1:4] == ("low-success", "critical", "resolved")
    assert table["eu"][6] == T0 + timedelta(minutes=3) and table["eu"][7] == T0 + timedelta(minutes=6)
    assert table["us"][1:4] == ("low-success", "warning", "open")  # the 3-event window was not judged
    assert table["us"][5]["traceparent"] == TRACEPARENT
    assert table["us"][5]["source"]["topic"] == features

    # Restart: us stays bad (no duplicate: the open anomaly is re-adopted), then recovers.
    produce(bootstrap, features, [record(m, "us", s) for m, s in ((3, 0.3), (4, 0.95), (5, 0.96))])
    second = Detector(tmp_path / "b", config, section, postgres.dsn)
    detectors.append(second)
    wait_for(lambda: all(r[3] == "resolved" for r in rows(postgres.dsn, schema)), 90, "us resolved", second)
    wait_for(lambda: sum(consumer_lag(bootstrap, section.group_id, features).values()) == 0, 60, "lag 0", second)
    assert second.terminate() == 0
    assert "undecodable feature record" in first.log

    final = rows(postgres.dsn, schema)
    assert len(final) == 2
    messages = read_anomalies(bootstrap, anomalies, expect=4)
    summary = sorted((a.dimensions["region"], a.status) for a, _ in messages)
    assert summary == [("eu", "open"), ("eu", "resolved"), ("us", "open"), ("us", "resolved")]
    assert {a.id for a, _ in messages} == {r[0] for r in final}
    us_open = next((a, h) for a, h in messages if a.dimensions["region"] == "us" and a.status == "open")
    assert us_open[1] == {"traceparent": TRACEPARENT}


def _table_exists(dsn: str, schema: str) -> bool:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT to_regclass(%s)", (f'"{schema}".anomalies',)).fetchone()[0] is not None


@pytest.mark.xfail(
    strict=False,
    reason="known bug (detection issue, open): the engine's count of normal windows towards `resolved` is not "
    "persisted, so a kill -9 between two normal windows of an open anomaly can lose its resolution; "
    "open anomalies themselves are re-adopted",
)
def test_detector_killed_mid_stream_publishes_each_anomaly_once(
    kafka: KafkaBroker, postgres: PostgresServer, topic_factory: Callable[..., str],
    detectors: list[Detector], tmp_path: Path,
) -> None:  # fmt: skip
    from adnomaly.detection.engine import DetectionEngine

    features, anomalies = topic_factory(partitions=1), topic_factory(partitions=1)
    schema = f"det_{uuid.uuid4().hex[:8]}"
    config = ComponentConfig(
        pipeline="det-kill", component="detector",
        kafka=KafkaConfig(bootstrap_servers=kafka.bootstrap_servers, topics=TopicNames(
            raw=f"{features}-raw", dlq=f"{features}-dlq", features=features, anomalies=anomalies)),
        events=EventsConfig(schema_name="download", time_field="ts", max_event_bytes=65536, max_future_skew_s=86400),
    )  # fmt: skip
    section = DetectorConfig(group_id=f"{features}-det", db_schema=schema, transactional_id=f"{features}-det-tx",
                             detection=DETECTION, batch_size=4, batch_timeout_s=0.1)  # fmt: skip
    # three regions, each 2 bad windows out of every 8 (shifted), 60 minutes
    records = [record(m, region, 0.5 if (m + shift) % 8 in (0, 1) else 0.97)
               for m in range(60) for shift, region in enumerate(["eu", "us", "ap"])]  # fmt: skip
    engine = DetectionEngine(pipeline="det-kill", detection=section.detection_spec())
    expected = {(a.id, a.status) for r in records for a in engine.process(r)}
    bootstrap = kafka.bootstrap_servers
    produce(bootstrap, features, records)

    first = Detector(tmp_path / "a", config, section, postgres.dsn)
    detectors.append(first)
    wait_for(lambda: _table_exists(postgres.dsn, schema) and len(rows(postgres.dsn, schema)) >= 3, 90,
             "the first anomalies", first)  # fmt: skip
    first.process.kill()
    second = Detector(tmp_path / "b", config, section, postgres.dsn)
    detectors.append(second)
    wait_for(lambda: sum(consumer_lag(bootstrap, section.group_id, features).values()) == 0, 90, "lag 0", second)
    assert second.terminate() == 0

    messages = read_anomalies(bootstrap, anomalies, expect=len(expected))
    published = [(a.id, a.status) for a, _ in messages]
    assert len(published) == len(set(published)), "an anomaly was published twice"
    assert set(published) == expected
    table = rows(postgres.dsn, schema)
    assert {r[0] for r in table} == {i for i, _ in expected}
    assert all(r[3] == "resolved" for r in table)

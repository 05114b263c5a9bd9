"""The detector component end to end: feature records in a real Kafka topic → anomalies in the anomalies
topic and the PostgreSQL `anomalies` table, once each, across a restart."""

from __future__ import annotations

import os
import random
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from adnomaly.config import ComponentConfig, EventsConfig, KafkaConfig, SecretEnv, TopicNames
from adnomaly.detection.anomaly import DECODER as ANOMALY_DECODER
from adnomaly.detection.anomaly import Anomaly
from adnomaly.detector.config import DETECTOR_SECTION, DetectorConfig
from adnomaly.detector.metrics import DetectorMetrics
from adnomaly.detector.runner import DetectorRunner
from adnomaly.features.record import ENCODER, FeatureRecord, record_key
from adnomaly.kafka_client import consumer_config, consumer_lag, producer_config
from adnomaly.services.base import ManagedProcess
from adnomaly.services.kafka import KafkaBroker
from adnomaly.services.postgres import PostgresServer
from adnomaly.sinks.config import render_config
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from prometheus_client import CollectorRegistry

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


def detector_setup(
    kafka: KafkaBroker, topic_factory: Callable[..., str], pipeline: str, *, raw: str | None = None,
    dlq: str | None = None, detection: dict = DETECTION, **options: Any,
) -> tuple[ComponentConfig, DetectorConfig]:
    """A detector's component config and section on fresh features/anomalies topics and its own schema."""
    features, anomalies = topic_factory(partitions=1), topic_factory(partitions=1)
    config = ComponentConfig(
        pipeline=pipeline, component="detector",
        kafka=KafkaConfig(bootstrap_servers=kafka.bootstrap_servers, topics=TopicNames(
            raw=raw or f"{features}-raw", dlq=dlq or f"{features}-dlq", features=features, anomalies=anomalies)),
        events=EventsConfig(schema_name="download", time_field="ts", max_event_bytes=65536, max_future_skew_s=86400),
    )  # fmt: skip
    section = DetectorConfig(group_id=f"{features}-det", db_schema=f"det_{uuid.uuid4().hex[:8]}",
                             transactional_id=f"{features}-det-tx", detection=detection, **options)  # fmt: skip
    return config, section


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
    config, section = detector_setup(kafka, topic_factory, "det-itest", batch_size=50, batch_timeout_s=0.2)
    features, anomalies, schema = config.kafka.topics.features, config.kafka.topics.anomalies, section.db_schema
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


def test_detector_killed_mid_stream_publishes_each_anomaly_once(
    kafka: KafkaBroker, postgres: PostgresServer, topic_factory: Callable[..., str],
    detectors: list[Detector], tmp_path: Path,
) -> None:  # fmt: skip
    from adnomaly.detection.engine import DetectionEngine

    config, section = detector_setup(kafka, topic_factory, "det-kill", batch_size=4, batch_timeout_s=0.1)
    features, anomalies, schema = config.kafka.topics.features, config.kafka.topics.anomalies, section.db_schema
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


AUTO_DETECTION = {"detectors": [{"name": "auto-success", "feature": "downloads", "metric": "success_rate",
                                 "auto": {}, "resolveAfter": 5}]}  # fmt: skip


def test_detector_killed_mid_stream_resumes_auto_state_exactly(
    kafka: KafkaBroker, postgres: PostgresServer, topic_factory: Callable[..., str],
    detectors: list[Detector], tmp_path: Path,
) -> None:  # fmt: skip
    """kill -9 after `auto` has learnt two keys for 150 windows and raised the first dip: the restarted detector
    resumes auto's models from the checkpoint, so it judges the second dip exactly as an uninterrupted run
    (a restart that lost them would still be warming up at minute 180 and miss it, or judge it differently)."""
    from adnomaly.detection.engine import DetectionEngine

    config, section = detector_setup(kafka, topic_factory, "det-auto", detection=AUTO_DETECTION, batch_size=20,
                                     batch_timeout_s=0.1)  # fmt: skip
    features, anomalies, schema = config.kafka.topics.features, config.kafka.topics.anomalies, section.db_schema
    rng = random.Random(17)
    dips = {("eu", 130), ("us", 180)}
    records = [record(m, region, 0.4 if (region, m) in dips else 0.97 + rng.gauss(0, 0.004))
               for m in range(220) for region in ("eu", "us")]  # fmt: skip
    engine = DetectionEngine(pipeline="det-auto", detection=section.detection_spec())
    reference = [a for r in records for a in engine.process(r)]
    expected = {(a.id, a.status, a.dimensions["region"], a.detected_at) for a in reference}
    assert {(region, at) for _, status, region, at in expected if status == "open"} == {
        ("eu", T0 + timedelta(minutes=131)), ("us", T0 + timedelta(minutes=181))}  # the two dips, nothing else
    bootstrap = kafka.bootstrap_servers
    produce(bootstrap, features, records[: 2 * 150])

    first = Detector(tmp_path / "a", config, section, postgres.dsn)
    detectors.append(first)
    wait_for(lambda: _table_exists(postgres.dsn, schema) and len(rows(postgres.dsn, schema)) >= 1, 90,
             "the first dip's anomaly", first)  # fmt: skip
    first.process.kill()
    produce(bootstrap, features, records[2 * 150 :])
    second = Detector(tmp_path / "b", config, section, postgres.dsn)
    detectors.append(second)
    wait_for(lambda: sum(consumer_lag(bootstrap, section.group_id, features).values()) == 0, 90, "lag 0", second)
    assert second.terminate() == 0

    messages = read_anomalies(bootstrap, anomalies, expect=len(expected))
    published = [(a.id, a.status) for a, _ in messages]
    assert len(published) == len(set(published)), "an anomaly was published twice"
    assert set(published) == {(i, status) for i, status, _, _ in expected}
    opened = {a.id: a for a, _ in messages if a.status == "open"}
    for want in (a for a in reference if a.status == "open"):  # judged bit for bit as the uninterrupted run
        got = opened[want.id]
        assert (got.score, got.statistic, got.expected, got.reason) == (want.score, want.statistic, want.expected,
                                                                         want.reason)  # fmt: skip


def test_detector_rides_out_a_postgres_outage_in_the_same_process(
    kafka: KafkaBroker, make_postgres: Callable[..., PostgresServer], topic_factory: Callable[..., str],
    detectors: list[Detector], tmp_path: Path,
) -> None:  # fmt: skip
    postgres = make_postgres()
    config, section = detector_setup(kafka, topic_factory, "det-outage", batch_size=10, batch_timeout_s=0.1)
    features, anomalies, schema = config.kafka.topics.features, config.kafka.topics.anomalies, section.db_schema
    bootstrap = kafka.bootstrap_servers
    produce(bootstrap, features, [record(m, "eu", s) for m, s in enumerate([0.97, 0.98, 0.5])])  # opens at 2
    detector = Detector(tmp_path, config, section, postgres.dsn)
    detectors.append(detector)
    wait_for(lambda: _table_exists(postgres.dsn, schema) and len(rows(postgres.dsn, schema)) == 1, 90,
             "the anomaly row", detector)  # fmt: skip
    pid = detector.process.pid

    postgres.kill()
    produce(bootstrap, features, [record(m, "eu", 0.97) for m in (3, 4)])  # resolves at 4: judged during the outage
    deadline = time.monotonic() + 60
    while "detector interrupted" not in detector.log and time.monotonic() < deadline:
        time.sleep(0.5)
    assert "detector interrupted" in detector.log, detector.log[-3000:]
    assert detector.process.running, f"the detector exited during the outage:\n{detector.log[-3000:]}"
    postgres.start()

    wait_for(lambda: all(r[3] == "resolved" for r in rows(postgres.dsn, schema)), 120, "resolved after the outage",
             detector)  # fmt: skip
    wait_for(lambda: sum(consumer_lag(bootstrap, section.group_id, features).values()) == 0, 60, "lag 0", detector)
    assert detector.process.pid == pid, "the detector was restarted instead of recovering"
    assert detector.terminate() == 0
    published = sorted(a.status for a, _ in read_anomalies(bootstrap, anomalies, expect=2))
    assert published == ["open", "resolved"]
    assert postgres.password not in detector.log


class _FailingCommit:
    """A transactional producer whose `fail_at`-th commit_transaction raises (after PostgreSQL committed)."""

    def __init__(self, producer: Producer, fail_at: int) -> None:
        self._producer = producer
        self.fail_at = fail_at
        self.commits = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self._producer, name)

    def commit_transaction(self, *args: object) -> None:
        self.commits += 1
        if self.commits == self.fail_at:
            raise KafkaException(KafkaError(KafkaError._FAIL, "injected: died before the Kafka commit"))
        self._producer.commit_transaction(*args)


def _run_in_thread(runner: DetectorRunner) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def target() -> None:
        try:
            runner.run()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, errors


def test_detector_dying_between_postgres_and_kafka_commits_resumes_exactly(
    kafka: KafkaBroker, postgres: PostgresServer, topic_factory: Callable[..., str], tmp_path: Path,
) -> None:  # fmt: skip
    """The checkpoint of a batch whose Kafka transaction never committed is skipped: the batch is judged again
    from the previous checkpoint, and every anomaly, escalation and resolution appears exactly once."""
    from adnomaly.detection.engine import DetectionEngine

    config, section = detector_setup(kafka, topic_factory, "det-crash", batch_size=3, batch_timeout_s=0.1,
                                     resolve_after=3)
    features, anomalies, schema = config.kafka.topics.features, config.kafka.topics.anomalies, section.db_schema
    records = [record(m, region, 0.5 if (m + shift) % 9 in (0, 1) else 0.97)
               for m in range(30) for shift, region in enumerate(["eu", "us"])]  # fmt: skip
    engine = DetectionEngine(pipeline="det-crash", detection=section.detection_spec(), resolve_after=3)
    expected = {(a.id, a.status) for r in records for a in engine.process(r)}
    bootstrap = kafka.bootstrap_servers
    produce(bootstrap, features, records)

    first = DetectorRunner(config, section, postgres.dsn, DetectorMetrics(CollectorRegistry()))
    first.producer = _FailingCommit(first.producer, fail_at=6)  # type: ignore[assignment]
    thread, errors = _run_in_thread(first)
    thread.join(120)
    assert not thread.is_alive() and errors and "injected" in str(errors[0])
    with psycopg.connect(postgres.dsn) as conn:
        seqs = [r[0] for r in conn.execute(f'SELECT seq FROM "{schema}".detector_checkpoints ORDER BY seq')]
    assert seqs == [5, 6]  # PostgreSQL holds the failed batch's checkpoint; Kafka committed batch 5's offsets

    second = DetectorRunner(config, section, postgres.dsn, DetectorMetrics(CollectorRegistry()))
    assert second.seq == 5  # resumed from the checkpoint Kafka's offsets agree with
    thread, errors = _run_in_thread(second)
    deadline = time.monotonic() + 90
    while sum(consumer_lag(bootstrap, section.group_id, features).values()) and time.monotonic() < deadline:
        time.sleep(0.3)
    second.stopping.set()
    thread.join(60)
    assert not errors, errors

    published = [(a.id, a.status) for a, _ in read_anomalies(bootstrap, anomalies, expect=len(expected))]
    assert len(published) == len(set(published)), "an anomaly was published twice"
    assert set(published) == expected
    table = rows(postgres.dsn, schema)
    assert {r[0] for r in table} == {i for i, _ in expected}
    final = {i: "resolved" if (i, "resolved") in expected else "open" for i, _ in expected}
    assert {r[0]: r[3] for r in table} == final


def test_detector_raises_malformed_storm_from_the_raw_and_dead_letter_topics(
    kafka: KafkaBroker, postgres: PostgresServer, topic_factory: Callable[..., str],
    detectors: list[Detector], tmp_path: Path,
) -> None:  # fmt: skip
    """A `_dlq` detector: the share of dead-lettered raw records per window, from the record timestamps of the
    raw and dead-letter topics, opens one `malformed-storm` anomaly for the storm and resolves it after."""
    raw, dlq = topic_factory(partitions=2), topic_factory(partitions=1)
    detection = {"detectors": [{"name": "malformed-storm", "feature": "_dlq", "metric": "invalid_share",
                                "threshold": {"warningAbove": 0.1, "criticalAbove": 0.3, "minCount": 20}}],
                 "dlq": {"window": "10s", "allowedLateness": "2s"}}  # fmt: skip
    config, section = detector_setup(kafka, topic_factory, "det-dlq", raw=raw, dlq=dlq, detection=detection,
                                     batch_size=200, batch_timeout_s=0.2)
    anomalies, schema = config.kafka.topics.anomalies, section.db_schema
    # 12 windows of 10 s, 40 raw records each (recent timestamps: old ones would fall out of retention);
    # 1 in 40 dead-lettered, except windows 5 and 6 (the storm: half of them).
    base_ms = (int(time.time()) // 10 - 20) * 10_000
    producer = Producer(producer_config(kafka.bootstrap_servers))
    for w in range(12):
        for i in range(40):
            at = base_ms + w * 10_000 + i * 250
            producer.produce(raw, value=b"{}", key=str(i).encode(), timestamp=at)
            if (w in (5, 6) and i % 2 == 0) or i == 7:
                producer.produce(dlq, value=b"{}", timestamp=at + 150)  # dead letters come a little later
    assert producer.flush(30) == 0

    detector = Detector(tmp_path / "a", config, section, postgres.dsn)
    detectors.append(detector)
    resolved = lambda: any(r[3] == "resolved" for r in rows(postgres.dsn, schema))  # noqa: E731
    wait_for(lambda: _table_exists(postgres.dsn, schema) and resolved(), 90, "the storm's anomaly resolved", detector)
    assert detector.terminate() == 0
    (row,) = rows(postgres.dsn, schema)
    assert row[1:4] == ("malformed-storm", "critical", "resolved")
    assert row[4] == {}
    storm_end = datetime.fromtimestamp((base_ms + 6 * 10_000) / 1000, UTC)
    assert row[6] == storm_end  # detected at the end of the storm's first window
    assert row[7] == storm_end + timedelta(seconds=30)  # two normal windows later
    opened, resolved_copy = (a for a, _ in read_anomalies(kafka.bootstrap_servers, anomalies, expect=2))
    assert (opened.type, opened.status, resolved_copy.status) == ("malformed-storm", "open", "resolved")
    assert opened.id == resolved_copy.id == row[0]
    assert opened.observed == pytest.approx(21 / 40)  # the storm's share, against a background of 1/40

"""The feature sink against real Kafka, Redis and PostgreSQL.

The sink runs as its own process (`python -m adnomaly.sinks.features --config PATH`). Feature records
are produced keyed as the Flink job keys them (view, entity, window end), so windows of one entity land
on different partitions and arrive out of order, as they can in production.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from adnomaly.config import ComponentConfig, KafkaConfig, SecretEnv, TopicNames
from adnomaly.feast.layout import redis_key
from adnomaly.features.record import ENCODER, FeatureRecord, record_key
from adnomaly.kafka_client import consumer_config, consumer_lag, producer_config
from adnomaly.plan import events_config
from adnomaly.reliability.readers import online_windows
from adnomaly.reliability.verify import WindowValue
from adnomaly.services.kafka import KafkaBroker
from adnomaly.services.postgres import PostgresServer
from adnomaly.services.redis import RedisServer
from adnomaly.sinks.config import FEATURE_SINK_SECTION, FeatureSinkConfig, FeatureView
from adnomaly.sinks.features.online import epoch_ms, read_fields, read_latest
from adnomaly.spec import parse_pipeline
from confluent_kafka import Consumer, Producer, TopicPartition

from tests.integration.component_process import ComponentProcess

pytestmark = pytest.mark.integration

PIPELINE = parse_pipeline({"kind": "Pipeline", "metadata": {"name": "fs-itest"},
                           "spec": {"events": {"schema": "clickstream"}}})  # fmt: skip
TRAFFIC = FeatureView(name="traffic", dimensions=["geo", "platform"], metrics=["ctr_avg", "clicks"], ttl_s=3600)
PROBES = FeatureView(name="latency", dimensions=["region"], metrics=["p99"], ttl_s=600)


def minute_now() -> datetime:
    """The current minute, taken by each test: a module-level time goes stale over a long session, and the
    views' TTLs count from it."""
    return datetime.now(UTC).replace(second=0, microsecond=0)


def record(view: FeatureView, dims: dict[str, str], end: datetime, ctr: float | None, count: int) -> FeatureRecord:
    metrics: dict[str, float | None] = (
        {"ctr_avg": ctr, "clicks": float(count)} if view is TRAFFIC else {"p99": ctr}
    )
    return FeatureRecord(feature=view.name, dimensions=dims, window_start=end - timedelta(minutes=5),
                         window_end=end, metrics=metrics, event_count=count)  # fmt: skip


def produce(kafka: KafkaBroker, topic: str, records: list[FeatureRecord | bytes]) -> None:
    producer = Producer(producer_config(kafka.bootstrap_servers))
    for item in records:
        if isinstance(item, bytes):
            producer.produce(topic, value=item, key=b"junk")
        else:
            view = TRAFFIC if item.feature == TRAFFIC.name else PROBES
            producer.produce(topic, value=ENCODER.encode(item), key=record_key(item, view.dimensions))
    assert producer.flush(30) == 0


def feature_sink(workdir: Path, config: ComponentConfig, section: Any, env: dict[str, str]) -> ComponentProcess:
    return ComponentProcess(workdir, "feature-sink", config, FEATURE_SINK_SECTION, section, env)


def setup(kafka: KafkaBroker, topic: str, schema: str) -> tuple[ComponentConfig, FeatureSinkConfig]:
    config = ComponentConfig(
        pipeline="fs-itest",
        component="feature-sink",
        kafka=KafkaConfig(
            bootstrap_servers=kafka.bootstrap_servers,
            topics=TopicNames(raw=f"{topic}-raw", dlq=f"{topic}-dlq", features=topic, anomalies=f"{topic}-a"),
        ),
        events=events_config(PIPELINE),
        metrics_port=None,
    )
    section = FeatureSinkConfig(group_id=f"{topic}-fs", db_schema=schema, feast_project=schema,
                                features=[TRAFFIC, PROBES], batch_size=50, batch_timeout_s=0.2)  # fmt: skip
    return config, section


def secrets(redis: RedisServer, postgres: PostgresServer) -> dict[str, str]:
    return {SecretEnv.REDIS_URL: redis.url, SecretEnv.POSTGRES_DSN: postgres.dsn}


def wait_for(check: Callable[[], bool], timeout: float, what: str, sink: ComponentProcess) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if not sink.process.running:
            raise AssertionError(f"the feature sink died while waiting for {what}:\n{sink.log[-3000:]}")
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{sink.log[-3000:]}")


def lag(kafka: KafkaBroker, section: FeatureSinkConfig, topic: str) -> int:
    return sum(consumer_lag(kafka.bootstrap_servers, section.group_id, topic).values())


def history(dsn: str, schema: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            f'SELECT feature, entity_key, dimensions, window_start, window_end, metrics, event_count, updated_at'
            f' FROM "{schema}".feature_aggregates ORDER BY feature, entity_key, window_end'
        ).fetchall()


def online(redis: RedisServer, project: str, view: FeatureView, dims: dict[str, str]) -> dict[str, Any] | None:
    """The window the serving API would answer (Feast's hash of the entity, the only online copy)."""
    with redis.client() as client:
        return read_latest(view, client.hmget(redis_key(project, dims), read_fields(view)), round(time.time() * 1000))


def rewind(kafka: KafkaBroker, section: FeatureSinkConfig, topic: str, partitions: int) -> None:
    consumer = Consumer(consumer_config(kafka.bootstrap_servers, section.group_id))
    try:
        consumer.commit(offsets=[TopicPartition(topic, p, 0) for p in range(partitions)], asynchronous=False)
    finally:
        consumer.close()


def test_latest_window_wins_out_of_order_with_ttl_history_kept_and_replay_idempotent(
    kafka: KafkaBroker, redis: RedisServer, postgres: PostgresServer, topic_factory: Any, tmp_path: Path,
    sinks: list[ComponentProcess],
) -> None:  # fmt: skip
    now = minute_now()
    topic = topic_factory(partitions=3)
    schema = f"fs_{topic.rsplit('-', 1)[-1]}"
    config, section = setup(kafka, topic, schema)
    us = {"geo": "US", "platform": "ios"}
    de = {"platform": "web", "geo": "DE"}
    t1, t2, t3 = now - timedelta(minutes=3), now - timedelta(minutes=2), now - timedelta(minutes=1)
    produce(kafka, topic, [
        record(TRAFFIC, us, t3, 0.30, 30),  # the newest window first ...
        record(TRAFFIC, us, t1, 0.10, 10),  # ... then older ones, on other partitions
        record(TRAFFIC, us, t2, 0.20, 20),
        record(TRAFFIC, de, t2, None, 0),  # an undefined metric
        record(PROBES, {"region": "eu"}, t1, 812.5, 99),
        b"{not json",  # skipped, does not block
        ENCODER.encode(record(TRAFFIC, {"geo": "US"}, t3, 0.9, 1)),  # a dimension missing: skipped
        ENCODER.encode(FeatureRecord(feature="nope", dimensions={"x": "y"}, window_start=t1, window_end=t2,
                                     metrics={}, event_count=1)),  # an unknown feature: skipped
    ])  # fmt: skip
    sink = feature_sink(tmp_path / "a", config, section, secrets(redis, postgres)).start()
    sinks.append(sink)
    wait_for(lambda: lag(kafka, section, topic) == 0, 60, "everything committed", sink)
    # a re-computed newest window (late events) replaces it; an older one arriving later changes nothing
    produce(kafka, topic, [record(TRAFFIC, us, t3, 0.33, 31), record(TRAFFIC, us, t2, 0.99, 99)])
    wait_for(lambda: lag(kafka, section, topic) == 0, 60, "the late records committed", sink)

    key = redis_key(schema, us)
    latest = online(redis, schema, TRAFFIC, us)
    assert latest == {
        "window_start": (t3 - timedelta(minutes=5)).isoformat().replace("+00:00", "Z"),
        "window_end": t3.isoformat().replace("+00:00", "Z"),
        "event_count": 31,
        "metrics": {"ctr_avg": 0.33, "clicks": 31.0},
    }
    assert online(redis, schema, TRAFFIC, de)["metrics"] == {  # type: ignore[index]
        "ctr_avg": None, "clicks": 0.0,
    }  # fmt: skip
    assert online(redis, schema, PROBES, {"region": "eu"})["metrics"] == {"p99": 812.5}  # type: ignore[index]
    # the reliability suite's reader: SCANs the project's hashes, decodes their entities
    assert online_windows(redis.url, schema, [TRAFFIC, PROBES], round(time.time() * 1000)) == {
        ("traffic", "geo=US|platform=ios"): (epoch_ms(t3), WindowValue(31, {"ctr_avg": 0.33, "clicks": 31.0})),
        ("traffic", "geo=DE|platform=web"): (epoch_ms(t2), WindowValue(0, {"ctr_avg": None, "clicks": 0.0})),
        ("latency", "region=eu"): (epoch_ms(t1), WindowValue(99, {"p99": 812.5})),
    }
    with redis.client() as client:
        ttl_ms = client.pttl(key)
        # one hash per entity, Feast's, and nothing else
        assert set(client.scan_iter(match=f"*{schema}*")) == {redis_key(schema, d) for d in (us, de, {"region": "eu"})}
    expected_ms = (t3 + timedelta(seconds=TRAFFIC.ttl_s) - datetime.now(UTC)).total_seconds() * 1000
    assert 0 < ttl_ms <= expected_ms + 1000 and ttl_ms > expected_ms - 30_000  # expires ttl after the window end

    rows = history(postgres.dsn, schema)
    by_window = {(r[0], r[1], r[4]): r for r in rows}
    assert len(rows) == 5  # 3 US windows, 1 DE, 1 eu
    assert by_window[("traffic", "geo=US|platform=ios", t2)][5] == {"ctr_avg": 0.99, "clicks": 99.0}
    assert by_window[("traffic", "geo=US|platform=ios", t3)][5:7] == ({"ctr_avg": 0.33, "clicks": 31.0}, 31)
    assert by_window[("latency", "region=eu", t1)][2] == {"region": "eu"}
    assert "skipped 1 feature records: malformed" in sink.log
    assert "bad_dimensions" in sink.log and "unknown_feature" in sink.log
    assert sink.terminate() == 0

    # replay everything from offset 0 with a new process: nothing changes anywhere
    rewind(kafka, section, topic, partitions=3)
    assert lag(kafka, section, topic) > 0
    with redis.client() as client:
        before_online = client.hgetall(key)
    replay = feature_sink(tmp_path / "b", config, section, secrets(redis, postgres)).start()
    sinks.append(replay)
    wait_for(lambda: lag(kafka, section, topic) == 0, 60, "the replay committed", replay)
    assert history(postgres.dsn, schema) == rows  # updated_at included: no row was touched
    with redis.client() as client:
        assert client.hgetall(key) == before_online
    assert replay.terminate() == 0


def test_redis_then_postgres_down_nothing_committed_until_both_written(
    kafka: KafkaBroker, make_redis: Any, make_postgres: Any, topic_factory: Any, tmp_path: Path,
    sinks: list[ComponentProcess],
) -> None:  # fmt: skip
    now = minute_now()
    redis, postgres = make_redis(), make_postgres()
    topic = topic_factory(partitions=2)
    config, section = setup(kafka, topic, "fs_outage")
    sink = feature_sink(tmp_path, config, section, secrets(redis, postgres)).start()
    sinks.append(sink)
    produce(kafka, topic, [record(TRAFFIC, {"geo": "FR", "platform": "web"}, now - timedelta(minutes=1), 0.5, 5)])
    wait_for(lambda: lag(kafka, section, topic) == 0, 60, "the first record", sink)
    pid = sink.process.pid

    for outage, server in (("redis", redis), ("postgres", postgres)):
        server.kill()
        end = now - timedelta(seconds=30 if outage == "redis" else 10)
        produce(kafka, topic, [record(TRAFFIC, {"geo": "FR", "platform": "web"}, end, 0.6, 6)])
        time.sleep(5)
        assert lag(kafka, section, topic) == 1, f"committed while {outage} was down"
        server.start()
        wait_for(lambda: lag(kafka, section, topic) == 0, 60, f"catching up after the {outage} outage", sink)
        assert online(redis, "fs_outage", TRAFFIC, {"geo": "FR", "platform": "web"})["window_end"].startswith(  # type: ignore[index]
            end.isoformat()[:19]
        )
        assert history(postgres.dsn, "fs_outage")[-1][4] == end
    assert sink.process.pid == pid
    assert "retrying" in sink.log
    assert sink.terminate() == 0

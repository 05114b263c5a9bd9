"""The lake sink against real Kafka and a real MinIO (built from its Go module) or a local directory.

The sink runs as its own process (`python -m adnomaly.sinks.lake --config PATH`), as deployed, so that
`kill -9` and "the same process survived an S3 outage" mean what they say. The lake is read back with
pyarrow.dataset (Hive partitioning), and every check is about the whole lake: each valid event in
exactly one file, in the hour (or day) of its event time, no two file names with overlapping offset
ranges, and nothing invalid.
"""

from __future__ import annotations

import itertools
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pyarrow.dataset as ds
import pytest
from adnomaly.config import ComponentConfig, KafkaConfig, SecretEnv, TopicNames
from adnomaly.kafka_client import consumer_config, consumer_lag, producer_config
from adnomaly.plan import events_config
from adnomaly.services.kafka import KafkaBroker
from adnomaly.services.minio import MinioServer
from adnomaly.sinks.config import LAKE_SECTION, LakeConfig
from adnomaly.sinks.lake.layout import OffsetRange, parse_file_name, time_partition
from adnomaly.sinks.lake.storage import LakeStore, S3Credentials
from adnomaly.spec import parse_pipeline
from confluent_kafka import Consumer, Producer, TopicPartition

from tests.integration.component_process import ComponentProcess

pytestmark = pytest.mark.integration

PARTITIONS = 3
BASE = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=4)
PIPELINE = parse_pipeline({"kind": "Pipeline", "metadata": {"name": "lake-itest"},
                           "spec": {"events": {"schema": "clickstream"}}})  # fmt: skip


# -- helpers -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def minio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MinioServer]:
    server = MinioServer(tmp_path_factory.mktemp("minio"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


def event(n: int, *, spread_hours: int = 3, count: int = 1000) -> bytes:
    """A valid clickstream event `e-<n>`; n/count spreads the events over `spread_hours` of event time."""
    when = BASE + timedelta(seconds=n * spread_hours * 3600 / max(count, 1))
    return msgspec.json.encode({
        "event_id": f"e-{n}", "timestamp": when.isoformat(), "user_id_hash": f"u{n % 97}", "ad_id": f"a{n % 13}",
        "campaign_id": "c1", "geo": "US", "platform": "ios", "user_agent": "Mozilla/5.0", "CPC": 0.25,
        "CTR": 0.03, "conversion": 0, "bounce_rate": 0.4,
    })  # fmt: skip


def produce(kafka: KafkaBroker, topic: str, values: list[bytes]) -> None:
    producer = Producer(producer_config(kafka.bootstrap_servers, linger_ms=20))
    for n, value in enumerate(values):
        producer.produce(topic, value=value, partition=n % PARTITIONS)
        if n % 1000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0


def batch(start: int, count: int, total: int, *, invalid_every: int = 0) -> list[bytes]:
    return [
        b'{"event_id": "bad-%d", "timestamp": "not a time"}' % n if invalid_every and n % invalid_every == 0
        else event(n, count=total)
        for n in range(start, start + count)
    ]  # fmt: skip


def valid_ids(values: list[bytes]) -> set[str]:
    return {json.loads(v)["event_id"] for v in values if not v.startswith(b'{"event_id": "bad-')}


def lake_sink(workdir: Path, config: ComponentConfig, section: Any, env: dict[str, str]) -> ComponentProcess:
    return ComponentProcess(workdir, "lake-sink", config, LAKE_SECTION, section, env)


def make_config(kafka: KafkaBroker, topic: str) -> ComponentConfig:
    return ComponentConfig(
        pipeline="lake-itest",
        component="lake-sink",
        kafka=KafkaConfig(
            bootstrap_servers=kafka.bootstrap_servers,
            topics=TopicNames(raw=topic, dlq=f"{topic}-dlq", features=f"{topic}-f", anomalies=f"{topic}-a"),
        ),
        events=events_config(PIPELINE),
        metrics_port=None,
    )


def s3_env(minio: MinioServer) -> dict[str, str]:
    return {SecretEnv.S3_ACCESS_KEY: minio.access_key, SecretEnv.S3_SECRET_KEY: minio.secret_key}


def s3_store(minio: MinioServer, uri: str) -> LakeStore:
    return LakeStore(uri, endpoint=minio.endpoint, credentials=S3Credentials(minio.access_key, minio.secret_key))


def wait_for(check: Callable[[], bool], timeout: float, what: str, sink: ComponentProcess | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if sink is not None and not sink.alive():
            raise AssertionError(f"the lake sink died while waiting for {what}:\n{sink.log[-3000:]}")
        time.sleep(0.25)
    tail = f"\nsink log:\n{sink.log[-3000:]}" if sink is not None else ""
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}{tail}")


def lag(kafka: KafkaBroker, lake: LakeConfig, topic: str) -> int:
    return sum(consumer_lag(kafka.bootstrap_servers, lake.group_id, topic).values())


def read_lake(store: LakeStore) -> list[dict[str, Any]]:
    """Every row of every lake file, with the file's path relative to the table root."""
    dataset = ds.dataset(store.root, filesystem=store.filesystem, format="parquet", partitioning="hive")
    prefix = store.root.rstrip("/") + "/"
    rows: list[dict[str, Any]] = []
    for fragment in dataset.get_fragments():
        relative = fragment.path.removeprefix(prefix)
        for row in fragment.to_table().to_pylist():
            rows.append({**row, "_file": relative})
    return rows


def assert_lake_holds_exactly(store: LakeStore, expected_ids: set[str], partitioning: str = "hourly") -> None:
    rows = read_lake(store)
    counts = Counter(row["event_id"] for row in rows)
    duplicated = sorted(event_id for event_id, count in counts.items() if count > 1)
    assert duplicated == [], f"{len(duplicated)} events in more than one place, e.g. {duplicated[:5]}"
    missing = expected_ids - set(counts)
    assert not missing, f"{len(missing)} events missing from the lake, e.g. {sorted(missing)[:5]}"
    assert set(counts) == expected_ids, f"unexpected events: {sorted(set(counts) - expected_ids)[:5]}"
    files: dict[str, OffsetRange] = {}
    for row in rows:
        offsets = parse_file_name(row["_file"])
        assert offsets is not None, row["_file"]
        files[row["_file"]] = offsets
        assert offsets.partition == row["_kafka_partition"]
        assert offsets.first <= row["_kafka_offset"] <= offsets.last
        assert row["_file"].startswith(time_partition(row["timestamp"], partitioning) + "/"), row["_file"]  # type: ignore[arg-type]
    ranges = sorted(set(files.values()))
    for a, b in itertools.pairwise(ranges):
        assert not a.overlaps(b), f"file names with overlapping offset ranges: {a.file_name} and {b.file_name}"
    assert all(not name.rsplit("/", 1)[-1].startswith(".") for name in store.list_files())  # no temp files left


# -- tests -----------------------------------------------------------------------------------------------


def test_kafka_keeps_the_metadata_committed_with_an_offset(kafka: KafkaBroker, topic_factory: Any) -> None:
    """The recorded cut rides on this: a commit's metadata comes back from the group coordinator."""
    topic = topic_factory(partitions=1)
    consumer = Consumer(consumer_config(kafka.bootstrap_servers, f"{topic}-meta"))
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        consumer.commit(offsets=[TopicPartition(topic, 0, 0, metadata="adnomaly-lake:v1:0-41")], asynchronous=False)
        (back,) = consumer.committed([TopicPartition(topic, 0)], timeout=10)
        assert (back.offset, back.metadata) == (0, "adnomaly-lake:v1:0-41")
    finally:
        consumer.close()


def test_file_lake_daily_holds_every_valid_event_once_and_stops_cleanly(
    kafka: KafkaBroker, topic_factory: Any, tmp_path: Path, sinks: list[ComponentProcess]
) -> None:
    topic = topic_factory(partitions=PARTITIONS)
    values = batch(0, 600, 600, invalid_every=10)
    produce(kafka, topic, values)
    lake = LakeConfig(group_id=f"{topic}-lake", uri=f"file://{tmp_path / 'lake'}", partitioning="daily",
                      flush_events=80, flush_interval_s=1.0)  # fmt: skip
    sink = lake_sink(tmp_path / "run", make_config(kafka, topic), lake, {}).start()
    sinks.append(sink)
    wait_for(lambda: lag(kafka, lake, topic) == 0, 90, "the lake sink to commit everything", sink)
    assert sink.terminate() == 0
    store = LakeStore(lake.uri)
    assert_lake_holds_exactly(store, valid_ids(values), "daily")
    assert all(name.count("/") == 1 and name.startswith("dt=") for name in store.list_files())


def test_minio_lake_hourly_holds_every_valid_event_once(
    kafka: KafkaBroker, topic_factory: Any, tmp_path: Path, minio: MinioServer, sinks: list[ComponentProcess]
) -> None:
    topic = topic_factory(partitions=PARTITIONS)
    values = batch(0, 900, 900, invalid_every=7)
    produce(kafka, topic, values)
    lake = LakeConfig(group_id=f"{topic}-lake", uri=f"s3://adnomaly-data/{topic}/events", s3_endpoint=minio.endpoint,
                      flush_events=100, flush_interval_s=1.0)  # fmt: skip
    sink = lake_sink(tmp_path, make_config(kafka, topic), lake, s3_env(minio)).start()
    sinks.append(sink)
    wait_for(lambda: lag(kafka, lake, topic) == 0, 90, "the lake sink to commit everything", sink)
    store = s3_store(minio, lake.uri)
    assert_lake_holds_exactly(store, valid_ids(values))
    hours = {name.split("/")[1] for name in store.list_files()}
    assert len(hours) >= 3, hours
    assert minio.secret_key not in sink.log and minio.secret_key not in (tmp_path / "lake-sink.json").read_text()
    assert sink.terminate() == 0


def killed_mid_stream(kafka: KafkaBroker, topic: str, tmp_path: Path, minio: MinioServer,
                      sinks: list[ComponentProcess]) -> tuple[Any, LakeConfig, Any]:  # fmt: skip
    """A lake sink started on `topic` and SIGKILLed (its whole process group) once it has written a few files,
    with events still to read: the config, lake section and store the test restarts it with."""
    uri = f"s3://adnomaly-data/{topic}/events"
    config = make_config(kafka, topic)
    lake = LakeConfig(group_id=f"{topic}-lake", uri=uri, s3_endpoint=minio.endpoint, flush_events=150,
                      flush_interval_s=0.5, consume_batch=200)  # fmt: skip
    store = s3_store(minio, uri)
    sink = lake_sink(tmp_path / "first", config, lake, s3_env(minio)).start()
    sinks.append(sink)
    wait_for(lambda: len(store.list_files()) >= 8, 90, "the first files", sink)
    sink.process.kill()
    assert lag(kafka, lake, topic) > 0, "the sink finished before it could be killed; make the test bigger"
    return config, lake, store


def test_kill_9_mid_stream_then_restart_writes_every_event_exactly_once(
    kafka: KafkaBroker, topic_factory: Any, tmp_path: Path, minio: MinioServer, sinks: list[ComponentProcess]
) -> None:
    topic = topic_factory(partitions=PARTITIONS)
    total = 6000
    first = batch(0, 4000, total, invalid_every=50)
    produce(kafka, topic, first)
    config, lake, store = killed_mid_stream(kafka, topic, tmp_path, minio, sinks)
    second = batch(4000, 2000, total, invalid_every=50)
    produce(kafka, topic, second)
    # a different flush policy: without the recorded cuts the replay would cut elsewhere
    relaunched = lake.model_copy(update={"flush_events": 1000, "flush_interval_s": 0.3})
    restarted = lake_sink(tmp_path / "second", config, relaunched, s3_env(minio)).start()
    sinks.append(restarted)
    wait_for(lambda: lag(kafka, lake, topic) == 0, 120, "the restarted sink to commit everything", restarted)
    assert_lake_holds_exactly(store, valid_ids(first + second))
    assert restarted.terminate() == 0
    print("replayed recorded cuts:", restarted.log.count("replaying the recorded range"))


def test_s3_down_for_a_while_loses_nothing_and_the_same_process_carries_on(
    kafka: KafkaBroker, topic_factory: Any, tmp_path: Path, sinks: list[ComponentProcess]
) -> None:
    minio = MinioServer(tmp_path / "minio")
    minio.start()
    try:
        topic = topic_factory(partitions=PARTITIONS)
        uri = f"s3://lake/{topic}/events"
        lake = LakeConfig(group_id=f"{topic}-lake", uri=uri, s3_endpoint=minio.endpoint, flush_events=100,
                          flush_interval_s=0.5)  # fmt: skip
        first = batch(0, 300, 900)
        produce(kafka, topic, first)
        sink = lake_sink(tmp_path / "run", make_config(kafka, topic), lake, s3_env(minio)).start()
        sinks.append(sink)
        wait_for(lambda: lag(kafka, lake, topic) == 0, 90, "the first batch", sink)
        pid = sink.process.pid
        minio.kill()
        second = batch(300, 600, 900)
        produce(kafka, topic, second)
        time.sleep(8)  # the sink retries with back-off meanwhile
        assert sink.alive() and sink.process.pid == pid
        assert lag(kafka, lake, topic) == len(second), "offsets were committed while S3 was down"
        minio.start()
        wait_for(lambda: lag(kafka, lake, topic) == 0, 90, "the sink to catch up after the outage", sink)
        assert sink.process.pid == pid
        assert "retrying" in sink.log
        assert_lake_holds_exactly(s3_store(minio, uri), valid_ids(first + second))
        assert sink.terminate() == 0
    finally:
        minio.stop()


def produce_keyed(kafka: KafkaBroker, topic: str, values: list[bytes]) -> None:
    """As the ingest API produces: keyed by event id, so every copy of an id lands on one partition."""
    producer = Producer(producer_config(kafka.bootstrap_servers, linger_ms=20))
    for n, value in enumerate(values):
        producer.produce(topic, value=value, key=json.loads(value)["event_id"].encode())
        if n % 1000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0


def test_resent_ids_land_once_across_a_kill_9(
    kafka: KafkaBroker, topic_factory: Any, tmp_path: Path, minio: MinioServer, sinks: list[ComponentProcess]
) -> None:
    """A client re-sends batches (5 % of the events, some twice) before and after the sink is killed with
    SIGKILL: every id is in exactly one file of the lake, counted over all of them."""
    topic = topic_factory(partitions=PARTITIONS)
    total = 6000
    first = batch(0, 4000, total)
    resent_early = [first[n] for n in range(0, 4000, 20)] + [first[n] for n in range(0, 4000, 200)]
    produce_keyed(kafka, topic, first[:2000] + resent_early[:100] + first[2000:] + resent_early[100:])
    config, lake, store = killed_mid_stream(kafka, topic, tmp_path, minio, sinks)  # the dedup state is gone too
    second = batch(4000, 2000, total)
    # copies of ids written before the kill, of ids not written yet, and of the new ones
    resent_late = [first[n] for n in range(5, 4000, 25)] + [second[n] for n in range(0, 2000, 30)]
    produce_keyed(kafka, topic, second[:1000] + resent_late + second[1000:])
    restarted = lake_sink(tmp_path / "second", config, lake, s3_env(minio)).start()
    sinks.append(restarted)
    wait_for(lambda: lag(kafka, lake, topic) == 0, 120, "the restarted sink to commit everything", restarted)
    assert_lake_holds_exactly(store, valid_ids(first + second))  # no id twice, none missing
    assert "dedup state rebuilt" in restarted.log
    assert restarted.terminate() == 0

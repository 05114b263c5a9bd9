"""The local services and the Kafka conventions, against real processes."""

from __future__ import annotations

import os
import stat
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
import redis as redis_py
from adnomaly.kafka_client import (
    PartitionDecreaseError,
    TopicNotFoundError,
    TopicSettings,
    admin_client,
    consumer_config,
    consumer_lag,
    ensure_topics,
    producer_config,
)
from adnomaly.services.kafka import KafkaBroker
from adnomaly.services.postgres import PostgresServer
from adnomaly.services.redis import RedisServer
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from redis.backoff import NoBackoff
from redis.retry import Retry

pytestmark = pytest.mark.integration

NO_RETRY = Retry(NoBackoff(), 0)  # redis-py retries failed authentication with backoff (~4s) by default


def unique(hint: str) -> str:
    return f"{hint}-{uuid.uuid4().hex[:10]}"


def produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes, int | None]]) -> None:
    """Produce (key, value, partition) records and fail unless every one was acknowledged."""
    errors: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            errors.append(err)

    producer = Producer(producer_config(bootstrap))
    for key, value, partition in records:
        kwargs = {} if partition is None else {"partition": partition}
        producer.produce(topic, value=value, key=key, on_delivery=on_delivery, **kwargs)
    assert producer.flush(30) == 0, "messages left undelivered"
    assert not errors, errors


def consume(consumer: Consumer, count: int, timeout: float = 30.0) -> list[Message]:
    messages: list[Message] = []
    deadline = time.monotonic() + timeout
    while len(messages) < count and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        assert msg.error() is None, msg.error()
        messages.append(msg)
    assert len(messages) == count, f"got {len(messages)} of {count} messages in {timeout:.0f}s"
    return messages


def partition_counts(bootstrap: str, topic: str) -> int:
    return len(admin_client(bootstrap).list_topics(topic=topic, timeout=10).topics[topic].partitions)


# -- Kafka -----------------------------------------------------------------------------------------------


def test_produce_and_consume_with_the_project_configs(
    kafka: KafkaBroker, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory(partitions=3)
    records = [(f"k{i % 7}".encode(), f"v{i}".encode(), None) for i in range(200)]
    produce(kafka.bootstrap_servers, topic, records)

    group = unique("group")
    consumer = Consumer(consumer_config(kafka.bootstrap_servers, group))
    try:
        consumer.subscribe([topic])
        messages = consume(consumer, 200)
        for msg in messages:
            consumer.store_offsets(message=msg)
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()

    assert sorted(m.value() for m in messages) == sorted(v for _, v, _ in records)
    # one key always lands on one partition
    partitions_by_key: dict[bytes, set[int]] = {}
    for msg in messages:
        partitions_by_key.setdefault(msg.key(), set()).add(msg.partition())
    assert all(len(p) == 1 for p in partitions_by_key.values())
    assert consumer_lag(kafka.bootstrap_servers, group, topic) == {0: 0, 1: 0, 2: 0}


def test_kafka_kill_and_restart_keeps_acknowledged_data_committed_offsets_and_port(
    make_kafka: Callable[..., KafkaBroker],
) -> None:
    broker = make_kafka()
    bootstrap, port = broker.bootstrap_servers, broker.port
    topic = "orders"
    ensure_topics(bootstrap, {topic: TopicSettings(1)})
    produce(bootstrap, topic, [(b"a", b"first", None), (b"b", b"second", None)])
    group = "survivor"
    consumer = Consumer(consumer_config(bootstrap, group))
    try:
        consumer.commit(offsets=[TopicPartition(topic, 0, 1)], asynchronous=False)
    finally:
        consumer.close()

    pid = broker.pid
    broker.kill()
    assert not broker.running
    assert pid is not None and not Path(f"/proc/{pid}").exists()

    broker.start()
    assert broker.port == port and broker.bootstrap_servers == bootstrap
    assert consumer_lag(bootstrap, group, topic) == {0: 1}
    consumer = Consumer(consumer_config(bootstrap, unique("reader")))
    try:
        consumer.subscribe([topic])
        assert [m.value() for m in consume(consumer, 2)] == [b"first", b"second"]
    finally:
        consumer.close()

    # a fresh object on the same state dir finds the same port and data
    broker.stop()
    again = KafkaBroker(broker.state_dir)
    assert again.port == port
    assert again.cluster_id() == broker.cluster_id()


def test_ensure_topics_creates_grows_and_refuses_to_shrink(kafka: KafkaBroker) -> None:
    bootstrap = kafka.bootstrap_servers
    topic = unique("ensure")
    other = unique("ensure-other")
    wanted = {
        topic: TopicSettings(2, config={"retention.ms": "3600000"}),
        other: TopicSettings(1),
    }

    first = ensure_topics(bootstrap, wanted)
    assert {name: change.action for name, change in first.items()} == {topic: "created", other: "created"}
    assert partition_counts(bootstrap, topic) == 2

    second = ensure_topics(bootstrap, wanted)
    assert {change.action for change in second.values()} == {"unchanged"}

    grown = ensure_topics(bootstrap, {topic: TopicSettings(4, config={"retention.ms": "7200000"})})[topic]
    assert (grown.action, grown.partitions_before, grown.partitions_after) == ("updated", 2, 4)
    assert grown.config_updated == ("retention.ms",)
    assert partition_counts(bootstrap, topic) == 4

    with pytest.raises(PartitionDecreaseError) as raised:
        ensure_topics(bootstrap, {topic: TopicSettings(3), other: TopicSettings(5)})
    assert raised.value.decreases == {topic: (4, 3)}
    assert "refusing to decrease" in str(raised.value)
    # nothing was changed: not even the topic that could have grown
    assert partition_counts(bootstrap, topic) == 4
    assert partition_counts(bootstrap, other) == 1

    admin_client(bootstrap).delete_topics([topic, other])


def test_consumer_lag_counts_per_partition(kafka: KafkaBroker, topic_factory: Callable[..., str]) -> None:
    bootstrap = kafka.bootstrap_servers
    topic = topic_factory(partitions=2)
    produce(bootstrap, topic, [(None, b"x", 0)] * 5 + [(None, b"y", 1)] * 3)  # type: ignore[list-item]
    group = unique("lag")

    assert consumer_lag(bootstrap, group, topic) == {0: 5, 1: 3}  # nothing committed: all of it

    consumer = Consumer(consumer_config(bootstrap, group))
    try:
        consumer.commit(offsets=[TopicPartition(topic, 0, 2), TopicPartition(topic, 1, 3)], asynchronous=False)
    finally:
        consumer.close()
    assert consumer_lag(bootstrap, group, topic) == {0: 3, 1: 0}

    with pytest.raises(TopicNotFoundError):
        consumer_lag(bootstrap, group, unique("missing"))


# -- PostgreSQL ------------------------------------------------------------------------------------------


def test_postgres_answers_on_its_dsn(postgres: PostgresServer) -> None:
    with psycopg.connect(postgres.dsn) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        database, fsync, sync_commit, encoding, init_zero = conn.execute(
            "SELECT current_database(), current_setting('fsync'), current_setting('synchronous_commit'),"
            " pg_encoding_to_char(encoding), current_setting('wal_init_zero')"
            " FROM pg_database WHERE datname = current_database()"
        ).fetchone()  # type: ignore[misc]
    # Durable commits; new WAL segments are not zero-filled first (a commit stall, adnomaly.services.postgres)
    assert (database, fsync, sync_commit, encoding, init_zero) == ("adnomaly", "on", "on", "UTF8", "off")
    assert stat.S_IMODE(postgres.password_file.stat().st_mode) == 0o600
    assert postgres.password not in Path(f"/proc/{postgres.pid}/cmdline").read_text()


def test_postgres_refuses_a_wrong_password(postgres: PostgresServer) -> None:
    wrong = postgres.dsn.replace(f"password={postgres.password}", "password=wrong")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong, connect_timeout=5)


def test_postgres_committed_rows_survive_a_kill(make_postgres: Callable[..., PostgresServer]) -> None:
    server = make_postgres()
    port = server.port
    with psycopg.connect(server.dsn) as conn:
        conn.execute("CREATE TABLE events (id bigint PRIMARY KEY, body text NOT NULL)")
        conn.execute("INSERT INTO events SELECT g, 'row ' || g FROM generate_series(1, 1000) g")
    # committed on leaving the block; a second transaction is left open and must vanish
    pending = psycopg.connect(server.dsn)
    pending.execute("INSERT INTO events VALUES (5000, 'uncommitted')")

    server.kill()
    assert not server.running
    server.start()
    pending.close()

    assert server.port == port
    with psycopg.connect(server.dsn) as conn:
        assert conn.execute("SELECT count(*), max(id) FROM events").fetchone() == (1000, 1000)
    assert "database system was interrupted" in server.log_path.read_text()

    server.restart()
    with psycopg.connect(server.dsn) as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (1000,)


# -- Redis -----------------------------------------------------------------------------------------------


def test_redis_needs_its_password(redis: RedisServer) -> None:
    with redis.client() as client:
        client.set("greeting", "hello")
        assert client.get("greeting") == b"hello"

    with (
        redis_py.Redis(host="127.0.0.1", port=redis.port, retry=NO_RETRY) as anonymous,
        pytest.raises(redis_py.exceptions.AuthenticationError),
    ):
        anonymous.get("greeting")
    with (
        redis_py.Redis(host="127.0.0.1", port=redis.port, password="wrong", retry=NO_RETRY) as intruder,
        pytest.raises(redis_py.exceptions.AuthenticationError),
    ):
        intruder.get("greeting")

    assert stat.S_IMODE(redis.config_path.stat().st_mode) == 0o600
    assert redis.password not in Path(f"/proc/{redis.pid}/cmdline").read_text()


def test_redis_keeps_data_across_restart_and_port(make_redis: Callable[..., RedisServer]) -> None:
    server = make_redis()
    port = server.port
    with server.client() as client:
        client.set("feature:ctr", "0.25")
    server.restart()
    assert server.port == port
    with server.client() as client:
        assert client.get("feature:ctr") == b"0.25"
    assert any((server.data_dir / "appendonlydir").iterdir())


def test_postgres_runs_as_the_postgres_user_when_we_are_root(postgres: PostgresServer) -> None:
    if os.geteuid() != 0:
        pytest.skip("only meaningful when the tests run as root")
    assert postgres.pid is not None
    assert os.stat(f"/proc/{postgres.pid}").st_uid != 0

"""Kafka authentication and least-privilege ACLs on a real Kafka 4.3.1 KRaft broker (SASL_SSL with a private
CA, SCRAM-SHA-512, StandardAuthorizer, allow.everyone.if.no.acl.found=false).

Each component's user gets exactly `adnomaly.kafka_acls.component_acls(config)` (the rules the operator
renders into Strimzi KafkaUsers). The processor's user must be able to read raw, commit its group and write
the DLQ, and nothing else; a wrong password is refused; the real processor (`python -m adnomaly.processor`)
runs end to end with its credentials in the environment only.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from adnomaly.config import ComponentConfig, SecretEnv
from adnomaly.kafka_acls import component_acls
from adnomaly.kafka_client import (
    TopicSettings,
    committed_offsets,
    consumer_config,
    create_acls,
    ensure_topics,
    producer_config,
    upsert_scram_user,
)
from adnomaly.plan import Endpoints, plan
from adnomaly.processor.store import stored_ids
from adnomaly.services.base import generate_password, wait_until
from adnomaly.services.kafka import KafkaBroker
from adnomaly.services.postgres import PostgresServer
from adnomaly.spec import parse_pipeline
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Secured:
    broker: KafkaBroker
    configs: dict[str, ComponentConfig]
    passwords: dict[str, str]  # component -> its user's password
    partitions: dict[str, int]  # topic -> its partition count, as planned

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap_servers

    def env(self, component: str, password: str | None = None) -> dict[str, str]:
        """The component's credentials, as the operator passes them (env vars only)."""
        return {
            SecretEnv.KAFKA_USERNAME: component,
            SecretEnv.KAFKA_PASSWORD: password or self.passwords[component],
            SecretEnv.KAFKA_SASL_MECHANISM: "SCRAM-SHA-512",
            SecretEnv.KAFKA_SECURITY_PROTOCOL: "SASL_SSL",
            SecretEnv.KAFKA_CA_FILE: str(self.broker.ca_file),
        }


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    # SASL_SSL here (the client side of TLS included, for the Python clients and the Flink job alike);
    # test_secrets_in_logs.py runs every component over SASL_PLAINTEXT.
    broker = KafkaBroker(tmp_path_factory.mktemp("kafka-sasl"), sasl=True, tls=True)
    broker.start()
    try:
        suffix = uuid.uuid4().hex[:6]
        pipeline = parse_pipeline({"kind": "Pipeline", "metadata": {"name": f"sec-{suffix}"}, "spec": {
            "events": {"schema": "clickstream"}, "lake": {"enabled": False},
        }})  # fmt: skip
        planned = plan(pipeline, Endpoints(kafka_bootstrap=broker.bootstrap_servers))
        admin = broker.admin_client_settings()
        ensure_topics(broker.bootstrap_servers, {t.name: TopicSettings(t.partitions) for t in planned.topics.values()},
                      client=admin)  # fmt: skip
        configs: dict[str, ComponentConfig] = {}
        passwords: dict[str, str] = {}
        for name in ("generator", "processor"):
            config = planned.components[name].config
            if config.processor is not None:  # a private database schema for this module's run
                config = config.model_copy(update={"processor": config.processor.model_copy(update={
                    "db_schema": f"p_sec_{suffix}", "batch_timeout_s": 0.1})})  # fmt: skip
            configs[name] = config.model_copy(update={"metrics_port": 0})
            passwords[name] = generate_password()
            upsert_scram_user(broker.bootstrap_servers, name, passwords[name], client=admin)
            create_acls(broker.bootstrap_servers, name, component_acls(configs[name]), client=admin)
        partitions = {t.name: t.partitions for t in planned.topics.values()}
        yield Secured(broker, configs, passwords, partitions)
    finally:
        broker.stop()


def _events(count: int, prefix: str) -> list[bytes]:
    base = datetime.now(UTC) - timedelta(minutes=5)
    return [
        msgspec.json.encode({
            "event_id": f"{prefix}-{n}", "timestamp": (base + timedelta(milliseconds=n)).isoformat(),
            "user_id_hash": f"u{n}", "ad_id": "ad-1", "campaign_id": "c-1", "geo": "US", "platform": "web",
            "user_agent": "Mozilla/5.0", "CPC": 0.5, "CTR": 0.02, "conversion": 0, "bounce_rate": 0.4,
        })
        for n in range(count)
    ]  # fmt: skip


def _produce(config: dict[str, Any], topic: str, values: list[bytes], timeout: float = 20.0) -> list[Any]:
    """Produce and flush; the delivery errors (None for each success)."""
    outcomes: list[Any] = []
    producer = Producer({**config, "message.timeout.ms": int(timeout * 1000)})
    for value in values:
        producer.produce(topic, value, on_delivery=lambda err, _msg: outcomes.append(err))
    producer.flush(timeout + 5)
    return outcomes


def _consume_error(config: dict[str, Any], topic: str, timeout: float = 20.0) -> KafkaError | None:
    """The first error a consumer subscribed to `topic` gets (None if it reads a message without error)."""
    consumer = Consumer(config)
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            return message.error()
        raise AssertionError(f"no message and no error from {topic} within {timeout}s")
    finally:
        consumer.close()


def _denied(error: Any) -> bool:
    return error is not None and error.code() in (
        KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.GROUP_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED, KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    )  # fmt: skip


def test_the_processor_user_reads_raw_commits_its_group_and_writes_the_dlq(secured: Secured) -> None:
    topics = secured.configs["processor"].kafka.topics
    group = secured.configs["processor"].processor.group_id  # type: ignore[union-attr]
    generator = producer_config(secured.bootstrap, env=secured.env("generator"))
    assert _produce(generator, topics.raw, _events(5, "acl-read")) == [None] * 5

    processor_env = secured.env("processor")
    consumer = Consumer(consumer_config(secured.bootstrap, group, env=processor_env))
    try:
        # Keyless events go to one sticky partition of the six, so every partition is read.
        consumer.assign([TopicPartition(topics.raw, p, 0) for p in range(secured.partitions[topics.raw])])
        deadline, message = time.monotonic() + 20, None
        while message is None and time.monotonic() < deadline:
            message = consumer.poll(0.5)
        assert message is not None and message.error() is None, message and message.error()
        committed = consumer.commit(message=message, asynchronous=False)  # raises when the group is denied
        assert committed is not None and all(tp.error is None for tp in committed)
    finally:
        consumer.close()
    offsets = committed_offsets(secured.bootstrap, group, [TopicPartition(topics.raw, message.partition())],
                                timeout=10, client=secured.broker.admin_client_settings())  # fmt: skip
    assert offsets[message.partition()] == message.offset() + 1

    processor_producer = producer_config(secured.bootstrap, env=processor_env)
    assert _produce(processor_producer, topics.dlq, [b"dead letter"]) == [None]


def test_the_processor_user_can_do_nothing_else(secured: Secured) -> None:
    topics = secured.configs["processor"].kafka.topics
    processor_env = secured.env("processor")
    producer = producer_config(secured.bootstrap, env=processor_env)
    for topic in (topics.raw, topics.features, topics.anomalies):
        outcomes = _produce(producer, topic, [b"x"], timeout=10)
        assert len(outcomes) == 1 and _denied(outcomes[0]), (topic, outcomes)
    # Seed features/anomalies (as the admin) so that a denied read cannot pass for an empty topic.
    admin_producer = producer_config(secured.bootstrap, **secured.broker.admin_client_settings())
    for topic in (topics.features, topics.anomalies):
        assert _produce(admin_producer, topic, [b"{}"]) == [None]
        own_group = consumer_config(secured.bootstrap, secured.configs["processor"].processor.group_id,  # type: ignore[union-attr]
                                    env=processor_env)  # fmt: skip
        assert _denied(_consume_error(own_group, topic)), topic
    # Another component's group is off limits too, even on raw.
    other_group = consumer_config(secured.bootstrap, "someone-elses-group", env=processor_env)
    assert _denied(_consume_error(other_group, topics.raw))
    # No topic creation (nor any other admin change).
    admin = AdminClient(consumer_config(secured.bootstrap, "unused", env=processor_env))
    future = admin.create_topics([NewTopic(f"sneaky-{uuid.uuid4().hex[:6]}", num_partitions=1)])
    with pytest.raises(KafkaException) as caught:
        next(iter(future.values())).result(timeout=20)
    assert _denied(caught.value.args[0]), caught.value
    # The generator may write raw but not read it.
    generator_consumer = consumer_config(secured.bootstrap, "generator-group", env=secured.env("generator"))
    assert _denied(_consume_error(generator_consumer, topics.raw))


def test_a_wrong_password_is_refused_and_never_echoed(secured: Secured) -> None:
    wrong = "wrong-" + generate_password()
    errors: list[KafkaError] = []
    config = producer_config(secured.bootstrap, env=secured.env("processor", password=wrong),
                             error_cb=errors.append)  # fmt: skip
    outcomes = _produce(config, secured.configs["processor"].kafka.topics.dlq, [b"x"], timeout=8)
    assert outcomes and outcomes[0] is not None  # never delivered
    assert any(e.code() == KafkaError._AUTHENTICATION for e in errors), errors
    assert not any(wrong in str(e) or secured.passwords["processor"] in str(e) for e in errors)
    # No credentials at all: the SASL listener does not talk PLAINTEXT.
    plain = producer_config(secured.bootstrap, env={})
    assert _produce(plain, secured.configs["processor"].kafka.topics.dlq, [b"x"], timeout=5)[0] is not None


def test_the_real_processor_runs_end_to_end_with_its_credentials(
    secured: Secured, postgres: PostgresServer, tmp_path: Path
) -> None:
    config = secured.configs["processor"]
    topics, section = config.kafka.topics, config.processor
    assert section is not None
    valid, invalid = _events(200, f"e2e-{uuid.uuid4().hex[:6]}"), [b"{not json", b'{"event_id": 1}']
    assert _produce(producer_config(secured.bootstrap, env=secured.env("generator")), topics.raw, valid + invalid) \
        == [None] * (len(valid) + len(invalid))
    config_path = tmp_path / "processor.json"
    config_path.write_text(config.to_json())
    log_path = tmp_path / "processor.log"
    env = {**os.environ, **secured.env("processor"), SecretEnv.POSTGRES_DSN: postgres.dsn, "PYTHONUNBUFFERED": "1"}
    with log_path.open("wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "adnomaly.processor", "--config", str(config_path)],
                                   stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=REPO)
    try:
        wanted = {msgspec.json.decode(v)["event_id"] for v in valid}

        def stored() -> set[str]:
            return set(stored_ids(postgres.dsn, section.db_schema)) & wanted

        wait_until(lambda: stored() == wanted or process.poll() is not None, 90, "the processor storing the events")
        assert process.poll() is None, log_path.read_text()[-3000:]
        admin = secured.broker.admin_client_settings()
        dlq_consumer = Consumer(consumer_config(secured.bootstrap, f"check-{uuid.uuid4().hex}", **admin))
        dead: list[Any] = []
        try:
            dlq_consumer.assign([TopicPartition(topics.dlq, 0, 0)])
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and sum(1 for m in dead if b"not json" in m or b'"event_id": 1' in m) < 2:
                message = dlq_consumer.poll(0.5)
                if message is not None and message.error() is None:
                    dead.append(message.value())
        finally:
            dlq_consumer.close()
        assert sum(1 for m in dead if m in invalid) == 2, dead
        ids = stored_ids(postgres.dsn, section.db_schema)
        assert wanted <= set(ids) and len(ids) == len(set(ids))
        log = log_path.read_text(errors="replace")
        assert secured.passwords["processor"] not in log and "AUTHORIZATION_FAILED" not in log.upper()
    finally:
        process.terminate()
        process.wait(timeout=60)




@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_flink_features_job_authenticates_from_its_environment(
    secured: Secured, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The PyFlink job gets only ADNOMALY_KAFKA_* in its environment, sets the SASL options on its Kafka
    tables itself, reads raw and writes features (exactly-once: transactions under its id prefix) with
    exactly `features_job_acls`; the password is in no file it was given or wrote, nor in its logs."""
    from adnomaly.features.record import DECODER
    from adnomaly.features.sql import JobOptions, compile_pipeline
    from adnomaly.kafka_acls import features_job_acls
    from adnomaly.services.flink import FeaturesJob, ensure_flink

    ensure_flink()
    name = f"flk-{uuid.uuid4().hex[:6]}"
    pipeline = parse_pipeline({"metadata": {"name": name}, "spec": {
        "events": {"schema": "clickstream"},
        "features": [{"name": "t1", "dimensions": ["geo"], "window": {"type": "tumbling", "size": "1m"},
                      "allowedLateness": "1s", "metrics": [{"name": "n", "agg": "count"}]}],
        "kafka": {"topics": {"raw": {"partitions": 1, "retention": "1d"},
                             "features": {"partitions": 1, "retention": "1d"}}},
    }})  # fmt: skip
    topics = plan(pipeline, Endpoints(kafka_bootstrap=secured.bootstrap)).topics
    admin = secured.broker.admin_client_settings()
    ensure_topics(secured.bootstrap, {t.name: TopicSettings(t.partitions) for t in topics.values()}, client=admin)
    options = JobOptions(checkpoint_dir=(tmp_path / "checkpoints").as_uri(), checkpoint_interval="2s")
    job = compile_pipeline(pipeline, secured.bootstrap, options)
    user, password = "features-job", "fj+" + generate_password() + "/\"'="  # quotes: JAAS and SQL escaping
    upsert_scram_user(secured.bootstrap, user, password, client=admin)
    create_acls(secured.bootstrap, user, features_job_acls(
        topics["raw"].name, topics["features"].name, job.consumer_groups, job.transactional_id_prefixes,
    ), client=admin)  # fmt: skip

    t0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
    events = [(t0 + timedelta(seconds=s), geo) for s, geo in ((1, "US"), (2, "US"), (3, "DE"), (65, "US"))]
    values = [msgspec.json.encode({
        "event_id": f"f-{n}", "timestamp": at.isoformat(), "user_id_hash": "u", "ad_id": "a", "campaign_id": "c",
        "geo": geo, "platform": "web", "user_agent": "x", "CPC": 0.1, "CTR": 0.1, "conversion": 0,
        "bounce_rate": 0.1,
    }) for n, (at, geo) in enumerate(events)]  # fmt: skip
    assert _produce(producer_config(secured.bootstrap, **admin), topics["raw"].name, values) == [None] * 4

    for key, value in secured.env(user, password).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv(SecretEnv.KAFKA_USERNAME, user)
    features_job = FeaturesJob(job, tmp_path / "flink", heap="512m")
    features_job.start()
    try:
        reader = Consumer(consumer_config(secured.bootstrap, f"check-{uuid.uuid4().hex}", env={}, **admin))
        records: dict[str, Any] = {}
        try:
            reader.assign([TopicPartition(topics["features"].name, 0, 0)])
            deadline = time.monotonic() + 400
            while len(records) < 2 and time.monotonic() < deadline:
                assert features_job.running, (tmp_path / "flink").glob("**/*.out")
                for message in reader.consume(100, timeout=1.0):
                    if message.error() is None:
                        records[message.key().decode()] = DECODER.decode(message.value())
        finally:
            reader.close()
        counts = {r.dimensions["geo"]: r.event_count for r in records.values()}
        assert counts == {"US": 2, "DE": 1}, records
    finally:
        features_job.stop()
    for path in tmp_path.rglob("*"):  # job config, Flink conf, logs, checkpoints
        if path.is_file():
            assert password.encode() not in path.read_bytes(), path
    job_out = "\n".join(p.read_text(errors="replace") for p in (tmp_path / "flink").rglob("job.out"))
    assert "Kafka security on 2 tables" in job_out and "[redacted]" in job_out and "SASL_SSL" in job_out


def test_the_tls_listener_is_reached_with_the_ca_from_the_environment(tmp_path: Path) -> None:
    """SASL_SSL: ADNOMALY_KAFKA_SECURITY_PROTOCOL + ADNOMALY_KAFKA_CA_FILE are all a client needs; without
    the CA (or without TLS) nothing is delivered."""
    from adnomaly.kafka_acls import AclRule

    broker = KafkaBroker(tmp_path / "kafka-tls", sasl=True, tls=True)
    broker.start()
    try:
        admin = broker.admin_client_settings()
        topic = f"tls-{uuid.uuid4().hex[:6]}"
        ensure_topics(broker.bootstrap_servers, {topic: TopicSettings(1)}, client=admin)
        password = "tls+" + generate_password()
        upsert_scram_user(broker.bootstrap_servers, "tls-writer", password, client=admin)
        create_acls(broker.bootstrap_servers, "tls-writer", [AclRule("topic", topic, "Write")], client=admin)
        env = {SecretEnv.KAFKA_USERNAME: "tls-writer", SecretEnv.KAFKA_PASSWORD: password,
               SecretEnv.KAFKA_SECURITY_PROTOCOL: "SASL_SSL", SecretEnv.KAFKA_CA_FILE: str(broker.ca_file)}  # fmt: skip
        assert _produce(producer_config(broker.bootstrap_servers, env=env), topic, [b"over tls"]) == [None]
        without_ca = {k: v for k, v in env.items() if k != SecretEnv.KAFKA_CA_FILE}
        errors: list[KafkaError] = []
        untrusted = producer_config(broker.bootstrap_servers, env=without_ca, error_cb=errors.append)
        assert _produce(untrusted, topic, [b"x"], timeout=6)[0] is not None
        assert any(e.code() in (KafkaError._SSL, KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN) for e in errors)
        plaintext = {k: v for k, v in without_ca.items() if k != SecretEnv.KAFKA_SECURITY_PROTOCOL}
        assert _produce(producer_config(broker.bootstrap_servers, env=plaintext), topic, [b"x"], timeout=6)[0] \
            is not None
        assert not any(password in str(e) for e in errors)
        # A restart keeps the SCRAM users, the ACLs and the TLS material (formatted/generated once).
        broker.restart()
        assert _produce(producer_config(broker.bootstrap_servers, env=env), topic, [b"after restart"]) == [None]
    finally:
        broker.stop()

"""The project's Kafka client conventions (pure functions: no broker needed)."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
from types import ModuleType

import pytest
from adnomaly.config import SecretEnv
from adnomaly.kafka_client import (
    CONSUMER_DEFAULTS,
    PRODUCER_DEFAULTS,
    KafkaSecurityError,
    PartitionDecreaseError,
    TopicChange,
    TopicSettings,
    admin_config,
    consumer_config,
    producer_config,
    security_settings,
)
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient


def test_producer_config_is_durable_and_batched() -> None:
    config = producer_config("127.0.0.1:9092")
    assert config["bootstrap.servers"] == "127.0.0.1:9092"
    assert config["acks"] == "all"
    assert config["enable.idempotence"] is True
    assert config["compression.type"] == "lz4"
    assert 0 < config["linger.ms"] <= 20
    assert 16 * 1024 <= config["batch.size"] <= 1024 * 1024
    assert config["queue.buffering.max.kbytes"] <= 256 * 1024


def test_consumer_config_never_commits_on_its_own() -> None:
    config = consumer_config("127.0.0.1:9092", "processor")
    assert config["group.id"] == "processor"
    assert config["enable.auto.commit"] is False
    assert config["enable.auto.offset.store"] is False
    assert config["auto.offset.reset"] == "earliest"
    assert config["partition.assignment.strategy"] == "cooperative-sticky"


def test_overrides_win_and_underscores_become_dots() -> None:
    config = producer_config("b:1", linger_ms=50, client_id="gen-1", **{"batch.size": 1024})
    assert (config["linger.ms"], config["client.id"], config["batch.size"]) == (50, "gen-1", 1024)
    assert "linger_ms" not in config
    consumer = consumer_config("b:1", "g", auto_offset_reset="latest")
    assert consumer["auto.offset.reset"] == "latest"


def test_python_callback_keys_keep_their_underscores() -> None:
    def on_error(_err: object) -> None: ...

    config = consumer_config("b:1", "g", error_cb=on_error, on_commit=on_error)
    assert config["error_cb"] is on_error and config["on_commit"] is on_error
    assert "error.cb" not in config


def test_configs_are_fresh_dicts_and_defaults_are_read_only() -> None:
    first = producer_config("b:1")
    first["acks"] = "1"
    assert producer_config("b:1")["acks"] == "all"
    with pytest.raises(TypeError):
        PRODUCER_DEFAULTS["acks"] = "0"  # type: ignore[index]
    with pytest.raises(TypeError):
        CONSUMER_DEFAULTS["enable.auto.commit"] = True  # type: ignore[index]


def test_consumer_config_needs_a_group() -> None:
    with pytest.raises(ValueError, match="group_id"):
        consumer_config("b:1", "")


def test_librdkafka_accepts_the_configs() -> None:
    # Creating clients validates every property name and value; no broker is contacted before use.
    Producer(producer_config("127.0.0.1:1")).flush(0)
    Consumer(consumer_config("127.0.0.1:1", "unit")).close()


def test_topic_settings_validate_and_freeze() -> None:
    settings = TopicSettings(3, config={"retention.ms": "86400000"})
    assert (settings.partitions, settings.replication_factor) == (3, 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.partitions = 4  # type: ignore[misc]
    with pytest.raises(TypeError):
        settings.config["retention.ms"] = "1"  # type: ignore[index]
    source = {"cleanup.policy": "compact"}
    copied = TopicSettings(1, config=source)
    source["cleanup.policy"] = "delete"
    assert copied.config["cleanup.policy"] == "compact"


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"partitions": 0}, ValueError),
        ({"partitions": 1, "replication_factor": 0}, ValueError),
        ({"partitions": 1, "config": {"retention.ms": 1000}}, TypeError),
    ],
)
def test_topic_settings_reject_nonsense(kwargs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        TopicSettings(**kwargs)  # type: ignore[arg-type]


def test_topic_settings_compare_by_value() -> None:
    assert TopicSettings(2, config={"a": "1"}) == TopicSettings(2, config={"a": "1"})
    assert TopicSettings(2) != TopicSettings(3)


def test_partition_decrease_error_names_every_topic() -> None:
    error = PartitionDecreaseError({"raw": (12, 6), "dlq": (2, 1)})
    assert error.decreases == {"raw": (12, 6), "dlq": (2, 1)}
    assert "raw: has 12, asked for 6" in str(error)
    assert "dlq: has 2, asked for 1" in str(error)


def test_topic_change_is_a_plain_value() -> None:
    change = TopicChange("raw", "updated", 6, 12, ("retention.ms",))
    assert change == TopicChange("raw", "updated", 6, 12, ("retention.ms",))


# -- authentication from the environment ----------------------------------------------------------------

PASSWORD = "s3cr3t-Pa55word-b8f1"  # a test value that must never show up in reprs or errors
SASL_ENV = {SecretEnv.KAFKA_USERNAME: "processor-user", SecretEnv.KAFKA_PASSWORD: PASSWORD}


def test_no_credentials_means_plaintext_and_no_sasl() -> None:
    assert security_settings({}) == {"security.protocol": "PLAINTEXT"}
    assert security_settings({}, configured="SSL") == {"security.protocol": "SSL"}
    config = producer_config("b:1", env={})
    assert config["security.protocol"] == "PLAINTEXT"
    assert not any(key.startswith("sasl.") for key in config)


def test_a_username_turns_on_scram_sha_512_over_sasl_plaintext() -> None:
    assert security_settings(SASL_ENV) == {
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "processor-user",
        "sasl.password": PASSWORD,
    }


def test_credentials_upgrade_the_configured_protocol_to_its_sasl_form() -> None:
    assert security_settings(SASL_ENV, configured="SSL")["security.protocol"] == "SASL_SSL"
    assert security_settings(SASL_ENV, configured="SASL_SSL")["security.protocol"] == "SASL_SSL"
    assert security_settings(SASL_ENV, configured="plaintext")["security.protocol"] == "SASL_PLAINTEXT"


def test_explicit_protocol_mechanism_and_ca_file_win() -> None:
    env = {
        **SASL_ENV,
        SecretEnv.KAFKA_SECURITY_PROTOCOL: "SASL_SSL",
        SecretEnv.KAFKA_SASL_MECHANISM: "scram-sha-256",
        SecretEnv.KAFKA_CA_FILE: "/etc/kafka-ca/ca.crt",
    }
    assert security_settings(env, configured="PLAINTEXT") == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-256",
        "sasl.username": "processor-user",
        "sasl.password": PASSWORD,
        "ssl.ca.location": "/etc/kafka-ca/ca.crt",
    }
    tls_only = {SecretEnv.KAFKA_SECURITY_PROTOCOL: "SSL", SecretEnv.KAFKA_CA_FILE: "/ca.pem"}
    assert security_settings(tls_only) == {"security.protocol": "SSL", "ssl.ca.location": "/ca.pem"}


@pytest.mark.parametrize(
    ("env", "configured", "message"),
    [
        ({SecretEnv.KAFKA_PASSWORD: PASSWORD}, "PLAINTEXT", "ADNOMALY_KAFKA_USERNAME is not"),
        ({SecretEnv.KAFKA_USERNAME: "u"}, "PLAINTEXT", "ADNOMALY_KAFKA_PASSWORD is not"),
        ({}, "SASL_SSL", "needs ADNOMALY_KAFKA_USERNAME"),
        ({SecretEnv.KAFKA_SECURITY_PROTOCOL: "SASL_PLAINTEXT"}, "PLAINTEXT", "needs ADNOMALY_KAFKA_USERNAME"),
        ({**SASL_ENV, SecretEnv.KAFKA_SECURITY_PROTOCOL: "PLAINTEXT"}, "PLAINTEXT", "sends no credentials"),
        ({**SASL_ENV, SecretEnv.KAFKA_SECURITY_PROTOCOL: "TLS"}, "PLAINTEXT", "must be one of"),
        ({**SASL_ENV, SecretEnv.KAFKA_SASL_MECHANISM: "GSSAPI"}, "PLAINTEXT", "must be one of"),
        ({SecretEnv.KAFKA_SASL_MECHANISM: "PLAIN"}, "PLAINTEXT", "is not SASL"),
        ({**SASL_ENV, SecretEnv.KAFKA_CA_FILE: "/ca.pem"}, "PLAINTEXT", "does not use TLS"),
    ],
)
def test_contradictions_are_clear_errors_without_the_password(
    env: dict[str, str], configured: str, message: str
) -> None:
    with pytest.raises(KafkaSecurityError, match=message) as caught:
        security_settings(env, configured)
    assert PASSWORD not in str(caught.value) and PASSWORD not in repr(caught.value)


def test_blank_values_count_as_unset() -> None:
    assert security_settings({SecretEnv.KAFKA_USERNAME: " ", SecretEnv.KAFKA_PASSWORD: ""}) == {
        "security.protocol": "PLAINTEXT"
    }


def test_every_client_config_applies_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SecretEnv.KAFKA_USERNAME, "processor-user")
    monkeypatch.setenv(SecretEnv.KAFKA_PASSWORD, PASSWORD)
    # Components pass their configured protocol as an override; the credentials build on it.
    for config in (
        producer_config("b:1", security_protocol="PLAINTEXT", client_id="p"),
        consumer_config("b:1", "g", **{"security.protocol": "PLAINTEXT"}),
        admin_config("b:1"),
    ):
        assert config["security.protocol"] == "SASL_PLAINTEXT"
        assert (config["sasl.mechanism"], config["sasl.username"]) == ("SCRAM-SHA-512", "processor-user")
        assert config["sasl.password"] == PASSWORD


def test_explicit_sasl_overrides_bypass_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SecretEnv.KAFKA_USERNAME, "from-env")
    monkeypatch.setenv(SecretEnv.KAFKA_PASSWORD, "env-password")
    config = admin_config("b:1", **{"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-512",
                                     "sasl.username": "admin", "sasl.password": PASSWORD})  # fmt: skip
    assert (config["sasl.username"], config["sasl.password"]) == ("admin", PASSWORD)


def test_config_reprs_and_strs_hide_the_password() -> None:
    for config in (producer_config("b:1", env=SASL_ENV), consumer_config("b:1", "g", env=SASL_ENV)):
        assert PASSWORD not in repr(config) and PASSWORD not in str(config) and PASSWORD not in f"{config}"
        assert "[redacted]" in repr(config) and "processor-user" in repr(config)
        assert config["sasl.password"] == PASSWORD  # the value itself is intact for librdkafka
        assert PASSWORD not in repr([config]) and PASSWORD not in repr({"config": config})


def test_librdkafka_accepts_the_sasl_configs_and_its_errors_hold_no_password() -> None:
    Producer(producer_config("127.0.0.1:1", env=SASL_ENV))
    Consumer(consumer_config("127.0.0.1:1", "g", env=SASL_ENV))
    AdminClient(admin_config("127.0.0.1:1", env=SASL_ENV))
    with pytest.raises(KafkaException) as caught:  # a bad property next to the password
        Producer(producer_config("127.0.0.1:1", env=SASL_ENV, **{"linger.ms": "soon"}))
    assert PASSWORD not in str(caught.value) and PASSWORD not in repr(caught.value)
    missing_ca = {**SASL_ENV, SecretEnv.KAFKA_SECURITY_PROTOCOL: "SASL_SSL", SecretEnv.KAFKA_CA_FILE: "/nonexistent"}
    with pytest.raises(KafkaException) as caught:
        Producer(producer_config("127.0.0.1:1", env=missing_ca))
    assert PASSWORD not in str(caught.value)


# -- the Flink job: same env, same decisions, Java client options -----------------------------------------

def _flink_job_script() -> ModuleType:
    from adnomaly.services.flink import JOB_SCRIPT

    spec = importlib.util.spec_from_file_location("adnomaly_flink_job", JOB_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # imports pyflink only when it runs a job
    return module


FLINK = _flink_job_script()
ENV_CASES = [
    ({}, "PLAINTEXT"),
    ({}, "SSL"),
    (SASL_ENV, "PLAINTEXT"),
    (SASL_ENV, "SSL"),
    ({**SASL_ENV, SecretEnv.KAFKA_SASL_MECHANISM: "SCRAM-SHA-256"}, "PLAINTEXT"),
    ({**SASL_ENV, SecretEnv.KAFKA_SASL_MECHANISM: "PLAIN", SecretEnv.KAFKA_SECURITY_PROTOCOL: "SASL_SSL",
      SecretEnv.KAFKA_CA_FILE: "/ca.pem"}, "PLAINTEXT"),
    ({SecretEnv.KAFKA_SECURITY_PROTOCOL: "SSL", SecretEnv.KAFKA_CA_FILE: "/ca.pem"}, "PLAINTEXT"),
    ({SecretEnv.KAFKA_PASSWORD: PASSWORD}, "PLAINTEXT"),
    ({SecretEnv.KAFKA_USERNAME: "u"}, "PLAINTEXT"),
    ({}, "SASL_SSL"),
    ({**SASL_ENV, SecretEnv.KAFKA_SECURITY_PROTOCOL: "PLAINTEXT"}, "PLAINTEXT"),
    ({**SASL_ENV, SecretEnv.KAFKA_SASL_MECHANISM: "GSSAPI"}, "PLAINTEXT"),
    ({**SASL_ENV, SecretEnv.KAFKA_CA_FILE: "/ca.pem"}, "PLAINTEXT"),
    ({SecretEnv.KAFKA_SASL_MECHANISM: "PLAIN"}, "PLAINTEXT"),
]  # fmt: skip


@pytest.mark.parametrize(("env", "configured"), ENV_CASES)
def test_flink_job_decides_like_the_python_clients(env: dict[str, str], configured: str) -> None:
    try:
        expected = security_settings(env, configured)
    except KafkaSecurityError:
        with pytest.raises(SystemExit) as caught:
            FLINK.kafka_security_options(env, configured)
        assert PASSWORD not in str(caught.value)
        return
    options = FLINK.kafka_security_options(env, configured)
    assert options["properties.security.protocol"] == expected["security.protocol"]
    assert options.get("properties.sasl.mechanism") == expected.get("sasl.mechanism")
    assert options.get("properties.ssl.truststore.location") == expected.get("ssl.ca.location")
    assert ("properties.sasl.jaas.config" in options) == ("sasl.username" in expected)


def test_flink_jaas_config_names_the_shaded_scram_module_and_escapes_the_password() -> None:
    tricky = 'pa"ss\\word\'x'
    env = {SecretEnv.KAFKA_USERNAME: "features", SecretEnv.KAFKA_PASSWORD: tricky}
    jaas = FLINK.kafka_security_options(env)["properties.sasl.jaas.config"]
    assert jaas == (
        "org.apache.flink.kafka.shaded.org.apache.kafka.common.security.scram.ScramLoginModule required "
        'username="features" password="pa\\"ss\\\\word\'x";'
    )
    sql = FLINK.alter_table_sql("raw`t", {"properties.sasl.jaas.config": jaas})
    assert sql.startswith("ALTER TABLE `raw``t` SET ('properties.sasl.jaas.config' = '")
    assert "word''x" in sql  # the SQL literal doubles the quote
    assert PASSWORD not in FLINK.redact(f"failed: {sql}", [PASSWORD])
    assert "pa\\\"ss" not in FLINK.redact(sql, [tricky]) and "[redacted]" in FLINK.redact(sql, [tricky])


class _RecordingTableEnv:
    def __init__(self, fail: bool = False) -> None:
        self.statements: list[str] = []
        self.fail = fail

    def execute_sql(self, statement: str) -> None:
        self.statements.append(statement)
        if self.fail:
            raise RuntimeError(f"org.apache.flink.table.api.SqlParserException: cannot parse {statement}")


def test_flink_job_sets_security_on_every_kafka_table_without_printing_the_password(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from adnomaly.features.sql import JobOptions, compile_pipeline
    from adnomaly.spec import parse_pipeline

    pipeline = parse_pipeline({"metadata": {"name": "shop"}, "spec": {"features": [
        {"name": "f", "dimensions": ["geo"], "metrics": [{"name": "n", "agg": "count"}]},
    ]}})  # fmt: skip
    job_json = compile_pipeline(pipeline, "k:9092", JobOptions(checkpoint_dir="file:///c")).to_json()
    job = json.loads(job_json)
    kafka_tables = {
        re.match(r"CREATE TABLE `([^`]+)`", s).group(1)  # type: ignore[union-attr]
        for s in job["statements"] if "'connector' = 'kafka'" in s
    }  # fmt: skip
    assert set(job["kafka_tables"]) == kafka_tables and len(kafka_tables) == 2
    t_env = _RecordingTableEnv()
    FLINK.apply_kafka_security(t_env, job, SASL_ENV)
    assert [s.split("`")[1] for s in t_env.statements] == job["kafka_tables"]
    assert all(PASSWORD in s and "SASL_PLAINTEXT" in s for s in t_env.statements)
    printed = capsys.readouterr()
    assert PASSWORD not in printed.out + printed.err and "SASL_PLAINTEXT" in printed.out
    with pytest.raises(SystemExit) as caught:
        FLINK.apply_kafka_security(_RecordingTableEnv(fail=True), job, SASL_ENV)
    assert PASSWORD not in str(caught.value) and "[redacted]" in str(caught.value)
    untouched = _RecordingTableEnv()
    FLINK.apply_kafka_security(untouched, job, {})
    assert untouched.statements == []


def test_librdkafka_config_dumps_redact_the_password() -> None:
    """Even `debug=conf` (librdkafka prints every property) shows the password as [redacted]."""
    import logging

    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logger = logging.getLogger(f"test-rdkafka-{id(lines)}")
    logger.setLevel(logging.DEBUG)
    logger.addHandler(Collect())
    producer = Producer(producer_config("127.0.0.1:1", env=SASL_ENV, debug="conf,security", logger=logger))
    for _ in range(20):  # log lines are delivered by poll()
        producer.poll(0.1)
        if any("sasl.password" in line for line in lines):
            break
    text = "\n".join(lines)
    assert "sasl.password = [redacted]" in text and "sasl.mechanisms = SCRAM-SHA-512" in text
    assert PASSWORD not in text


def test_components_build_their_kafka_clients_through_the_secured_configs() -> None:
    """A component that built a Consumer/Producer/AdminClient from a dict literal would skip the
    environment's credentials: every client config must come from producer_config/consumer_config/
    admin_config (or a variable holding one). Dev tools (bench/, local/) and services/ are not components."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "components" / "adnomaly"
    packages = ("generator", "ingest", "processor", "sinks", "detector", "serving", "features", "detection")
    offenders = []
    for package in packages:
        for path in (root / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if (
                    isinstance(node, ast.Call)
                    and getattr(node.func, "id", getattr(node.func, "attr", None)) in {"Consumer", "Producer",
                                                                                       "AdminClient"}
                    and node.args and isinstance(node.args[0], ast.Dict)
                ):  # fmt: skip
                    offenders.append(f"{path.relative_to(root)}:{node.lineno}")
    assert not offenders, offenders

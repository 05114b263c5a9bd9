"""The project's Kafka client conventions (pure functions: no broker needed)."""

from __future__ import annotations

import dataclasses

import pytest
from adnomaly.kafka_client import (
    CONSUMER_DEFAULTS,
    PRODUCER_DEFAULTS,
    PartitionDecreaseError,
    TopicChange,
    TopicSettings,
    consumer_config,
    producer_config,
)
from confluent_kafka import Consumer, Producer


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

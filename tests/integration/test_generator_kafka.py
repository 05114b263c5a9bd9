"""The generator process (`python -m adnomaly.generator`) against a real Kafka broker: the set rate, counts
that match the topic, SIGTERM handling, metrics, labels, and clear errors before anything is produced."""

from __future__ import annotations

import json
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from adnomaly.config import ComponentConfig, TopicNames
from adnomaly.events import InvalidEvent, codec_for
from adnomaly.generator.stats import read_labels
from adnomaly.kafka_client import consumer_config
from adnomaly.plan import Endpoints, plan
from adnomaly.services.base import ManagedProcess, free_port, tail, wait_until
from adnomaly.services.kafka import KafkaBroker
from adnomaly.spec import parse_pipeline
from confluent_kafka import Consumer, TopicPartition


def generator_config(
    bootstrap: str, raw: str, *, schema: str = "clickstream", rate: float, invalid_rate: float = 0.0,
    scenarios: tuple[str, ...] = (), metrics_port: int | None = None,
) -> ComponentConfig:  # fmt: skip
    pipeline = parse_pipeline({
        "apiVersion": "adnomaly.io/v1alpha1", "kind": "Pipeline", "metadata": {"name": "gen-it"},
        "spec": {
            "events": {"schema": schema},
            "source": {"generator": {"eventsPerSecond": rate, "seed": 17, "invalidRate": invalid_rate,
                                     "scenarios": list(scenarios)}},
        },
    })  # fmt: skip
    config = plan(pipeline, Endpoints(kafka_bootstrap=bootstrap)).components["generator"].config
    topics = TopicNames(raw=raw, dlq=f"{raw}-dlq", features=f"{raw}-features", anomalies=f"{raw}-anomalies")
    kafka = config.kafka.model_copy(update={"topics": topics})
    return config.model_copy(update={"kafka": kafka, "metrics_port": metrics_port})


class GeneratorProcess:
    def __init__(self, config: ComponentConfig, state_dir: Path, *extra: str) -> None:
        self.config = config
        self.stats_path = state_dir / "stats.json"
        self.labels_path = state_dir / "labels.jsonl"
        config_path = state_dir / "generator.json"
        config_path.write_text(config.to_json())
        argv = [
            sys.executable, "-m", "adnomaly.generator", "--config", str(config_path),
            "--stats-file", str(self.stats_path), "--labels", str(self.labels_path), *extra,
        ]  # fmt: skip
        self.process = ManagedProcess(name="generator", argv=argv, log_path=state_dir / "generator.log")

    def start(self) -> GeneratorProcess:
        self.process.start()
        return self

    def wait(self, timeout: float) -> int:
        popen = self.process.process
        assert popen is not None
        return popen.wait(timeout=timeout)

    def terminate(self, timeout: float = 60.0) -> int:
        popen = self.process.process
        assert popen is not None
        popen.send_signal(signal.SIGTERM)
        return popen.wait(timeout=timeout)

    def stats(self) -> dict[str, Any]:
        return json.loads(self.stats_path.read_text()) if self.stats_path.exists() else {}

    @property
    def log(self) -> str:
        return tail(self.process.log_path, 60)

    def stop(self) -> None:
        self.process.stop(timeout=10)


def topic_messages(bootstrap: str, topic: str) -> list[Any]:
    """Every message of the topic, read up to the high watermarks (the messages the broker holds)."""
    consumer = Consumer(consumer_config(bootstrap, f"check-{uuid.uuid4().hex}"))
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        messages: list[Any] = []
        done = Counter[int]()
        deadline = time.monotonic() + 60
        while any(done[p] < end for p, end in ends.items()) and time.monotonic() < deadline:
            for message in consumer.consume(1000, timeout=0.5):
                assert message.error() is None, message.error()
                messages.append(message)
                done[message.partition()] = message.offset() + 1
        return messages
    finally:
        consumer.close()


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def processes() -> Any:
    started: list[GeneratorProcess] = []
    yield started
    for process in started:
        process.stop()


def test_produces_at_the_set_rate_and_the_topic_holds_exactly_what_was_produced(
    kafka: KafkaBroker, topic_factory: Callable[..., str], run_dir: Path, processes: list[GeneratorProcess]
) -> None:
    topic = topic_factory(partitions=3)
    rate, total = 2000.0, 8000
    config = generator_config(kafka.bootstrap_servers, topic, rate=rate, invalid_rate=0.05)
    gen = GeneratorProcess(config, run_dir, "--max-events", str(total)).start()
    processes.append(gen)
    assert gen.wait(timeout=90) == 0, gen.log
    stats = gen.stats()
    assert stats["produced"] == total and stats["failed"] == 0 and stats["running"] is False
    assert stats["produced_valid"] + stats["produced_invalid"] == total
    assert abs(stats["produced_invalid"] / total - 0.05) < 0.015
    assert abs(stats["rate"] - rate) <= 0.1 * rate, stats

    messages = topic_messages(kafka.bootstrap_servers, topic)
    assert len(messages) == total
    created_ms = sorted(m.timestamp()[1] for m in messages)  # producer CreateTime: when each was sent
    sent_rate = (total - 1) / ((created_ms[-1] - created_ms[0]) / 1000)
    assert abs(sent_rate - rate) <= 0.1 * rate, sent_rate
    assert {m.partition() for m in messages} == {0, 1, 2}  # keys spread the events
    codec = codec_for(schema="clickstream")
    valid = invalid = 0
    ids: set[str] = set()
    for m in messages:
        try:
            ids.add(codec.decode(m.value() or b"").event_id)
            valid += 1
        except InvalidEvent:
            invalid += 1
    assert (valid, invalid) == (stats["produced_valid"], stats["produced_invalid"])
    assert len(ids) == valid  # no duplicates


def test_sigterm_stops_flushes_and_leaves_stats_that_match_the_topic(
    kafka: KafkaBroker, topic_factory: Callable[..., str], run_dir: Path, processes: list[GeneratorProcess]
) -> None:
    topic = topic_factory(partitions=2)
    config = generator_config(kafka.bootstrap_servers, topic, schema="probe", rate=800.0, invalid_rate=0.1)
    gen = GeneratorProcess(config, run_dir).start()
    processes.append(gen)
    wait_until(lambda: gen.stats().get("produced", 0) >= 1000, timeout=60, what=f"events produced\n{gen.log}")
    running = gen.stats()
    assert running["running"] is True
    assert gen.terminate() == 0, gen.log
    stats = gen.stats()
    assert stats["running"] is False and stats["failed"] == 0
    assert stats["produced"] >= running["produced"]
    assert stats["produced"] == stats["generated"]  # everything generated was flushed and acknowledged
    assert len(topic_messages(kafka.bootstrap_servers, topic)) == stats["produced"]
    assert abs(stats["rate"] - 800.0) <= 80.0, stats


def test_metrics_and_scenario_labels(
    kafka: KafkaBroker, topic_factory: Callable[..., str], run_dir: Path, processes: list[GeneratorProcess]
) -> None:
    topic = topic_factory(partitions=1)
    port = free_port()
    config = generator_config(
        kafka.bootstrap_servers, topic, rate=400.0, scenarios=("clickFraudBurst", "malformedStorm"),
        metrics_port=port,
    )  # fmt: skip
    gen = GeneratorProcess(
        config, run_dir, "--max-events", "2000",
        "--scenario-first", "0.5", "--scenario-every", "1", "--scenario-duration", "0.5",
    ).start()  # fmt: skip
    processes.append(gen)
    scraped: dict[str, float] = {}

    def metrics_seen() -> bool:
        try:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1).text
        except httpx.HTTPError:
            return False
        for line in text.splitlines():
            if line.startswith("adnomaly_generator_events_total{"):
                name, value = line.rsplit(" ", 1)
                scraped[name] = float(value)
        return scraped.get('adnomaly_generator_events_total{kind="valid"}', 0) > 0

    wait_until(metrics_seen, timeout=30, what=f"generator metrics\n{gen.log}")
    assert gen.wait(timeout=60) == 0, gen.log
    labels = read_labels(gen.labels_path)
    assert len(labels) >= 3
    assert [lb.scenario for lb in labels[:2]] == ["clickFraudBurst", "malformedStorm"]
    assert all(lb.schema == "clickstream" and lb.end > lb.start for lb in labels)
    assert set(labels[0].key) == {"geo", "platform"}
    assert gen.stats()["labels"] == len(labels)
    assert gen.stats()["produced_invalid"] > 0  # the storms


@pytest.mark.parametrize(
    ("schema", "scenarios", "topic_exists", "message"),
    [
        ("clickstream", (), False, "does not exist"),
        ("signal", ("clickFraudBurst",), True, "scenario clickFraudBurst does not apply to schema signal"),
    ],
)
def test_bad_setups_fail_clearly_before_producing(
    kafka: KafkaBroker, topic_factory: Callable[..., str], run_dir: Path, processes: list[GeneratorProcess],
    schema: str, scenarios: tuple[str, ...], topic_exists: bool, message: str,
) -> None:  # fmt: skip
    topic = topic_factory(partitions=1) if topic_exists else f"missing-{uuid.uuid4().hex[:8]}"
    config = generator_config(kafka.bootstrap_servers, topic, schema=schema, rate=10.0)
    if scenarios:  # the Pipeline spec refuses these; a hand-written config must be refused by the generator too
        assert config.generator is not None
        config = config.model_copy(update={"generator": config.generator.model_copy(update={"scenarios": scenarios})})
    gen = GeneratorProcess(config, run_dir).start()
    processes.append(gen)
    assert gen.wait(timeout=60) != 0
    assert message in gen.log
    if topic_exists:
        assert topic_messages(kafka.bootstrap_servers, topic) == []


@pytest.mark.slow
def test_flat_out_rate_to_the_broker(
    kafka: KafkaBroker, topic_factory: Callable[..., str], run_dir: Path, processes: list[GeneratorProcess],
    record_property: Callable[[str, object], None],
) -> None:  # fmt: skip
    """Asks for far more than the machine can do and records what it reaches (see the stats' `rate`)."""
    topic = topic_factory(partitions=6)
    total = 150_000
    config = generator_config(kafka.bootstrap_servers, topic, rate=1_000_000.0)
    gen = GeneratorProcess(config, run_dir, "--max-events", str(total)).start()
    processes.append(gen)
    assert gen.wait(timeout=180) == 0, gen.log
    stats = gen.stats()
    record_property("generator_produced_per_s", stats["rate"])
    print(f"\ngenerator flat out to the broker: {stats['rate']:,.0f} events/s ({total} clickstream events)")
    assert stats["produced"] == total == len(topic_messages(kafka.bootstrap_servers, topic))
    assert stats["rate"] > 10_000  # a floor far below what an idle 2-core box does (50k+/s): catches regressions

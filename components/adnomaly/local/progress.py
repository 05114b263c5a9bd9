"""Numbers of a running local pipeline, read from where they are true: the generator's delivery
stats, the ingest API's metrics, PostgreSQL rows, the dead-letter topic's offsets, the consumer lag."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
from confluent_kafka import Consumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from adnomaly.kafka_client import consumer_config, consumer_lag


@dataclass(frozen=True)
class Progress:
    produced: int = 0
    ingested: int = 0
    stored: int = 0
    dlq: int = 0
    lag: int = 0
    lake_files: int = 0  # Parquet files the lake sink wrote this run
    features: int = 0  # feature windows on the features topic (all runs)
    at: float = 0.0

    def summary(self) -> dict[str, int]:
        """The accounting of this run: `stored + dlq == produced + ingested` once drained."""
        data = asdict(self)
        for key in ("at", "lake_files", "features"):
            data.pop(key)
        return data


def topic_end_offsets(bootstrap: str, topic: str, timeout: float = 10.0) -> int:
    """Sum of the high watermarks of every partition of `topic` (messages ever written to it)."""
    consumer = Consumer(consumer_config(bootstrap, "adnomaly-progress"))  # never commits: reads watermarks only
    try:
        metadata = consumer.list_topics(topic, timeout=timeout)
        partitions = metadata.topics[topic].partitions
        total = 0
        for partition in partitions:
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)
            total += max(high, 0)
        return total
    finally:
        consumer.close()


def read_json_counter(path: Path, key: str) -> int:
    with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
        return int(json.loads(path.read_text()).get(key, 0))
    return 0


def scrape_counter(url: str, name: str, labels: dict[str, str]) -> int | None:
    """Value of one Prometheus counter sample at `url` (0 when absent, None when the endpoint is down)."""
    try:
        text = httpx.get(url, timeout=2.0).text
    except httpx.HTTPError:
        return None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return int(sample.value)
    return 0


@dataclass
class ProgressProbe:
    bootstrap: str
    raw_topic: str
    dlq_topic: str
    group_id: str
    count_stored: Callable[[], int]
    generator_stats: Path | None
    ingest_metrics_url: str | None
    lake_metrics_url: str | None = None
    features_topic: str | None = None
    baseline: Progress | None = None
    _ingested: int = 0
    _lake_files: int = 0

    def _absolute(self) -> Progress:
        produced = read_json_counter(self.generator_stats, "produced") if self.generator_stats else 0
        if self.ingest_metrics_url:  # every line received: accepted ones go to raw, rejected ones to the DLQ
            counts = [
                scrape_counter(self.ingest_metrics_url, "adnomaly_ingest_events_total", {"result": result})
                for result in ("accepted", "rejected")
            ]
            if None not in counts:  # once the API has stopped, its last answer stands
                self._ingested = sum(c or 0 for c in counts)
        if self.lake_metrics_url:
            files = scrape_counter(self.lake_metrics_url, "adnomaly_lake_files_total", {})
            if files is not None:
                self._lake_files = files
        lag = sum(consumer_lag(self.bootstrap, self.group_id, self.raw_topic).values())
        return Progress(
            produced=produced,
            ingested=self._ingested,
            stored=self.count_stored(),
            dlq=topic_end_offsets(self.bootstrap, self.dlq_topic),
            lag=lag,
            lake_files=self._lake_files,
            features=topic_end_offsets(self.bootstrap, self.features_topic) if self.features_topic else 0,
            at=time.monotonic(),
        )

    def start(self) -> None:
        """Remember the stores' counts before this run: the state directory outlives runs."""
        self.baseline = self._absolute()

    def read(self) -> Progress:
        now = self._absolute()
        base = self.baseline or Progress()
        return Progress(
            produced=now.produced,
            ingested=now.ingested,
            stored=now.stored - base.stored,
            dlq=now.dlq - base.dlq,
            lag=now.lag,
            lake_files=now.lake_files,
            features=now.features,
            at=now.at,
        )

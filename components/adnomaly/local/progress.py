"""Numbers of a running local pipeline, read from where they are true: the generator's delivery
stats, the ingest API's metrics, PostgreSQL rows, the distinct letters of the dead-letter topic (see
`adnomaly.local.dead_letter_count`), the consumer lag, the anomalies table.

Consistency. Every event stored or dead-lettered was produced or ingested first, so each sample reads the
sinks (rows, dead letters) before the sources (generator, ingest API): whatever a sink counted, its source
had counted by the time it is read. One gap remains: the generator reports its acknowledged events in a
stats file it refreshes a few times a second, and a consumer may see an event an instant before its
producer hears the acknowledgement. `settled` closes that gap for display by crediting the source with
what the sinks prove it produced; the run's summary is never adjusted (once drained, the numbers must
balance on their own).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import Consumer
from prometheus_client.parser import text_string_to_metric_families

from adnomaly.anomalies.models import AnomalyOut
from adnomaly.kafka_client import consumer_config, consumer_lag
from adnomaly.local.anomalies import AnomalyCounts
from adnomaly.local.dead_letter_count import DistinctDeadLetters, watermarks


@dataclass(frozen=True)
class Progress:
    produced: int = 0
    ingested: int = 0
    stored: int = 0
    dlq: int = 0
    duplicates: int = 0  # re-sent events (an id already stored): accepted again, stored once
    lag: int = 0
    lake_files: int = 0  # Parquet files the lake sink wrote this run
    features: int = 0  # feature windows on the features topic (all runs)
    opened: int = 0  # anomalies opened this run
    resolved: int = 0  # anomalies resolved this run
    recent: tuple[AnomalyOut, ...] = ()  # the newest anomalies (any run), newest first
    at: float = 0.0

    def summary(self) -> dict[str, Any]:
        """The accounting of this run: `stored + dlq == produced + ingested - duplicates` once drained, and its
        anomalies."""
        return {
            "produced": self.produced, "ingested": self.ingested, "duplicates": self.duplicates,
            "stored": self.stored, "dlq": self.dlq, "lag": self.lag,
            "anomalies": {"opened": self.opened, "resolved": self.resolved},
        }  # fmt: skip


def settled(progress: Progress, source: str = "produced") -> Progress:
    """The sample with `source` ("produced" or "ingested") credited with what the sinks counted beyond the
    sources' own reports (see the module docstring): never `stored + dlq + duplicates > produced + ingested`."""
    ahead = progress.stored + progress.dlq + progress.duplicates - progress.produced - progress.ingested
    if ahead <= 0:
        return progress
    return replace(progress, **{source: getattr(progress, source) + ahead})


def rate(samples: Sequence[tuple[float, int]]) -> float:
    """Per second between the oldest and newest (time, count) samples (0 with fewer than two). Sources
    report in steps (the generator about four times a second), so the view rates over several seconds."""
    if len(samples) < 2:
        return 0.0
    (t0, c0), (t1, c1) = samples[0], samples[-1]
    return (c1 - c0) / (t1 - t0) if t1 > t0 else 0.0


def topic_end_offsets(bootstrap: str, topic: str, timeout: float = 10.0) -> int:
    """Sum of the high watermarks of every partition of `topic` (messages ever written to it)."""
    consumer = Consumer(consumer_config(bootstrap, "adnomaly-progress"))  # never commits: reads watermarks only
    deadline = time.monotonic() + timeout
    try:
        metadata = consumer.list_topics(topic, timeout=timeout)
        partitions = metadata.topics[topic].partitions
        total = 0
        for partition in partitions:
            _, high = watermarks(consumer, topic, partition, timeout, deadline)
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
    count_duplicates: Callable[[], int]
    generator_stats: Path | None
    ingest_metrics_url: str | None
    lake_metrics_url: str | None = None
    features_topic: str | None = None
    anomalies: Callable[[], tuple[AnomalyCounts, list[AnomalyOut]]] | None = None
    baseline: Progress | None = None
    _ingested: int = 0
    _lake_files: int = 0
    _dead_letters: DistinctDeadLetters = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._dead_letters = DistinctDeadLetters(self.bootstrap, self.dlq_topic)  # connects on its first count

    @property
    def source(self) -> str:
        """The source a gap between sinks and sources is credited to (see `settled`)."""
        return "produced" if self.generator_stats is not None or not self.ingest_metrics_url else "ingested"

    def _absolute(self) -> Progress:
        # Sinks first, then sources (see the module docstring).
        stored = self.count_stored()
        duplicates = self.count_duplicates()
        dlq = self._dead_letters.count()
        lag = sum(consumer_lag(self.bootstrap, self.group_id, self.raw_topic).values())
        features = topic_end_offsets(self.bootstrap, self.features_topic) if self.features_topic else 0
        counts, recent = self.anomalies() if self.anomalies is not None else (AnomalyCounts(), [])
        if self.lake_metrics_url:
            files = scrape_counter(self.lake_metrics_url, "adnomaly_lake_files_total", {})
            if files is not None:
                self._lake_files = files
        if self.ingest_metrics_url:  # every line received: accepted ones go to raw, rejected ones to the DLQ
            ingest = [
                scrape_counter(self.ingest_metrics_url, "adnomaly_ingest_events_total", {"result": result})
                for result in ("accepted", "rejected")
            ]
            if None not in ingest:  # once the API has stopped, its last answer stands
                self._ingested = sum(c or 0 for c in ingest)
        produced = read_json_counter(self.generator_stats, "produced") if self.generator_stats else 0
        return Progress(
            produced=produced,
            ingested=self._ingested,
            stored=stored,
            dlq=dlq,
            duplicates=duplicates,
            lag=lag,
            lake_files=self._lake_files,
            features=features,
            opened=counts.total,
            resolved=counts.resolved,
            recent=tuple(recent),
            at=time.monotonic(),
        )

    def close(self) -> None:
        self._dead_letters.close()

    def start(self) -> None:
        """Remember the stores' counts before this run: the state directory outlives runs."""
        self.baseline = self._absolute()

    def live(self) -> Progress:
        """A sample for the live view: `read()`, settled (see `settled`)."""
        return settled(self.read(), self.source)

    def read(self) -> Progress:
        now = self._absolute()
        base = self.baseline or Progress()
        return replace(
            now,
            stored=now.stored - base.stored,
            dlq=now.dlq - base.dlq,
            duplicates=now.duplicates - base.duplicates,
            opened=now.opened - base.opened,
            resolved=now.resolved - base.resolved,
        )

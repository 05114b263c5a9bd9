"""The processor's Prometheus metrics (names and labels are part of the dashboards' contract)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from adnomaly.observability import BATCH_SIZE_BUCKETS, LATENCY_BUCKETS

STORED = "stored"
DUPLICATE = "duplicate"
INVALID = "invalid"


@dataclass(frozen=True)
class ProcessorMetrics:
    events: Counter
    batch_seconds: Histogram
    batch_size: Histogram
    db_errors: Counter
    db_retries: Counter
    dlq_events: Counter
    commit_failures: Counter
    consumer_lag: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry = REGISTRY) -> ProcessorMetrics:
        return cls(
            events=Counter(
                "adnomaly_processor_events_total",
                "Events processed, by result (stored|duplicate|invalid)",
                ["result"],
                registry=registry,
            ),
            batch_seconds=Histogram(
                "adnomaly_processor_batch_seconds",
                "Time from a batch's consumption to its offset commit",
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            batch_size=Histogram(
                "adnomaly_processor_batch_size",
                "Messages per processed batch",
                buckets=BATCH_SIZE_BUCKETS,
                registry=registry,
            ),
            db_errors=Counter(
                "adnomaly_processor_db_errors_total",
                "Failed PostgreSQL batch writes",
                registry=registry,
            ),
            db_retries=Counter(
                "adnomaly_processor_db_retries_total",
                "Retries of a batch after a failed PostgreSQL write",
                registry=registry,
            ),
            dlq_events=Counter(
                "adnomaly_dlq_events_total",
                "Events sent to the dead-letter topic, by reason code",
                ["reason_code"],
                registry=registry,
            ),
            commit_failures=Counter(
                "adnomaly_processor_commit_failures_total",
                "Offset commits Kafka refused (the batch is reprocessed idempotently)",
                registry=registry,
            ),
            consumer_lag=Gauge(
                "adnomaly_consumer_lag",
                "Messages behind the partition's end, per assigned partition",
                ["topic", "partition"],
                registry=registry,
            ),
        )

    def forget_partition(self, topic: str, partition: int) -> None:
        with contextlib.suppress(KeyError):
            self.consumer_lag.remove(topic, str(partition))

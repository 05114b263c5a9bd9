"""The feature sink's Prometheus metrics."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from adnomaly.observability import BATCH_SIZE_BUCKETS, LATENCY_BUCKETS

ONLINE_WRITTEN = "written"
ONLINE_STALE = "stale"


@dataclass(frozen=True)
class FeatureSinkMetrics:
    records: Counter
    online_writes: Counter
    history_rows: Counter
    skipped: Counter
    batch_seconds: Histogram
    batch_size: Histogram
    store_errors: Counter
    commit_failures: Counter
    consumer_lag: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry = REGISTRY) -> FeatureSinkMetrics:
        return cls(
            records=Counter(
                "adnomaly_feature_sink_records_total", "Feature records consumed and committed", registry=registry
            ),
            online_writes=Counter(
                "adnomaly_feature_sink_online_writes_total",
                "Redis writes by result (written|stale: an equal or newer window was stored already)",
                ["result"], registry=registry,
            ),
            history_rows=Counter(
                "adnomaly_feature_sink_history_rows_total",
                "feature_aggregates rows inserted or changed (a replay changes none)", registry=registry,
            ),
            skipped=Counter(
                "adnomaly_feature_sink_skipped_total",
                "Records that could not be stored, by reason (malformed|unknown_feature|bad_dimensions|bad_values)",
                ["reason"], registry=registry,
            ),
            batch_seconds=Histogram(
                "adnomaly_feature_sink_batch_seconds", "Time from a batch's consumption to its offset commit",
                buckets=LATENCY_BUCKETS, registry=registry,
            ),
            batch_size=Histogram(
                "adnomaly_feature_sink_batch_size", "Records per batch", buckets=BATCH_SIZE_BUCKETS,
                registry=registry,
            ),
            store_errors=Counter(
                "adnomaly_feature_sink_store_errors_total", "Failed writes, by store (redis|postgres); retried",
                ["store"], registry=registry,
            ),
            commit_failures=Counter(
                "adnomaly_feature_sink_commit_failures_total",
                "Offset commits Kafka refused (the batch is replayed idempotently)", registry=registry,
            ),
            consumer_lag=Gauge(
                "adnomaly_consumer_lag", "Messages behind the partition's end, per assigned partition",
                ["topic", "partition"], registry=registry,
            ),
        )  # fmt: skip

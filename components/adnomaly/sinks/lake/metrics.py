"""The lake sink's Prometheus metrics."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from adnomaly.observability import LATENCY_BUCKETS

WRITTEN = "written"
INVALID = "invalid"
DUPLICATE = "duplicate"


@dataclass(frozen=True)
class LakeMetrics:
    events: Counter
    files: Counter
    bytes_written: Counter
    flush_seconds: Histogram
    upload_errors: Counter
    retries: Counter
    commit_failures: Counter
    buffered_events: Gauge
    consumer_lag: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry = REGISTRY) -> LakeMetrics:
        return cls(
            events=Counter(
                "adnomaly_lake_events_total",
                "Raw-topic messages flushed to the lake, by result (written|invalid: skipped, the processor "
                "dead-letters it|duplicate: a copy of an event id written within the dedup window)", ["result"],
                registry=registry,
            ),
            files=Counter("adnomaly_lake_files_total", "Parquet files written", registry=registry),
            bytes_written=Counter(
                "adnomaly_lake_written_bytes_total", "Bytes of Parquet written", registry=registry
            ),
            flush_seconds=Histogram(
                "adnomaly_lake_flush_seconds", "Time to write one flush (cut record, files, offset commit)",
                buckets=LATENCY_BUCKETS, registry=registry,
            ),
            upload_errors=Counter(
                "adnomaly_lake_upload_errors_total", "Failed file writes (retried)", registry=registry
            ),
            retries=Counter(
                "adnomaly_lake_retries_total", "Retries after a failed write or commit", registry=registry
            ),
            commit_failures=Counter(
                "adnomaly_lake_commit_failures_total",
                "Offset commits Kafka refused after the files were written (the range is replayed to the same "
                "file names)", registry=registry,
            ),
            buffered_events=Gauge(
                "adnomaly_lake_buffered_events", "Messages consumed and not yet flushed", registry=registry
            ),
            consumer_lag=Gauge(
                "adnomaly_consumer_lag", "Messages behind the partition's end, per assigned partition",
                ["topic", "partition"], registry=registry,
            ),
        )  # fmt: skip

"""The ingest API's Prometheus metrics, served at `/metrics` by the API itself.

Each app has its own registry (tests build many apps in one process), with the process and platform
collectors added so the page carries what a default registry would.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

from adnomaly.observability import LATENCY_BUCKETS

EXPOSITION_CONTENT_TYPE = CONTENT_TYPE_LATEST


class IngestMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.requests = Counter(
            "adnomaly_ingest_requests", "POST /v1/events requests by HTTP status code", ["code"],
            registry=self.registry,
        )  # fmt: skip
        self.events = Counter(
            "adnomaly_ingest_events", "Events answered for, by result (accepted: in the raw topic; "
            "rejected: invalid, answered to the client and dead-lettered)", ["result"],
            registry=self.registry,
        )  # fmt: skip
        self.seconds = Histogram(
            "adnomaly_ingest_request_seconds", "Time to answer POST /v1/events, Kafka acks included",
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self._accepted = self.events.labels(result="accepted")
        self._rejected = self.events.labels(result="rejected")

    def observe(self, status: int, seconds: float, accepted: int = 0, rejected: int = 0) -> None:
        self.requests.labels(code=str(status)).inc()
        self.seconds.observe(seconds)
        if accepted:
            self._accepted.inc(accepted)
        if rejected:
            self._rejected.inc(rejected)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

"""The detector's Prometheus metrics (labels: the detector's name from the spec and the severity; for
notifications the alert's status and what became of it: sent, failed (retried), rejected, dropped)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from adnomaly.observability import LATENCY_BUCKETS


class DetectorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        kw = {"registry": registry} if registry is not None else {}
        self.anomalies = Counter("adnomaly_anomalies_total", "Anomalies opened", ["type", "severity"], **kw)
        self.resolved = Counter("adnomaly_anomalies_resolved_total", "Anomalies resolved", ["type"], **kw)
        self.records = Counter("adnomaly_detector_records_total", "Feature records judged", **kw)
        self.late = Counter(
            "adnomaly_detector_late_records_total", "Raw/dead-letter records whose `_dlq` window had fired", **kw
        )
        self.invalid = Counter("adnomaly_detector_invalid_records_total", "Undecodable feature records", **kw)
        self.batch = Histogram(
            "adnomaly_detector_batch_seconds", "Judge + store + publish of one batch", buckets=LATENCY_BUCKETS, **kw
        )
        self.notifications = Counter(
            "adnomaly_notifications_total", "Alerts posted to Alertmanager, by outcome", ["status", "result"], **kw
        )
        self.notifications_pending = Gauge(
            "adnomaly_notifications_pending", "Anomalies whose notification is not settled yet", **kw
        )

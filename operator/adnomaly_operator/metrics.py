"""The operator's Prometheus metrics (served by `adnomaly-operator --metrics-port`)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECONCILES = Counter(
    "adnomaly_operator_reconciles_total",
    "Pipeline reconciliations, by result: changed (wrote something), noop (wrote nothing), error",
    ["result"],
)
RECONCILE_SECONDS = Histogram(
    "adnomaly_operator_reconcile_seconds",
    "Time one Pipeline reconciliation took",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
ERRORS = Counter(
    "adnomaly_operator_errors_total",
    "Failed reconciliations and refused writes, by kind of error",
    ["error"],
)
API_WRITES = Counter(
    "adnomaly_operator_api_writes_total",
    "Requests that change cluster state (apply, create, patch, delete, events), by HTTP verb",
    ["verb"],
)
API_REQUEST_SECONDS = Histogram(
    "adnomaly_operator_api_request_seconds",
    "Latency of the operator's own API requests (watches excluded), by HTTP verb and resource",
    ["verb", "resource"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
QUEUE_DEPTH = Gauge("adnomaly_operator_queue_depth", "Pipelines waiting to be reconciled")
OWNED_EVENTS = Counter(
    "adnomaly_operator_owned_events_total",
    "Watch events of the objects the operator owns, by whether they queued their Pipeline "
    "(queued=false: nothing the reconcile reads had changed, only the resourceVersion)",
    ["queued"],
)

"""Prometheus metrics conventions shared by every component.

Names start with `adnomaly_`, counters end in `_total`, durations are `_seconds` histograms in base
units, and no label carries per-user values.
"""

from __future__ import annotations

from prometheus_client import start_http_server

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_SIZE_BUCKETS = (1, 10, 50, 100, 500, 1000, 2500, 5000, 10000, 50000)


def serve_metrics(port: int | None, host: str = "0.0.0.0") -> None:
    """Expose /metrics on `port` (nothing when None or 0)."""
    if port:
        start_http_server(port, addr=host)
